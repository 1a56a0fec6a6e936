"""What a reader may decode, checked from the header before any pixel is decoded: a small file can
promise gigabytes (a header, a deflated DICOM, a 2000-slice volume), and the budget is in pixels and
in bytes, because components, wide types and LUT copies multiply a pixel count."""

from __future__ import annotations

import math
from pathlib import Path

from SSLAnomalyLib.core.files.errors import ReadError

MAX_PIXELS = 178_956_970  # pixels (all frames) decoded at most: where Pillow refuses too (2 x MAX_IMAGE_PIXELS)
MAX_DECODED_BYTES = 768 * 2**20  # the largest array decoding may make (components and LUT copies counted)
MAX_VOLUME_PIXELS = 64 * 2**20  # a volume is scored slice by slice, but its input and heatmap are held whole
MAX_SLICES = 4096  # each slice is one pass of the encoder (tens of ms): MAX_VOLUME_PIXELS of 128 x 128 slices
MAX_INFLATED_BYTES = MAX_DECODED_BYTES // 2  # a deflated DICOM data set is inflated whole before it is parsed


def check_size(path: Path, *dims: int) -> None:
    """Refuse before decoding when the header promises more than MAX_PIXELS pixels."""
    n = math.prod(int(d) for d in dims)
    if n > MAX_PIXELS:
        raise ReadError(path, f"image too large to read: {' x '.join(str(int(d)) for d in dims)} = {n:,} pixels "
                              f"(limit {MAX_PIXELS:,})")


def check_volume(path: Path, slices: int, rows: int, cols: int) -> None:
    """Refuse before decoding a volume larger than MAX_VOLUME_PIXELS, or of more than MAX_SLICES slices
    (262,144 slices of 16 x 16 fit the pixel limit and would keep a batch busy for hours)."""
    n = int(slices) * int(rows) * int(cols)
    if int(slices) > 1 and n > MAX_VOLUME_PIXELS:
        raise ReadError(path, f"volume too large to score: {int(slices)} slices of {int(cols)} x {int(rows)} = {n:,} "
                              f"pixels (limit {MAX_VOLUME_PIXELS:,})")
    if int(slices) > MAX_SLICES:
        raise ReadError(path, f"volume has too many slices to score: {int(slices):,} (limit {MAX_SLICES:,}; each "
                              "slice is scored as a radiograph)")


def check_bytes(path: Path, n_values: int, bytes_per_value: int, what: str) -> None:
    """Refuse before decoding when the array decoding makes would exceed MAX_DECODED_BYTES (a pixel
    cap is not a byte cap: components, wide types and LUT copies multiply it)."""
    n = int(n_values) * int(bytes_per_value)
    if n > MAX_DECODED_BYTES:
        raise ReadError(path, f"image too large to read: decoding {what} needs {n / 2**20:,.0f} MB "
                              f"(limit {MAX_DECODED_BYTES / 2**20:,.0f} MB)")

