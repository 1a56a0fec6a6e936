"""Can the lung fields say that the heart is enlarged? Issue 23 asks that an enlarged heart raise the
image score; the bundled adult model flags 12.5 % of cardiomegaly phantoms. A study on normals and
phantoms only (no abnormal label is read):

    .venv/bin/python scripts/heart_size_study.py TRAIN_NORMALS NORMALS [--model adult] [--n 60]

The cardiothoracic ratio is read off the lung fields the product draws (detection's own network and
post-processing): the widest gap between the two fields' medial edges over the widest span of their
lateral edges, in the rows where the heart borders both fields (`evaluation/phantoms.py`'s rows). It
is standardised on TRAIN_NORMALS; printed for NORMALS and for each one's cardiomegaly phantom (drawn as
`evaluate --phantoms cardiomegaly` draws it): AUROC, and the share beyond 2 and 3 deviations.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from SSLAnomalyLib.core.detection.detector import AnomalyDetector
from SSLAnomalyLib.core.reading.images import list_inputs, read_radiograph
from SSLAnomalyLib.evaluation.phantom_evaluation import phantom_on, phantom_seed
from SSLAnomalyLib.evaluation.phantoms import Chest, _cardiac_rows, _edges


def ratio(image01: np.ndarray, lungs: np.ndarray) -> float:
    """Cardiothoracic ratio of bool lung fields (nan where the fields share no cardiac rows), the two
    fields split about the midline as the phantoms split them (`Chest.of`)."""
    fields = Chest.of(image01, lungs).fields
    right, left = fields["right"], fields["left"]
    rows = _cardiac_rows(right, left)
    if rows.size == 0:
        return float("nan")
    _, r_first, r_last = _edges(right)
    _, l_first, l_last = _edges(left)
    return float(np.max(l_first[rows] - r_last[rows] - 1) / np.max(l_last[rows] - r_first[rows] + 1))


def model_grid_ratio(detector: AnomalyDetector, image) -> float:
    prepared = detector.prepare(image)[0]
    return ratio(prepared.image01, prepared.lung)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("train_normals")
    parser.add_argument("normals")
    parser.add_argument("--model", default="adult")
    parser.add_argument("--n", type=int, default=60)
    args = parser.parse_args()
    detector = AnomalyDetector.load(args.model, device="cpu")
    train = np.array([model_grid_ratio(detector, read_radiograph(f)) for f in list_inputs([Path(args.train_normals)])])
    train = train[np.isfinite(train)]
    mean, spread = train.mean(), train.std()
    normal, phantom = [], []
    for i, f in enumerate(list_inputs([Path(args.normals)])[: args.n]):
        image = read_radiograph(f)
        prepared = detector.prepare(image)
        lungs = prepared[0].fields.on_grid(*image.shape[1:]).astype(bool)
        drawn, _ = phantom_on(image, "cardiomegaly", "ctr_0.60-0.65", lungs,
                              phantom_seed(0, "cardiomegaly", "ctr_0.60-0.65", i))
        normal.append(ratio(prepared[0].image01, prepared[0].lung))
        phantom.append(model_grid_ratio(detector, drawn))
    normal, phantom = np.array(normal), np.array(phantom)
    z = lambda v: (v - mean) / spread
    print(f"train normals ({len(train)}): ratio {mean:.3f} +- {spread:.3f} (95th pct {np.percentile(train, 95):.3f})")
    print(f"normals: ratio median {np.nanmedian(normal):.3f}; phantoms median {np.nanmedian(phantom):.3f}")
    ok = np.isfinite(normal) & np.isfinite(phantom)
    print(f"AUROC phantom vs normal {roc_auc_score(np.r_[np.zeros(ok.sum()), np.ones(ok.sum())], np.r_[normal[ok], phantom[ok]]):.3f}")
    for gate in (2, 3):
        print(f"beyond {gate} deviations: train normals {np.mean(z(train) > gate):.3f}, normals "
              f"{np.mean(z(normal[ok]) > gate):.3f}, phantoms {np.mean(z(phantom[ok]) > gate):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
