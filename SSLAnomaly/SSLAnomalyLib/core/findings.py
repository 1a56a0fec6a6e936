"""Findings: connected regions of the heatmap above the calibrated pixel threshold, inside the lungs."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from SSLAnomalyLib.core.image import Radiograph

DEFAULT_LABEL = "anomaly"
MIN_AREA_FRACTION = 0.002  # regions smaller than 0.2 % of the image are noise


@dataclass
class Finding:
    id: int
    label: str
    score: float
    bbox_ijk: list[int]        # [i0, j0, i1, j1], inclusive pixel indices (i = column, j = row)
    centroid_ras: list[float]  # mm, Slicer's RAS space
    area_mm2: float
    slice_index: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def find_regions(grid_map: np.ndarray, lung: np.ndarray, pixel_threshold: float, image: Radiograph,
                 slice_index: int = 0) -> list[Finding]:
    """Regions of a (size, size) model-grid map mapped onto `image`'s grid and physical space.
    Ids are left 0; the caller numbers all findings of an image after sorting."""
    size = grid_map.shape[0]
    _, rows, cols = image.shape
    sy, sx = rows / size, cols / size
    labels, count = ndimage.label((grid_map > pixel_threshold) & lung)
    out = []
    for lab, sl in enumerate(ndimage.find_objects(labels), start=1):
        region = labels[sl] == lab
        n = int(region.sum())
        if n < MIN_AREA_FRACTION * size * size:
            continue
        ys, xs = np.nonzero(region)
        cy, cx = ys.mean() + sl[0].start, xs.mean() + sl[1].start
        ijk = np.array([(cx + 0.5) * sx - 0.5, (cy + 0.5) * sy - 0.5, slice_index, 1.0])
        ras = image.ijk_to_ras() @ ijk
        bbox = [int(np.floor(sl[1].start * sx)), int(np.floor(sl[0].start * sy)),
                min(cols - 1, int(np.ceil(sl[1].stop * sx)) - 1), min(rows - 1, int(np.ceil(sl[0].stop * sy)) - 1)]
        out.append(Finding(0, DEFAULT_LABEL, float(grid_map[sl][region].max()), bbox,
                           [round(float(v), 3) for v in ras[:3]],
                           round(float(n * sx * sy * image.spacing[0] * image.spacing[1]), 2), slice_index))
    return out


def number(findings: list[Finding]) -> list[Finding]:
    """Sort by score, highest first, and give ids 1..n."""
    findings = sorted(findings, key=lambda f: -f.score)
    for i, f in enumerate(findings, start=1):
        f.id = i
    return findings
