"""The unsupervised lung-field mask and the lung prior: the fallbacks of the learned lung fields
(`lung_network.py`) when the network's output is implausible.

The AnatPaste recipe (CLAHE, Otsu, opening, clear border, drop small regions) keeps only the dark
spaces between ribs on many images, so the two largest dark regions are filled by their convex
hulls. When that fails (an unusual image), the caller falls back to the mean lung prior of the
training normals, stored in the model.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage import exposure, filters, morphology, segmentation
from skimage.morphology import convex_hull_image

MIN_LUNG_FRACTION = 0.04   # a single lung field under 4 % of the image is not a lung
MAX_LUNG_FRACTION = 0.60   # both lungs over 60 % means the threshold caught the background


def lung_mask(image01: np.ndarray) -> np.ndarray | None:
    """Boolean lung mask of a [0, 1] square image, or None when no plausible lungs are found.

    Blurring before Otsu merges the dark spaces between ribs into whole lung fields; the largest
    dark region on each side of the midline is one lung, filled by its convex hull; a side with
    no plausible region mirrors the other side.
    """
    n = image01.shape[0]
    eq = exposure.equalize_adapthist(image01, clip_limit=0.01)
    eq = ndimage.gaussian_filter(eq, sigma=n / 80)
    dark = eq < filters.threshold_otsu(eq)
    dark = ndimage.binary_opening(dark, morphology.disk(max(1, n // 64)))
    dark = segmentation.clear_border(dark)
    labels, count = ndimage.label(dark)
    if count == 0:
        return None
    index = np.arange(1, count + 1)
    sizes = ndimage.sum(dark, labels, index=index)
    cols = np.array([c for _, c in ndimage.center_of_mass(dark, labels, index)])
    sides = []
    for side in (cols < n / 2, cols >= n / 2):
        best = np.flatnonzero(side)[np.argmax(sizes[side])] if side.any() else None
        found = best is not None and sizes[best] >= MIN_LUNG_FRACTION * n * n / 2
        sides.append(convex_hull_image(labels == best + 1) if found else None)
    if sides[0] is None and sides[1] is None:
        return None
    # a lung field the threshold missed is taken as the mirror image of the other one
    left = sides[0] if sides[0] is not None else sides[1][:, ::-1]
    right = sides[1] if sides[1] is not None else sides[0][:, ::-1]
    mask = left | right
    mask = ndimage.binary_dilation(mask, morphology.disk(max(1, n // 64)))
    frac = mask.mean()
    if frac < MIN_LUNG_FRACTION or frac > MAX_LUNG_FRACTION:
        return None
    return mask


def prior_mask(n: int, prior: np.ndarray | None) -> np.ndarray:
    """The training normals' lung prior thresholded at 0.5, or a central ellipse when there is none."""
    if prior is None:
        yy, xx = np.mgrid[0:n, 0:n] / n
        prior = (((xx - 0.5) / 0.38) ** 2 + ((yy - 0.5) / 0.38) ** 2 < 1).astype(np.float32)
    return prior >= 0.5
