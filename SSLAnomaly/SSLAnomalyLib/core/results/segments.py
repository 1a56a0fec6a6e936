"""The pixels of each reviewed finding, for segmentations (Slicer .seg.nrrd and DICOM SEG).

A model finding is the heatmap's suspicious pixels inside its box (the whole box if the reader
moved it off them); a finding the reader drew is their box. Rejected findings have no mask.
"""

from __future__ import annotations

import numpy as np


def finding_masks(heatmap: np.ndarray, records: list[dict], pixel_threshold: float) -> list[tuple[dict, np.ndarray]]:
    """(record, boolean mask on the heatmap's (slices, rows, cols) grid) per finding not rejected."""
    out = []
    for record in records:
        if record["status"] == "rejected":
            continue
        i0, j0, i1, j1 = record["bbox_ijk"]
        k = record["slice_index"]
        box = np.zeros(heatmap.shape, bool)
        box[k, j0:j1 + 1, i0:i1 + 1] = True
        mask = box & (heatmap >= pixel_threshold) if record["origin"] == "model" else box
        out.append((record, mask if mask.any() else box))
    return out
