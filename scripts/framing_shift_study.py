"""Does framing the input by its lung fields undo the acquisition shift that flags new pediatric normals?
(docs/model.md, round 19.) Under the `fov` and `zoom_gamma` perturbations (evaluation/perturbations.py,
seeded by image) the bundled pediatric model's normals move about one deviation up and 28-42 % of them
cross its threshold; the official Kermany test normals did the same to the second-round model. Three
ways of feeding the encoder are refitted on the same normals and scored on the same images:
- `image`: the model input as the product feeds it (the bundled way);
- `framed M`: the input and its lung fields cropped to the lung fields' box, M of its size added on each
  side (`preprocess.lung_box`), resized back and windowed again, before the whole score (pooled, patch,
  sides), so a zoom changes the box with the lungs;
- `aligned`: the input scaled and shifted per axis so that its lung fields' box lands on the reference
  normals' median box (scale clipped to 0.7-1.4), the whole input kept.
Each is a fresh `Scorer` with the model's encoder: reference on 900 seeded Kermany train normals, its
standardisation on the other 241, threshold at their 92nd percentile (the bundled 8 %). Reported: AUROC
of the patient-disjoint dev normals against val pneumonia, the share of each above the threshold, the
normals' mean score, and each component's AUROC / normals' mean deviation. Dev labels are read: a study,
nothing is chosen with it.
    .venv/bin/python scripts/framing_shift_study.py [MODEL]     (about 12 minutes on the 2-core CPU)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from sklearn.metrics import roc_auc_score

from SSLAnomalyLib.core.detection.detector import AnomalyDetector
from SSLAnomalyLib.core.model.preprocess import lung_box, lung_framed, resize, to_model_input
from SSLAnomalyLib.core.model.scoring import Scorer
from SSLAnomalyLib.core.reading.images import list_inputs, read_radiograph
from SSLAnomalyLib.evaluation.perturbations import perturb

ROOT = Path(__file__).resolve().parents[1]
KERMANY = ROOT.parent / "shared" / "data" / "kermany"
DEV_NORMALS = ROOT / "runs" / "dev-patient-disjoint" / "normal"  # made by scripts/patient_disjoint_dev.py
SHIFTS = (None, "fov", "zoom_gamma")
MARGINS = (0.05, 0.15, 0.3)
SCALE_LIMITS = (0.7, 1.4)
REFERENCE_NORMALS, FPR = 900, 0.08


def inputs(detector, files, family=None) -> tuple[np.ndarray, np.ndarray]:
    """Model inputs of `files` (perturbed by `family`, seeded by position) and their lung fields."""
    xs = np.stack([to_model_input((perturb(read_radiograph(f), family, i) if family else read_radiograph(f)).pixels[0],
                                  detector.input_size) for i, f in enumerate(files)])
    return xs, np.stack([fields.mask for fields in detector.anatomy.fields(xs, detector.lung_prior)])


def framed(xs, lungs, margin: float):
    """Inputs framed as the product frames the pooled `lungs` view (`preprocess.lung_framed`), and their
    lung fields cropped to the same box and resized back."""
    out_l = []
    for lung in lungs:
        box = lung_box(lung, margin)
        if box is None:
            out_l.append(lung)
            continue
        r0, r1, c0, c1 = box
        out_l.append(resize(lung[r0:r1, c0:c1].astype(np.float32), lung.shape) >= 0.5)
    return np.stack([lung_framed(x, lung, margin) for x, lung in zip(xs, lungs)]), np.stack(out_l)


def tight_box(lung):
    rows, cols = np.nonzero(lung)
    return (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1) if len(rows) else None


def aligned(xs, lungs, canonical):
    """Inputs and lung fields scaled and shifted per axis so the fields' box lands on `canonical`."""
    R0, R1, C0, C1 = canonical
    out_x, out_l = [], []
    for x, lung in zip(xs, lungs):
        box = tight_box(lung)
        if box is None:
            out_x.append(x), out_l.append(lung)
            continue
        r0, r1, c0, c1 = box
        sr, sc = (float(np.clip(s, *SCALE_LIMITS)) for s in ((R1 - R0) / (r1 - r0), (C1 - C0) / (c1 - c0)))
        matrix = np.diag([1 / sr, 1 / sc])
        offset = np.array([(r0 + r1) / 2 - (R0 + R1) / 2 / sr, (c0 + c1) / 2 - (C0 + C1) / 2 / sc])
        out_x.append(ndimage.affine_transform(x, matrix, offset=offset, order=1, mode="nearest"))
        out_l.append(ndimage.affine_transform(lung.astype(np.float32), matrix, offset=offset, order=1) >= 0.5)
    return np.stack(out_x), np.stack(out_l)


def main(model: str = "pediatric") -> None:
    torch.set_num_threads(2)
    detector = AnomalyDetector.load(model)
    train = list_inputs([KERMANY / "train" / "normal"])
    order = np.random.default_rng(0).permutation(len(train))
    data = {"reference": inputs(detector, [train[i] for i in order[:REFERENCE_NORMALS]]),
            "held_out": inputs(detector, [train[i] for i in order[REFERENCE_NORMALS:]])}
    normal, pneumonia = list_inputs([DEV_NORMALS]), list_inputs([KERMANY / "val" / "pneumonia"])
    for family in SHIFTS:
        data["normal", family], data["pneumonia", family] = inputs(detector, normal, family), inputs(detector, pneumonia, family)
    canonical = tuple(np.median([tight_box(lung) for lung in data["reference"][1] if lung.any()], axis=0))
    ways = {"image": lambda xs, lungs: (xs, lungs), "aligned": lambda xs, lungs: aligned(xs, lungs, canonical)}
    ways.update({f"framed {m}": (lambda xs, lungs, m=m: framed(xs, lungs, m)) for m in MARGINS})
    print(f"{len(normal)} dev normals, {len(pneumonia)} pneumonias; canonical lung box (rows, columns) {canonical}")
    print("way | shift | AUROC | normals above | pneumonia above | normals' mean | pooled, patch, sides: AUROC / normals' mean")
    for name, way in ways.items():
        scorer = Scorer(detector.scorer.net, detector.scorer.config, sides=detector.scorer.sides)
        scorer.fit(*way(*data["reference"]), *way(*data["held_out"]))
        threshold = np.quantile(scorer.held_out_scores.score, 1 - FPR)
        for family in SHIFTS:
            n, p = scorer.score(*way(*data["normal", family])), scorer.score(*way(*data["pneumonia", family]))
            y = np.r_[np.zeros(len(n.score)), np.ones(len(p.score))]
            parts = ", ".join(f"{roc_auc_score(y, np.r_[n.standardised[c], p.standardised[c]]):.3f} / "
                              f"{n.standardised[c].mean():+.2f}" for c in ("pooled", "patch", "sides"))
            print(f"{name} | {family or 'clean'} | {roc_auc_score(y, np.r_[n.score, p.score]):.3f} | "
                  f"{np.mean(n.score > threshold):.1%} | {np.mean(p.score > threshold):.1%} | {n.score.mean():+.2f} | {parts}",
                  flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
