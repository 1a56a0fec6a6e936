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
