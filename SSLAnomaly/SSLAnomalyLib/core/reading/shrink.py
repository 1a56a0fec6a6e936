"""Very large images are read at a reduced size.

The encoder looks at a 224-pixel square whatever the input, so nothing is gained by holding a
10,000 x 10,000 image (and writing its float32 heatmap, 400 MB) at full size. An image whose longest
side exceeds `MAX_SIDE` has blocks of f x f pixels averaged, f the smallest integer that brings it
under the limit. Spacing grows f-fold and the origin moves to the centre of the first block, so the
reduced image covers the same patient space: the heatmap still overlays the original in Slicer, and
centroids and areas in mm are unchanged. The reduced grid is the "input's pixel grid" of every
output (heatmap, `bbox_ijk`), which the recorded warning states. Real radiographs (up to about
4,300 pixels a side) are never reduced.
"""

from __future__ import annotations

import math

import numpy as np

from SSLAnomalyLib.core.reading.image import Radiograph

MAX_SIDE = 5000


def shrink_if_large(img: Radiograph, max_side: int = MAX_SIDE) -> Radiograph:
    """`img` itself when small enough, else its block-averaged reduction (with a warning)."""
    slices, rows, cols = img.shape
    f = math.ceil(max(rows, cols) / max_side)
    if f <= 1:
        return img
    out = np.empty((slices, -(-rows // f), -(-cols // f)), np.float32)
    for k in range(slices):  # one slice at a time bounds the extra memory
        padded = np.pad(img.pixels[k], ((0, out.shape[1] * f - rows), (0, out.shape[2] * f - cols)), mode="edge")
        out[k] = padded.reshape(out.shape[1], f, out.shape[2], f).mean(axis=(1, 3), dtype=np.float32)
    sx, sy, sz = img.spacing
    shift = img.direction @ np.array([(f - 1) / 2 * sx, (f - 1) / 2 * sy, 0.0])
    reduced = Radiograph(out, (sx * f, sy * f, sz), tuple(np.add(img.origin, shift)), img.direction.copy(),
                         img.is_2d, img.source, list(img.warnings), img.dicom, img.block * f,
                         view_problems=img.view_problems)
    reduced.warnings.append(
        f"image of {cols}x{rows} pixels read at {out.shape[2]}x{out.shape[1]} ({f}x{f} blocks averaged, "
        f"longest side limit {max_side}); heatmap and finding boxes are on that grid, positions in mm unchanged")
    return reduced


def give_file_spacing(img: Radiograph, mm: float) -> None:
    """Give `img` the file pixel spacing `mm` (--spacing, for a file with none): a reduced image's
    pixel is `block` file pixels a side, and its origin, the centre of its first block, moves with them."""
    f = img.block
    assumed = np.array(img.spacing[:2]) / f  # the file's spacing it was read at
    img.origin = tuple(np.add(img.origin, img.direction[:, :2] @ ((f - 1) / 2 * (mm - assumed))))
    img.spacing = (mm * f, mm * f, img.spacing[2])
