"""What the component studies (`mirror_asymmetry_study.py`, `aeration_study.py`) share: the model's
own image score of its standardised components, each candidate's values on the phantom normals and
the phantoms drawn on them (`evaluate --phantoms`'s drawing, seed 0), the per-cell figures printed,
and the labelled dev split's AUROC (a study's, never a threshold's)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import numpy as np
from sklearn.metrics import roc_auc_score

from SSLAnomalyLib.core.detection.detector import AnomalyDetector
from SSLAnomalyLib.core.reading.images import list_inputs, read_radiograph
from SSLAnomalyLib.evaluation.phantom_evaluation import drawn_lungs, phantom_on, phantom_seed
from SSLAnomalyLib.evaluation.phantoms import SIZES

Row = dict[str, float]


def model_score(detector: AnomalyDetector, z: dict[str, float]) -> float:
    """The model's image score of its standardised components: the texture mean or the `sides` term."""
    sides = float(detector.scorer.sides.term(np.array([z["sides"]]))[0])
    return max((z["pooled"] + z["patch"]) / 2, sides)


def phantom_rows(detector: AnomalyDetector, normal_dir, n: int, row: Callable[..., Row]
                 ) -> tuple[list[Row], dict[tuple[str, str], list[Row]]]:
    """`row` of the first `n` normals of `normal_dir` and of every phantom kind and size drawn on each."""
    normals, drawn = [], {(k, s): [] for k in SIZES for s in SIZES[k]}
    for i, f in enumerate(list_inputs([Path(normal_dir)])[:n]):
        image = read_radiograph(f)
        lungs = drawn_lungs(detector, image)
        normals.append(row(image))
        for kind, size in drawn:
            try:
                altered, _ = phantom_on(image, kind, size, lungs, phantom_seed(0, kind, size, i))
            except ValueError:
                continue
            drawn[kind, size].append(row(altered))
        print(f"{i + 1} phantom normals", file=sys.stderr, end="\r")
    return normals, drawn


def phantom_cells(normals: list[Row], found: list[Row], names: list[str]) -> list[str]:
    """Per candidate: AUROC of the phantoms against the normals / share above the normals' 95th percentile."""
    cells = []
    for c in names:
        n, a = [r[c] for r in normals], [r[c] for r in found]
        auc = roc_auc_score([0] * len(n) + [1] * len(a), n + a)
        cells.append(f"{auc:.3f} / {np.mean(np.array(a) > np.quantile(n, 0.95)):.0%}")
    return cells


def dev_rows(normal_dir, abnormal_dir, row: Callable[..., Row], names: list[str]) -> tuple[list[Row], list[Row]]:
    """`row` of every dev image, after printing each candidate's AUROC (this reads dev labels)."""
    dev_n = [row(read_radiograph(f)) for f in list_inputs([Path(normal_dir)])]
    dev_a = [row(read_radiograph(f)) for f in list_inputs([Path(abnormal_dir)])]
    labels = [0] * len(dev_n) + [1] * len(dev_a)
    print(f"dev ({len(dev_n)} normal, {len(dev_a)} abnormal) AUROC: " + ", ".join(
        f"{c} {roc_auc_score(labels, [r[c] for r in dev_n + dev_a]):.3f}" for c in names))
    return dev_n, dev_a
