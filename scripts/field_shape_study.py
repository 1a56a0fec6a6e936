"""Would the lung network's own lopsidedness help as a score component? Issue 23 asks that a strongly
asymmetric lung-field result count as evidence of abnormality. Measured offline on a model's
`evaluate --scores-csv` of a labelled dev split (this reads dev labels: a study, never a threshold or
a checkpoint).

    .venv/bin/python scripts/field_shape_study.py SCORES_CSV TRAIN_NORMALS [--model adult]

The statistic is -log of `LungFields.network_side_ratio` (the network's smaller lung over the larger,
before any fallback; clipped at 0.02), standardised on TRAIN_NORMALS as every component is. It would
enter the image score the way `sides` does (the model's `SidesRule`: beyond its gate, its deviations
less its offset, where higher than the rest). The lung network is the bundled one, or the folder
SSLANOMALY_LUNGS names. Printed: AUROC alone and combined, the share beyond the gate on train
normals, dev normals and dev abnormals, and the shares flagged at the model's own threshold.
"""

from __future__ import annotations

import sys

import numpy as np
from sklearn.metrics import roc_auc_score

from SSLAnomalyLib.core.anatomy.lung_network import bundled_segmenter
from SSLAnomalyLib.core.detection.detector import AnomalyDetector
from SSLAnomalyLib.core.reading.images import list_inputs, read_radiograph
from zone_component_study import dev_study

FLOOR = 0.02  # a ratio under 2 %: one lung missing; the log stays finite


def lopsidedness(detector: AnomalyDetector, files) -> np.ndarray:
    """-log(network side ratio) of each file, the fields drawn as detection draws them."""
    ratios = [detector.prepare(read_radiograph(f))[0].fields.network_side_ratio for f in files]
    return -np.log(np.clip(ratios, FLOOR, 1.0))


def main() -> int:
    detector, rows, y, train_normals, _ = dev_study(__doc__.splitlines()[0])
    rule, threshold = detector.scorer.sides, detector.calibration.threshold
    score = np.array([float(r["score"]) for r in rows])
    train = lopsidedness(detector, list_inputs([train_normals]))
    mean, spread = train.mean(), train.std() + 1e-6
    z_train = (train - mean) / spread
    z = (lopsidedness(detector, [r["file"] for r in rows]) - mean) / spread
    combined = np.maximum(score, rule.term(z))
    gate = rule.gate if rule.gate is not None else 0.0
    print(f"lung network {bundled_segmenter().model_id}; {len(train)} train normals, {len(rows)} dev images "
          f"({int(y.sum())} abnormal); rule: beyond {gate:g} deviations, less {rule.offset:g}")
    print(f"beyond the gate: train normals {np.mean(z_train > gate):.3f}, dev normals {np.mean(z[~y] > gate):.3f}, "
          f"dev abnormals {np.mean(z[y] > gate):.3f}")
    print(f"AUROC: the model {roc_auc_score(y, score):.3f}, lopsidedness alone {roc_auc_score(y, z):.3f}, "
          f"combined {roc_auc_score(y, combined):.3f}")
    print(f"at the model's threshold {threshold:.3f}: normals flagged {np.mean(score[~y] > threshold):.3f} -> "
          f"{np.mean(combined[~y] > threshold):.3f}, abnormals {np.mean(score[y] > threshold):.3f} -> "
          f"{np.mean(combined[y] > threshold):.3f}; train normals raised above it "
          f"{np.mean(rule.term(z_train) > threshold):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
