"""NaN and infinite pixels (a floating-point NRRD, NIfTI or MHA may hold them): the model needs a number
at each pixel, so they are replaced by the median of the finite ones, and counted, so that the reader
says how many, and a refusal of what remains (blank.py) says that it is mostly such pixels rather than
describing the constant the median made of them."""

from __future__ import annotations

import numpy as np

from SSLAnomalyLib.core.files.errors import ReadError
from SSLAnomalyLib.core.reading.image import Radiograph


def replace_nonfinite(img: Radiograph, name) -> int:
    """Replace, with a warning, the NaN and infinite pixels of `img` by the median of its finite ones;
    how many there were. An image without a finite pixel is refused (ReadError naming `name`)."""
    if not np.issubdtype(img.pixels.dtype, np.floating):
        return 0
    bad = ~np.isfinite(img.pixels)
    if bad.all():
        raise ReadError(name, "image holds no finite values")
    count = int(bad.sum())
    if count:
        img.pixels = np.where(bad, np.median(img.pixels[~bad]), img.pixels).astype(np.float32)
        img.warnings.append(f"{count} NaN/inf pixels replaced by the median")
    return count
