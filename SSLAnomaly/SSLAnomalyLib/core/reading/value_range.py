"""Pixel values float32 cannot hold, scaled by a power of two before the cast to float32.

A float64 image (NRRD, NIfTI, a DICOM's rescaled values, a Slicer volume) may hold finite values far
beyond float32's range (1e300) or below it (1e-300): cast as they were, they became inf or 0, and a
valid image failed as NonFiniteScore or was scored as blank. The model normalises each image's
intensities (its 1st-99th percentiles: preprocess.normalise), so the image is scaled in float64 first,
by a power of two: exact, every value's ratio to another kept, and its score the same.
"""

from __future__ import annotations

import numpy as np

SAFE_MAGNITUDE = 2.0 ** 64  # far inside float32's 3.4e38: room for block sums and percentile spans


def within_float32(pixels: np.ndarray) -> tuple[np.ndarray, str | None]:
    """`pixels` as they are where float32 holds their largest finite magnitude with room to spare, else
    scaled by a power of two in float64 so that it is about 1, with a warning saying so. NaN and inf
    stay what they are (the reader replaces them)."""
    if not np.issubdtype(pixels.dtype, np.floating):
        return pixels, None
    finite = pixels[np.isfinite(pixels)]
    top = max(abs(float(finite.min())), abs(float(finite.max()))) if finite.size else 0.0
    if top == 0.0 or 1 / SAFE_MAGNITUDE <= top <= SAFE_MAGNITUDE:
        return pixels, None
    exponent = -int(np.frexp(top)[1])
    return np.ldexp(np.asarray(pixels, np.float64), exponent), \
        f"pixel values up to {top:.3g} are beyond float32's range: scaled by 2^{exponent} (intensities are normalised per image)"
