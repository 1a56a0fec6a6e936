"""Would the heatmap's in-lung peak help as a texture component? Adult pneumonia and the focal phantoms
(lobar consolidation, masses) fill a small part of the lung fields, whose mean (`patch`) dilutes them;
the mean was chosen over the top-10 % on children (docs/model.md), where pneumonia is often diffuse.
Measured offline on a model's `evaluate --scores-csv` of a labelled dev split (this reads dev labels:
a study, never a threshold or a checkpoint) and on phantoms drawn on normals (normals only).

    .venv/bin/python scripts/peak_component_study.py SCORES_CSV TRAIN_NORMALS [--model adult] \
        [--phantom-normals DIR]

The peak is standardised by the model's own held-out normals' `peak` statistics (scoring.component_stats,
as every component is). Candidates, each with the model's `sides` term where higher:
mean(pooled, patch, peak) and mean(pooled, peak). Printed: AUROC alone and as candidates on dev, and
per phantom kind and size the AUROC against the unaltered normals (`evaluate --phantoms`'s drawing).
"""

from __future__ import annotations

import sys

import numpy as np
from sklearn.metrics import roc_auc_score

from SSLAnomalyLib.core.detection.detector import AnomalyDetector
from SSLAnomalyLib.core.reading.images import list_inputs, read_radiograph
from SSLAnomalyLib.evaluation.phantom_evaluation import drawn_lungs, phantom_on, phantom_seed
from SSLAnomalyLib.evaluation.phantoms import SIZES
from zone_component_study import dev_study

PHANTOM_NORMALS = 40


def standardised(detector: AnomalyDetector, image) -> dict[str, float]:
    """The scored components' z-scores and the peak's, as detection computes them (side heat included)."""
    prepared = detector.prepare(image)
    batch = detector.scorer.score(np.stack([p.image01 for p in prepared]), np.stack([p.lung for p in prepared]))
    mean, spread = detector.scorer.component_stats["peak"]
    z = {c: float(v[0]) for c, v in batch.standardised.items()}
    return dict(z, peak=float((batch.peaks[0] - mean) / spread))


def candidates(detector: AnomalyDetector, z: list[dict[str, float]]) -> dict[str, np.ndarray]:
    """Each candidate image score of the standardised components `z`."""
    col = {c: np.array([r[c] for r in z]) for c in z[0]}
    sides = detector.scorer.sides.term(col["sides"])
    return {"model": np.maximum((col["pooled"] + col["patch"]) / 2, sides), "peak alone": col["peak"],
            "pooled+patch+peak": np.maximum((col["pooled"] + col["patch"] + col["peak"]) / 3, sides),
            "pooled+peak": np.maximum((col["pooled"] + col["peak"]) / 2, sides)}


def phantom_table(detector: AnomalyDetector, normal_dir: str) -> None:
    """AUROC of each candidate, phantoms against the unaltered normals they were drawn on."""
    normals, drawn = [], {(k, s): [] for k in SIZES for s in SIZES[k]}
    for i, f in enumerate(list_inputs([normal_dir])[:PHANTOM_NORMALS]):
        image = read_radiograph(f)
        lungs = drawn_lungs(detector, image)
        normals.append(standardised(detector, image))
        for kind, size in drawn:
            try:
                altered, _ = phantom_on(image, kind, size, lungs, phantom_seed(0, kind, size, i))
            except ValueError:
                continue
            drawn[kind, size].append(standardised(detector, altered))
    base = candidates(detector, normals)
    print("phantom | " + " | ".join(base))
    for (kind, size), z in drawn.items():
        scores = candidates(detector, z)
        y = np.r_[np.zeros(len(normals)), np.ones(len(z))]
        print(f"{kind} {size} | " + " | ".join(f"{roc_auc_score(y, np.r_[base[c], scores[c]]):.3f}" for c in base))


def main() -> int:
    detector, rows, y, train_normals, args = dev_study(__doc__.splitlines()[0], "--phantom-normals")
    dev = candidates(detector, [standardised(detector, read_radiograph(r["file"])) for r in rows])
    train = candidates(detector, [standardised(detector, read_radiograph(f)) for f in list_inputs([train_normals])])
    abnormal = np.flatnonzero(y)
    hard = np.r_[np.flatnonzero(~y), abnormal[np.argsort(dev["model"][abnormal])[:len(abnormal) // 3]]]
    print(f"{len(rows)} dev images ({int(y.sum())} abnormal); the hard dev: the normals and the third of "
          f"the abnormals the model ranks lowest")
    for name, s in dev.items():
        print(f"{name}: dev AUROC {roc_auc_score(y, s):.3f}; hard dev {roc_auc_score(y[hard], s[hard]):.3f}; "
              f"train normals (in the reference) mean {train[name].mean():.2f}")
    if args.phantom_normals:
        phantom_table(detector, args.phantom_normals)
    return 0


if __name__ == "__main__":
    sys.exit(main())
