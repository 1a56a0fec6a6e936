"""Findings: connected regions of the heatmap above the calibrated pixel threshold, inside the lungs,
made to agree with the image's verdict.

The rule a reader can rely on (docs/method.md, "Verdict and findings"): an ABNORMAL image always has
at least one finding on the slice that drives its score (the one its overlay shows): its focal
regions, or, when no region there reaches the pixel threshold, one "diffuse" finding whose region is
the lung fields of that slice (a volume's regions on other slices do not stand in for it). A finding on an
image within normal range is labelled as such, so that no picture, table or report shows an
unqualified finding beside a normal verdict.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from SSLAnomalyLib.core.reading.image import Radiograph

DEFAULT_LABEL = "anomaly"
DIFFUSE_LABEL = "diffuse anomaly"
BELOW_VERDICT_LABEL = "anomaly (image within normal range)"
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
    extent: str = "focal"      # "focal": a region above the pixel threshold; "diffuse": the lung fields

    def to_dict(self) -> dict:
        return asdict(self)


def _finding(region: np.ndarray, grid_map: np.ndarray, image: Radiograph, slice_index: int, label: str,
             extent: str) -> Finding:
    """The finding of a boolean `region` of the (size, size) model grid, on `image`'s grid and in RAS."""
    size = grid_map.shape[0]
    _, rows, cols = image.shape
    sy, sx = rows / size, cols / size
    ys, xs = np.nonzero(region)
    ijk = np.array([(xs.mean() + 0.5) * sx - 0.5, (ys.mean() + 0.5) * sy - 0.5, slice_index, 1.0])
    ras = image.ijk_to_ras() @ ijk
    bbox = [int(np.floor(xs.min() * sx)), int(np.floor(ys.min() * sy)),
            min(cols - 1, int(np.ceil((xs.max() + 1) * sx)) - 1), min(rows - 1, int(np.ceil((ys.max() + 1) * sy)) - 1)]
    return Finding(0, label, float(grid_map[region].max()), bbox, [round(float(v), 3) for v in ras[:3]],
                   round(float(len(ys) * sx * sy * image.spacing[0] * image.spacing[1]), 2), slice_index, extent)


def find_regions(grid_map: np.ndarray, lung: np.ndarray, pixel_threshold: float, image: Radiograph,
                 slice_index: int = 0) -> list[Finding]:
    """Regions of a (size, size) model-grid map mapped onto `image`'s grid and physical space.
    Ids are left 0; the caller numbers all findings of an image after sorting."""
    size = grid_map.shape[0]
    labels, count = ndimage.label((grid_map > pixel_threshold) & lung)
    regions = (labels == lab for lab in range(1, count + 1))
    return [_finding(r, grid_map, image, slice_index, DEFAULT_LABEL, "focal") for r in regions
            if r.sum() >= MIN_AREA_FRACTION * size * size]


def diffuse_finding(grid_map: np.ndarray, lung: np.ndarray, image: Radiograph, slice_index: int = 0) -> Finding:
    """The finding of an ABNORMAL slice with no focal region: its lung fields (the whole grid when it
    has none), scored by the heatmap's maximum there."""
    region = lung if lung.any() else np.ones_like(lung, dtype=bool)
    return _finding(region, grid_map, image, slice_index, DIFFUSE_LABEL, "diffuse")


def agree_with_verdict(findings: list[Finding], abnormal: bool, diffuse: Finding) -> list[Finding]:
    """Findings numbered by score, made to agree with the verdict: `diffuse` is added when an ABNORMAL
    image has no focal finding on the slice that drives its score (`diffuse.slice_index`); findings of
    an image within normal range say so in their label."""
    if abnormal and not any(f.slice_index == diffuse.slice_index for f in findings):
        findings = findings + [diffuse]
    for f in findings:
        f.label = label_for_verdict(f.label, abnormal)
    return _number(findings)


def label_for_verdict(label: str, abnormal: bool) -> str:
    """A detector's label as an image of verdict `abnormal` has it: a finding kept through a detection
    again at other thresholds (reviewed in Slicer) must not say "within normal range" beside ABNORMAL,
    nor stay unqualified beside a normal verdict. A label the reader gave is not the detector's: kept."""
    if abnormal:
        return DEFAULT_LABEL if label == BELOW_VERDICT_LABEL else label
    return BELOW_VERDICT_LABEL if label in (DEFAULT_LABEL, DIFFUSE_LABEL) else label


def _number(findings: list[Finding]) -> list[Finding]:
    """Sort by score, highest first, and give ids 1..n."""
    findings = sorted(findings, key=lambda f: -f.score)
    for i, f in enumerate(findings, start=1):
        f.id = i
    return findings
