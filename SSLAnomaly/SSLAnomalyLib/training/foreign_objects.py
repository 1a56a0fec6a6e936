"""Foreign objects drawn onto a normal radiograph for training: ECG electrodes (discs and rings),
their leads and tubes (curved wires running off an edge), and a side-marker plate. Real normals
carry them, so an encoder that saw them in training should learn they are not disease.

Deliberately unlike the `markers` perturbation of the shift evaluation (evaluation/perturbations.py):
no text is ever drawn, wires are curves that leave by any edge with a random brightness, not
straight white lines to the bottom edge, so the evaluation still shows what was not trained."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw


def _curve(start, end, bend, steps: int = 24) -> list[tuple[float, float]]:
    """A quadratic Bezier from `start` to `end`, pulled sideways by `bend` (pixels)."""
    (x0, y0), (x1, y1) = start, end
    length = max(np.hypot(x1 - x0, y1 - y0), 1e-6)
    cx, cy = (x0 + x1) / 2 - bend * (y1 - y0) / length, (y0 + y1) / 2 + bend * (x1 - x0) / length
    t = np.linspace(0, 1, steps)[:, None]
    points = (1 - t) ** 2 * [x0, y0] + 2 * (1 - t) * t * [cx, cy] + t ** 2 * [x1, y1]
    return [tuple(p) for p in points]


def _edge_point(rng: np.random.Generator, side: int) -> tuple[float, float]:
    edge, along = int(rng.integers(4)), rng.uniform(0, side - 1)
    return [(along, 0), (along, side - 1), (0, along), (side - 1, along)][edge]


def draw_foreign_objects(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`image` (square, [0, 1]) with 1-4 electrodes and their leads, sometimes a tube and a
    marker plate, each radiopaque (brighter than what lies under it, not always saturated)."""
    side = image.shape[0]
    unit = side / 100
    canvas = Image.fromarray(np.zeros(image.shape, np.uint8))
    draw = ImageDraw.Draw(canvas)
    for _ in range(int(rng.integers(1, 5))):
        cx, cy = rng.uniform(0.15, 0.85, 2) * side
        r, level = rng.uniform(1.2, 3.5) * unit, int(rng.uniform(0.6, 1.0) * 255)
        box = (cx - r, cy - r, cx + r, cy + r)
        if rng.random() < 0.5:
            draw.ellipse(box, fill=level)
        else:
            draw.ellipse(box, outline=level, width=max(1, int(r / 3)))
        if rng.random() < 0.8:
            wire = _curve((cx, cy), _edge_point(rng, side), rng.uniform(-0.3, 0.3) * side)
            draw.line(wire, fill=int(level * rng.uniform(0.6, 0.95)), width=max(1, int(rng.uniform(0.2, 0.7) * unit)))
    if rng.random() < 0.3:  # a tube down from the top, off the midline
        top = (rng.uniform(0.35, 0.65) * side, 0)
        tip = (rng.uniform(0.3, 0.7) * side, rng.uniform(0.3, 0.7) * side)
        draw.line(_curve(top, tip, rng.uniform(-0.15, 0.15) * side), fill=int(rng.uniform(0.5, 0.9) * 255),
                  width=max(1, int(rng.uniform(0.8, 1.6) * unit)))
    if rng.random() < 0.3:  # a side-marker plate near a corner
        w, h = rng.uniform(3, 7, 2) * unit
        x, y = rng.choice([0.03, 0.85]) * side, rng.choice([0.03, 0.88]) * side
        draw.rectangle((x, y, x + w, y + h), fill=int(rng.uniform(0.7, 1.0) * 255))
    objects = np.asarray(canvas, np.float32) / 255
    return np.maximum(image, objects).astype(np.float32)
