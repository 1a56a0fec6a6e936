"""From a coarse patch-distance map to a heatmap on the input's own pixel grid."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

SMOOTH_SIGMA = 4 / 256      # PatchCore's blur: 4 px at 256, as a fraction of the side
OUTSIDE_LUNG_WEIGHT = 0.35  # scores outside the lung fields are damped, not hidden


def model_grid_map(patch_map: np.ndarray, size: int, lung: np.ndarray) -> np.ndarray:
    """Upsample a (h, w) patch map to the (size, size) model grid, blur it and damp it outside the
    (softened) lung mask, where borders and labels would otherwise dominate."""
    t = torch.from_numpy(np.ascontiguousarray(patch_map, dtype=np.float32))[None, None]
    up = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)[0, 0].numpy()
    up = ndimage.gaussian_filter(up, SMOOTH_SIGMA * size)
    weight = ndimage.gaussian_filter(lung.astype(np.float32), size / 32)
    return (up * (OUTSIDE_LUNG_WEIGHT + (1 - OUTSIDE_LUNG_WEIGHT) * weight)).astype(np.float32)


def to_input_grid(grid_map: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Stretch the square model-grid map back onto the (rows, cols) input grid."""
    t = torch.from_numpy(np.ascontiguousarray(grid_map))[None, None]
    return F.interpolate(t, size=(rows, cols), mode="bilinear", align_corners=False)[0, 0].numpy()
