"""Seeded acquisition perturbations of a radiograph, for measuring how a model holds up on images
taken otherwise (`sslanomaly evaluate --perturb`).

Each family changes one thing a real acquisition changes, on the image's own pixels and grid:
field of view, position, rotation, exposure (gamma), contrast, noise, blur, lower resolution, JPEG
re-compression and burned-in text and markers. `combined` chains three families drawn at random;
`zoom_gamma` is the shift that first showed the problem (zoom to 80-100 % of the field of view plus
gamma 0.7-1.4). Training augments with field of view, position, rotation, gamma, contrast, noise and
blur (`training.augment`); `lowres`, `jpeg` and `markers` are kept out of training so that they
check robustness to changes the model never practised on.
"""

from __future__ import annotations

import io
import zlib

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from SSLAnomalyLib.core.reading.image import Radiograph
from SSLAnomalyLib.evaluation.choices import parse_names


def reframed(x: np.ndarray, scale: float = 1.0, angle_deg: float = 0.0, shift=(0.0, 0.0)) -> np.ndarray:
    """Zoom by `scale` (>1 narrows the field of view), rotate and shift (fractions of the size) about
    the centre; borders are filled with the nearest edge, as a wider collimation would show."""
    rows, cols = x.shape
    a = np.deg2rad(angle_deg)
    m = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) / scale
    centre = np.array([rows / 2, cols / 2])
    offset = centre - m @ (centre + np.array(shift) * (rows, cols))
    return ndimage.affine_transform(x, m, offset=offset, order=1, mode="nearest")


def fov(x, rng):
    return reframed(x, scale=float(np.exp(rng.uniform(np.log(0.8), np.log(1.25)))))


def translate(x, rng):
    return reframed(x, shift=rng.uniform(-0.08, 0.08, 2))


def rotate(x, rng):
    return reframed(x, angle_deg=float(rng.uniform(-8, 8)))


def gamma(x, rng):
    return x ** float(np.exp(rng.uniform(np.log(0.6), np.log(1.6))))


def contrast(x, rng):
    return np.clip((x - x.mean()) * rng.uniform(0.7, 1.3) + x.mean() + rng.uniform(-0.08, 0.08), 0, 1)


def noise(x, rng):
    return np.clip(x + rng.normal(0, rng.uniform(0.01, 0.04), x.shape), 0, 1)


def blur(x, rng):
    return ndimage.gaussian_filter(x, rng.uniform(0.003, 0.008) * max(x.shape))


def lowres(x, rng):
    factor = rng.uniform(2, 4)
    small = Image.fromarray(x.astype(np.float32)).resize(
        (max(8, int(x.shape[1] / factor)), max(8, int(x.shape[0] / factor))), Image.BILINEAR)
    return np.asarray(small.resize((x.shape[1], x.shape[0]), Image.BILINEAR), np.float32)


def jpeg(x, rng):
    buf = io.BytesIO()
    Image.fromarray((x * 255).round().astype(np.uint8)).save(buf, format="JPEG", quality=int(rng.integers(15, 50)))
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())), np.float32) / 255


def markers(x, rng):
    """Burned-in text, a side marker and ECG leads with their wires, in white as on a radiograph."""
    rows, cols = x.shape
    im = Image.fromarray((x * 255).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    unit = max(rows, cols) / 100
    for _ in range(int(rng.integers(1, 3))):
        draw.text((rng.uniform(0.02, 0.6) * cols, rng.uniform(0.02, 0.9) * rows), rng.choice(["L", "R", "AP", "PORTABLE", "SUPINE"]),
                  fill=255, font_size=max(8, int(4 * unit)))
    for _ in range(int(rng.integers(1, 4))):
        cx, cy, r = rng.uniform(0.25, 0.75) * cols, rng.uniform(0.2, 0.8) * rows, rng.uniform(1, 2.5) * unit
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
        end = (rng.uniform(0, 1) * cols, rows - 1)
        draw.line((cx, cy, *end), fill=230, width=max(1, int(0.4 * unit)))
    return np.asarray(im, np.float32) / 255


def zoom_gamma(x, rng):
    x = reframed(x, scale=float(1 / rng.uniform(0.8, 1.0)))
    return x ** float(rng.uniform(0.7, 1.4))


FAMILIES = {"fov": fov, "translate": translate, "rotate": rotate, "gamma": gamma, "contrast": contrast,
            "noise": noise, "blur": blur, "lowres": lowres, "jpeg": jpeg, "markers": markers}
EXTRA = {"zoom_gamma": zoom_gamma}
NAMES = tuple(FAMILIES) + ("combined",) + tuple(EXTRA)


def combined(x, rng):
    for name in rng.choice(list(FAMILIES), size=3, replace=False):
        x = FAMILIES[name](x, rng)
    return x


def perturb(image: Radiograph, family: str, seed: int) -> Radiograph:
    """The image with one family's perturbation applied to every slice, on its own grid and scale
    (intensities are mapped to [0, 1] and back), reproducible from `seed`."""
    fn = {**FAMILIES, **EXTRA, "combined": combined}[family]
    rng = np.random.default_rng([seed, zlib.crc32(family.encode())])
    out = np.empty(image.shape, np.float32)
    for k, px in enumerate(image.pixels):
        lo, hi = float(np.min(px)), float(np.max(px))
        x01 = (px - lo) / (hi - lo) if hi > lo else np.zeros_like(px, dtype=np.float32)
        out[k] = np.clip(fn(x01.astype(np.float32), rng), 0, 1) * (hi - lo) + lo
    result = image.with_pixels(out)
    result.dicom, result.warnings = image.dicom, list(image.warnings)
    return result


def parse_families(text: str) -> list[str]:
    """'all' or a comma-separated list of family names -> the families, checked."""
    return parse_names(text, NAMES, "perturbation(s)")
