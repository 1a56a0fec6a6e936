"""Turning any radiograph slice into the encoder's input: a square, intensity-normalised array.

The Kermany training images were squashed to a square without keeping the aspect ratio, so every
input is resized the same way; the heatmap is later stretched back onto the original grid.
Intensities are normalised per image (robust percentiles) so that brightness and bit depth of an
acquisition do not masquerade as anomaly.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

LOW_PERCENTILE, HIGH_PERCENTILE = 1.0, 99.0
FRAME_MARGIN = 0.05  # of the lung fields' height and width, added on each side of their box


def resize(array: np.ndarray, size: tuple[int, int], mode: str = "bilinear", antialias: bool = True) -> np.ndarray:
    """Resize a 2D array with anti-aliasing when shrinking (torch is fast and memory-light); a map
    already smooth at the new size (a heatmap stretched from the model grid) needs none."""
    t = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None, None]
    shrinking = size[0] < array.shape[0] or size[1] < array.shape[1]
    out = F.interpolate(t, size=size, mode=mode, align_corners=False,
                        antialias=antialias and shrinking and mode in ("bilinear", "bicubic"))
    return out[0, 0].numpy()


def normalise(array: np.ndarray, every: int = 1) -> np.ndarray:
    """Map the 1st-99th percentile range to [0, 1] and clip; the percentiles read on every `every`-th
    row and column (a picture's grey window needs no more, and a megapixel's sort costs more than
    its drawing)."""
    lo, hi = np.percentile(array[::every, ::every], [LOW_PERCENTILE, HIGH_PERCENTILE])
    if hi - lo < 1e-6:
        return np.zeros_like(array, dtype=np.float32)
    return np.clip((array - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def to_model_input(slice2d: np.ndarray, size: int) -> np.ndarray:
    """(rows, cols) slice of any dtype -> (size, size) float32 in [0, 1]."""
    return normalise(resize(slice2d, (size, size)))


def lung_box(lung: np.ndarray, margin: float = FRAME_MARGIN) -> tuple[int, int, int, int] | None:
    """Rows r0:r1 and columns c0:c1 of the lung fields' box, `margin` of its size added on each side and
    kept inside the square grid; None where there is no lung field."""
    rows, cols = np.nonzero(lung)
    if not len(rows):
        return None
    size = lung.shape[-1]
    r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    dr, dc = (r1 - r0) * margin, (c1 - c0) * margin
    return int(max(0, r0 - dr)), int(min(size, np.ceil(r1 + dr))), int(max(0, c0 - dc)), int(min(size, np.ceil(c1 + dc)))


def lung_framed(image01: np.ndarray, lung: np.ndarray, margin: float = FRAME_MARGIN) -> np.ndarray:
    """A square model input cropped to its lung fields' box (`lung_box`), resized back to the input's
    size and windowed again on what the box holds: the lungs as the encoder sees them whatever the
    acquisition put around them (collimation, shoulders, abdomen, burned-in labels, a tight or a wide
    field of view). No lung field: the input as it is."""
    box = lung_box(lung, margin)
    if box is None:
        return image01
    r0, r1, c0, c1 = box
    return normalise(resize(image01[r0:r1, c0:c1], image01.shape[-2:]))
