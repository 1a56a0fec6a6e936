"""The pixels of each reviewed finding, for segmentations (Slicer .seg.nrrd and DICOM SEG).

A model finding is what detection made it (core/detection/regions.py): the heatmap's suspicious
pixels inside the lung fields, within its box; a "diffuse" finding is the lung fields within its box.
Heat outside the lung fields (a side marker, the shoulder) or of another finding's region is never
part of it. A finding the reader drew is their box. Rejected findings have no mask, nor have model
findings the sensitivity slider hid, which the reader never saw (`review.reported`).

A model finding shown with none of those pixels is its whole box, as the reader saw it drawn: one the
reader moved off its heat, or kept (reviewed, noted, relabelled: never hidden) while the slider is above
its peak, where the box is the region they decided on; or, untouched, one whose score the slider sits
within a hair of, which the heatmap on the image's grid (interpolated from the model's) falls just short of.
Such a segment is marked `whole_box`: no cut at the threshold made it, which the DICOM SEG says.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from SSLAnomalyLib.core.results.review import reported


class FindingMask(NamedTuple):
    """A finding's pixels: `mask` a boolean array on the heatmap's (slices, rows, cols) grid; `whole_box` where a
    model finding's region is empty, so its box stands for it."""
    record: dict
    mask: np.ndarray
    whole_box: bool = False


def finding_masks(heatmap: np.ndarray, records: list[dict], pixel_threshold: float,
                  lungs: np.ndarray | None = None) -> list[FindingMask]:
    """A `FindingMask` per finding `reported`.
    `lungs`: the lung fields on the same grid (None where detection made none: then the box)."""
    inside = np.ones(heatmap.shape, bool) if lungs is None else np.asarray(lungs) > 0
    suspicious = (heatmap >= pixel_threshold) & inside
    out = []
    for record in records:
        if not reported(record):
            continue
        i0, j0, i1, j1 = record["bbox_ijk"]
        k = record["slice_index"]
        box = np.zeros(heatmap.shape, bool)
        box[k, j0:j1 + 1, i0:i1 + 1] = True
        if record["origin"] != "model":
            out.append(FindingMask(record, box))
            continue
        region = box & (inside if record.get("extent") == "diffuse" else suspicious)
        out.append(FindingMask(record, region) if region.any() else FindingMask(record, box, whole_box=True))
    return out
