"""A DICOM's Pixel Padding Value (and Pixel Padding Range Limit) marks stored pixels that are no
image: a collimation border or the corners of a round detector, coded with a value outside the
image's range (-32768, 0xFFFF). Viewers show them black; read as values, they would set the robust
percentiles the model input is normalised with, and squeeze the whole chest into a sliver of grey."""

from __future__ import annotations

import numpy as np


def padding_mask(stored: np.ndarray, ds) -> np.ndarray | None:
    """Which of the stored pixels (before any LUT) are padding, or None where the file declares none
    or marks every pixel (then the values are all there is, and the image is refused as blank)."""
    value = _integer(ds.get("PixelPaddingValue"))
    if value is None:
        return None
    limit = _integer(ds.get("PixelPaddingRangeLimit"))
    lo, hi = sorted((value, value if limit is None else limit))
    mask = (stored >= lo) & (stored <= hi)
    return mask if mask.any() and not mask.all() else None


def shown_black(pixels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """`pixels` (display sense: dense tissue bright) with the padding at the image's own black."""
    out = np.array(pixels, dtype=np.float32)
    out[mask] = out[~mask].min()
    return out


def _integer(value) -> int | None:
    """One integer of a US/SS element (a multi-valued or damaged one counts as absent)."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
