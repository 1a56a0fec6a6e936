"""EXIF orientation (tag 0x0112): a raster stored on its side, upside down or mirrored, which every viewer
turns upright before showing it, is read upright too, so that the model, the heatmap, the boxes and the
overlay are the image as the reader sees it. One table serves Pillow's own images and the pixels another
decoder read (a 16-bit colour or grey + alpha PNG: SimpleITK, pypng), so that a picture saved at 8 or at
16 bits is read the same way up."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

ORIENTATION = 0x0112
TURNS = {2: ("mirrored", Image.Transpose.FLIP_LEFT_RIGHT), 3: ("upside down", Image.Transpose.ROTATE_180),
         4: ("flipped upside down", Image.Transpose.FLIP_TOP_BOTTOM),
         5: ("mirrored and turned a quarter", Image.Transpose.TRANSPOSE),
         6: ("turned a quarter anticlockwise", Image.Transpose.ROTATE_270),
         7: ("mirrored and turned a quarter", Image.Transpose.TRANSVERSE),
         8: ("turned a quarter clockwise", Image.Transpose.ROTATE_90)}


def _turn(orientation) -> tuple[Image.Transpose, str] | None:
    """How to turn an image of EXIF `orientation` upright and the warning that says it was; None: stored upright."""
    if orientation not in TURNS:
        return None
    how, method = TURNS[orientation]
    return method, f"EXIF orientation {orientation} applied: the image was stored {how}"


def load_upright(im: Image.Image) -> tuple[Image.Image, str | None]:
    """`im` loaded as viewers show it, and the warning that says it was turned (None: stored upright). Pillow turns
    a TIFF itself as it loads it, and drops its orientation: the tag is read before, and a JPEG or PNG turned after."""
    turn = _turn(im.getexif().get(ORIENTATION, 1))
    im.load()
    if turn is None:
        return im, None
    return (im.transpose(turn[0]) if im.getexif().get(ORIENTATION, 1) in TURNS else im), turn[1]


def upright_png(pixels: np.ndarray, path: Path) -> tuple[np.ndarray, str | None]:
    """(rows, cols) `pixels` another decoder read from the PNG at `path`, turned as its eXIf chunk says. pypng
    finds the chunk without inflating the image; Pillow's getexif decodes every PNG that has none before its pixels."""
    import png

    exif = Image.Exif()
    for kind, data in png.Reader(filename=str(path)).chunks():
        if kind == b"eXIf":
            exif.load(data)
    turn = _turn(exif.get(ORIENTATION, 1))
    if turn is None:
        return pixels, None
    return np.asarray(Image.fromarray(np.asarray(pixels, np.float32)).transpose(turn[0])), turn[1]
