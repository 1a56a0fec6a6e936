"""A batch that, as a whole, scores far above the calibration normals: the model is probably
miscalibrated for this site (other detectors, exposure, field of view), or the batch is mostly
abnormal. Said once per batch, in words, with the fix, and added to every findings JSON of it.

With calibration-like images a batch's median percentile is near 50 (its spread is about
50/sqrt(n) points: 11 at n = 20), so a median above 80 in a batch of 20 or more is no chance.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from SSLAnomalyLib.core.files.atomic import atomic_write_text
from SSLAnomalyLib.core.results.findings_json import to_json

MIN_BATCH = 20
MEDIAN_PERCENTILE = 80.0


def drift_warning(percentiles) -> str | None:
    """The warning for a batch whose median percentile among calibration normals is too high."""
    p = np.asarray(list(percentiles), dtype=float)
    if len(p) < MIN_BATCH or not np.median(p) > MEDIAN_PERCENTILE:
        return None
    return (f"this batch of {len(p)} radiographs scores far above the model's calibration normals as a whole "
            f"(median percentile {np.median(p):.0f}, {100 * np.mean(p >= 95):.0f} % above the 95th): unless most "
            "of them are abnormal, the model is miscalibrated for these images; calibrate it on this site's "
            "normals (`sslanomaly calibrate --model MODEL --normals DIR --out NEW_MODEL`, or Calibrate in Slicer)")


def warn_batch(cases) -> str | None:
    """The batch's drift warning for `cases` ((findings JSON path or None, percentile) each), added
    to every findings JSON of it; None when the batch looks like the calibration normals."""
    cases = list(cases)
    warning = drift_warning(p for _, p in cases)
    if warning:
        for path, _ in cases:
            if path is not None:
                add_warning(path, warning)
    return warning


def add_warning(findings_json: Path, warning: str) -> None:
    """Append `warning` to a written findings JSON (atomically; the rest is kept as it was)."""
    doc = json.loads(Path(findings_json).read_text(encoding="utf-8"))
    if warning not in doc.setdefault("warnings", []):
        doc["warnings"].append(warning)
        atomic_write_text(Path(findings_json), to_json(doc))
