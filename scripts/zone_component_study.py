"""Would the zonal aerated-density difference help as a fourth texture component? Measured offline
on a model's `evaluate --scores-csv` of a labelled dev split (this reads dev labels: a study, never
a threshold or a checkpoint).

    .venv/bin/python scripts/zone_component_study.py SCORES_CSV TRAIN_NORMALS [--model adult]

The zonal statistic is `scripts/field_density_study.py`'s: each lung field cut in vertical thirds,
the 10th percentile (or median) of the model input in each, the two sides' absolute difference per
third divided by its spread over TRAIN_NORMALS, the largest of the three, standardised on
TRAIN_NORMALS. The candidate image score is max(mean(pooled, patch, zones), the model's `sides` term),
beside the model's own score, for the images of SCORES_CSV (read again from the files it names).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from field_density_study import stats
from SSLAnomalyLib.core.detection.detector import AnomalyDetector
from SSLAnomalyLib.core.reading.images import list_inputs, read_radiograph

STATISTICS = ("zones-q10", "zones-q50")


def zone_differences(detector: AnomalyDetector, files) -> dict[str, np.ndarray]:
    """Per statistic: (files, thirds) absolute left-right differences, as detection draws the fields."""
    out = {q: [] for q in STATISTICS}
    for f in files:
        prepared = detector.prepare(read_radiograph(f))[0]
        values = stats(prepared.image01, prepared.lung)
        for q in STATISTICS:
            out[q].append(np.abs(values[q][:, 0] - values[q][:, 1]))
    return {q: np.stack(v) for q, v in out.items()}


def dev_study(description: str, *options: str
              ) -> tuple[AnomalyDetector, list[dict], np.ndarray, Path, argparse.Namespace]:
    """What every offline component study reads from its command line (SCORES_CSV TRAIN_NORMALS
    [--model M], and a study's own `options`, each taking one value): the model, the clean rows of the
    scores CSV, whether each is abnormal, the train normals, and every argument."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("scores_csv")
    parser.add_argument("train_normals")
    parser.add_argument("--model", default="adult")
    for option in options:
        parser.add_argument(option)
    args = parser.parse_args()
    rows = [r for r in csv.DictReader(open(args.scores_csv, encoding="utf-8")) if r["condition"] == "clean"]
    return (AnomalyDetector.load(args.model, device="cpu"), rows, np.array([r["label"] != "normal" for r in rows]),
            Path(args.train_normals), args)


def main() -> int:
    detector, rows, y, train_normals, _ = dev_study(__doc__.splitlines()[0])
    col = {c: np.array([float(r[c]) for r in rows]) for c in ("score", "pooled", "patch", "sides")}
    sides_term = detector.scorer.sides.term(col["sides"])
    train = zone_differences(detector, list_inputs([train_normals]))
    dev = zone_differences(detector, [r["file"] for r in rows])
    print(f"{len(rows)} images ({int(y.sum())} abnormal); the model's score AUROC {roc_auc_score(y, col['score']):.3f}")
    for q in STATISTICS:
        spread = train[q].std(0) + 1e-6
        on_train = (train[q] / spread).max(1)
        zones = ((dev[q] / spread).max(1) - on_train.mean()) / on_train.std()
        candidate = np.maximum((col["pooled"] + col["patch"] + zones) / 3, sides_term)
        print(f"{q}: alone AUROC {roc_auc_score(y, zones):.3f}; as a third texture component "
              f"{roc_auc_score(y, candidate):.3f}; beyond 2 deviations: normals {np.mean(zones[~y] > 2):.3f}, "
              f"abnormals {np.mean(zones[y] > 2):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
