"""A case's findings moved from its pixel grid onto its DICOM source's, for the SEG and SR.

An image over 5000 pixels a side is read with f x f blocks of pixels averaged (core/reading/shrink.py):
its masks and boxes are on a grid f-fold coarser than the source that a SEG must cover pixel for pixel
and an SR's regions are measured on. Each case pixel stands for the f x f source pixels it averaged
(fewer at the last row and column, where the source ends).
"""

from __future__ import annotations

import numpy as np

from SSLAnomalyLib.core.results.dicom_export import DicomExportError
from SSLAnomalyLib.core.results.segments import FindingMask


def on_source_grid(source, shape: tuple[int, int], masks: list[FindingMask],
                   records: list[dict]) -> tuple[list[FindingMask], list[dict]]:
    """(masks, records) of the case grid `shape` (rows, cols) on the grid of `source` (a dataset):
    masks of (1, rows, cols) and records' `bbox_ijk` in the source's pixels. A grid that is not the
    source's, whole or in blocks, is refused: its boxes would mark another place of the image."""
    rows, cols = int(source.Rows), int(source.Columns)
    f = -(-max(rows, cols) // max(shape))
    if (-(-rows // f), -(-cols // f)) != tuple(shape):
        raise DicomExportError(f"'{getattr(source, 'filename', None) or 'the source'}' is {cols}x{rows} pixels and "
                               f"the image the findings are on {shape[1]}x{shape[0]}: neither it nor a reduction of it")
    if f == 1:
        return masks, records
    masks = [m._replace(mask=np.repeat(np.repeat(m.mask, f, axis=-2), f, axis=-1)[..., :rows, :cols]) for m in masks]
    boxes = [[i0 * f, j0 * f, min((i1 + 1) * f, cols) - 1, min((j1 + 1) * f, rows) - 1]
             for i0, j0, i1, j1 in (r["bbox_ijk"] for r in records)]
    return masks, [dict(r, bbox_ijk=box) for r, box in zip(records, boxes)]
