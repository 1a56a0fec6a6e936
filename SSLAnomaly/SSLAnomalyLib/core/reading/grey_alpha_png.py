"""A 16-bit grey + alpha PNG at its 16 bits. Pillow reads this colour type at 8 bits per channel (its
own table says "LA;16B->LA not yet available") and SimpleITK refuses it, so 12-bit detector values
saved with an alpha channel became 16 grey levels. pypng decodes it as stored."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from SSLAnomalyLib.core.files.errors import ReadError
from SSLAnomalyLib.core.reading.image import Radiograph
from SSLAnomalyLib.core.reading.read_limits import check_size


def read_grey_alpha_png(path: Path) -> Radiograph:
    """The grey values over black where the alpha makes them transparent, as the 8-bit reader shows
    an image with alpha (radiographs are opaque: then the values as stored)."""
    import png

    try:
        reader = png.Reader(filename=str(path))
        reader.preamble()  # the header only: the size is checked before anything is decoded
        width, height = reader.width, reader.height
        check_size(path, width, height)
        _, _, rows, info = reader.read()
        stored = np.vstack([np.asarray(row, np.uint16) for row in rows]).reshape(height, width, info["planes"])
    except png.Error as e:
        raise ReadError(path, f"damaged PNG: {e}") from None
    grey, alpha = stored[..., 0].astype(np.float32), stored[..., 1].astype(np.float32) / 65535.0
    return Radiograph(grey if alpha.min() == 1.0 else grey * alpha, is_2d=True)
