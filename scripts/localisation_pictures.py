"""Hits and misses of the bundled adult model's heatmap on TBX11K lesion boxes, as one picture
(docs/images/localisation_tbx11k.png): lesion boxes in green, the heatmap maximum as a cyan cross.

Usage: .venv/bin/python scripts/localisation_pictures.py [MODEL]   (default: the bundled adult model)
"""

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from SSLAnomalyLib.core.detection.detector import AnomalyDetector
from SSLAnomalyLib.core.reading.images import read_radiograph
from SSLAnomalyLib.core.results.overlay import render_overlay
from SSLAnomalyLib.evaluation.evaluate import box_mask, read_boxes

ROOT = Path(__file__).resolve().parents[1]
TB = ROOT.parent / "shared" / "data" / "tbx11k_dev"
TILE, PER_ROW = 320, 4


def tile(detector, name, boxes) -> tuple[Image.Image, bool]:
    image = read_radiograph(TB / "images" / name)
    result = detector.detect(image)
    heat = result.heatmap.pixels[0]
    hit = bool(box_mask(heat.shape, boxes).ravel()[np.argmax(heat)])
    picture = render_overlay(image.pixels[0], heat, result)
    sx, sy = picture.width / heat.shape[1], picture.height / heat.shape[0]
    draw = ImageDraw.Draw(picture)
    for x0, y0, x1, y1 in boxes:
        draw.rectangle((x0 * sx, y0 * sy, x1 * sx, y1 * sy), outline=(0, 255, 0), width=3)
    r, c = np.unravel_index(np.argmax(heat), heat.shape)
    draw.line((c * sx - 12, r * sy, c * sx + 12, r * sy), fill=(0, 255, 255), width=4)
    draw.line((c * sx, r * sy - 12, c * sx, r * sy + 12), fill=(0, 255, 255), width=4)
    draw.text((8, picture.height - 24), "HIT" if hit else "MISS", fill=(0, 255, 0) if hit else (255, 80, 80))
    return picture.resize((TILE, TILE)), hit


def main(model: str = "adult") -> int:
    detector = AnomalyDetector.load(model)
    hits, misses = [], []
    for name, boxes in sorted(read_boxes(TB / "boxes.csv").items()):
        picture, hit = tile(detector, name, boxes)
        (hits if hit else misses).append(picture)
        if len(hits) >= PER_ROW and len(misses) >= PER_ROW:
            break
    grid = Image.new("RGB", (TILE * PER_ROW, TILE * 2))
    for row, tiles in enumerate((hits[:PER_ROW], misses[:PER_ROW])):
        for k, t in enumerate(tiles):
            grid.paste(t, (TILE * k, TILE * row))
    out = ROOT / "docs" / "images" / "localisation_tbx11k.png"
    grid.save(out)
    print(f"{out}: top row the first {PER_ROW} hits, bottom row the first {PER_ROW} misses (images in name order)")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
