"""Would the share of each lung field that does not look aerated help as a score component? (issue 23)

The bundled lung network was trained with opacities drawn into the lung fields, so it draws the
anatomical field whatever fills it. The network bundled before it (commit 2f67e09) learned normal
lungs only and draws no lung where a lung is white (docs/anatomy.md). Where the anatomical field is
not drawn by the normals-only network, the lung does not look aerated: a white-out, an effusion, a
dense consolidation. Each side's unaerated share is a density statistic in the lung's own anatomy,
which the encoder's texture features and the darkest-tenth `sides` statistic do not measure.

    .venv/bin/python scripts/aeration_study.py --model adult --normals-only runs/lungs-normals-only \
        --fit-normals DIR --phantom-normals DIR [--dev-normal DIR --dev-abnormal DIR]

Candidates (each standardised on the fit normals, which are never scored here):
- `unaerated-max`: the larger side's unaerated share of its anatomical field;
- `unaerated-diff`: the two sides' shares apart (a one-sided loss of aeration);
and each beside the model's score as the `sides` term is (`max(model, z - 2)` where z > 2, z the
candidate's standardised value), so a normal's score is left as it was. Printed: AUROC per phantom
kind and size against the unaltered normals and the share above the normals' 95th percentile, and
AUROC on the labelled dev split. **The dev figures read abnormal labels**: a study to decide whether
to build the component, never a threshold or a checkpoint.

With `--picture PNG` it draws, for the first `--picture-normals` phantom normals, the normal and its
large effusion with the anatomical field outlined (green) and its unaerated part filled (red), and
stops there (docs/images/aeration_effusion.png).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from SSLAnomalyLib.core.anatomy.lung_network import LungSegmenter
from SSLAnomalyLib.core.detection.detector import AnomalyDetector
from SSLAnomalyLib.core.reading.images import list_inputs, read_radiograph
from SSLAnomalyLib.evaluation.phantom_evaluation import drawn_lungs, phantom_on, phantom_seed
from study_rows import dev_rows, model_score, phantom_cells, phantom_rows

CANDIDATES = ("unaerated-max", "unaerated-diff")
GATE = 2.0


def unaerated_map(detector: AnomalyDetector, normals_only: LungSegmenter, image):
    """The model input, its anatomical lung fields and their unaerated part, on the model grid."""
    p = detector.prepare(image)[0]
    aerated = normals_only.probability(p.image01[None])[0] >= 0.5
    return p, p.lung, p.lung & ~aerated


def unaerated(detector: AnomalyDetector, normals_only: LungSegmenter, image) -> tuple[dict[str, float], dict[str, float]]:
    """Each candidate's raw value and the model's standardised components of one radiograph."""
    p, lung, missing = unaerated_map(detector, normals_only, image)
    half = np.zeros_like(lung)
    half[:, : lung.shape[1] // 2] = True
    shares = [float(missing[side].mean()) if side.any() else 1.0 for side in (lung & half, lung & ~half)]
    batch = detector.scorer.score(p.image01[None], lung[None])
    z = {c: float(v[0]) for c, v in batch.standardised.items()}
    return {"unaerated-max": max(shares), "unaerated-diff": abs(shares[0] - shares[1])}, z


def picture(detector: AnomalyDetector, normals_only: LungSegmenter, normal_dir: Path, n: int, out: Path) -> None:
    """Normals (top row) and their large effusions (bottom row): field outline green, unaerated part red."""
    from PIL import Image
    from scipy import ndimage
    tiles = [[], []]
    for i, f in enumerate(list_inputs([normal_dir])[:n]):
        image = read_radiograph(f)
        altered, _ = phantom_on(image, "effusion", "large", drawn_lungs(detector, image),
                                phantom_seed(0, "effusion", "large", i))
        for row, shown in zip(tiles, (image, altered)):
            p, lung, missing = unaerated_map(detector, normals_only, shown)
            rgb = np.repeat((p.image01 * 255).astype(np.uint8)[..., None], 3, -1)
            rgb[missing] = (0.5 * rgb[missing] + [120, 0, 0]).astype(np.uint8)
            rgb[lung & ~ndimage.binary_erosion(lung)] = [0, 220, 0]
            row.append(np.kron(rgb, np.ones((2, 2, 1), np.uint8)))
    Image.fromarray(np.concatenate([np.concatenate(r, 1) for r in tiles], 0)).save(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="adult")
    parser.add_argument("--normals-only", required=True, help="the lung network trained on normal lungs only")
    parser.add_argument("--fit-normals", required=True)
    parser.add_argument("--phantom-normals", required=True)
    parser.add_argument("--dev-normal")
    parser.add_argument("--dev-abnormal")
    parser.add_argument("--n-fit", type=int, default=150)
    parser.add_argument("--n-phantom", type=int, default=40)
    parser.add_argument("--picture", type=Path)
    parser.add_argument("--picture-normals", type=int, default=5)
    args = parser.parse_args()
    detector = AnomalyDetector.load(args.model, device="cpu")
    normals_only = LungSegmenter.load(args.normals_only)
    if args.picture:
        picture(detector, normals_only, Path(args.phantom_normals), args.picture_normals, args.picture)
        return 0
    fit = [unaerated(detector, normals_only, read_radiograph(f))[0]
           for f in list_inputs([Path(args.fit_normals)])[: args.n_fit]]
    norm = {c: (np.mean([r[c] for r in fit]), np.std([r[c] for r in fit]) + 1e-8) for c in CANDIDATES}
    print("fit normals: " + ", ".join(f"{c} mean {m:.3f} spread {s:.3f}, 95th {np.quantile([r[c] for r in fit], 0.95):.3f}"
                                      for c, (m, s) in norm.items()))

    def row(image) -> dict[str, float]:
        raw, z = unaerated(detector, normals_only, image)
        out = {c: (raw[c] - norm[c][0]) / norm[c][1] for c in CANDIDATES}
        out["model"] = model_score(detector, z)
        for c in CANDIDATES:
            out[f"model|{c}"] = max(out["model"], out[c] - GATE) if out[c] > GATE else out["model"]
        return out

    names = ["model", *CANDIDATES, *(f"model|{c}" for c in CANDIDATES)]
    normals, drawn = phantom_rows(detector, args.phantom_normals, args.n_phantom, row)
    threshold = detector.calibration.threshold
    print("phantom | " + " | ".join(names) + f" | flagged at the model's threshold {threshold:.3f}: model / model|unaerated-max")
    for (kind, size), found in drawn.items():
        cells = phantom_cells(normals, found, names)
        flagged = [np.mean([r[c] > threshold for r in found]) for c in ("model", "model|unaerated-max")]
        print(f"{kind} {size} | " + " | ".join(cells) + f" | {flagged[0]:.0%} / {flagged[1]:.0%}")
    print("phantom normals flagged at the threshold: " + ", ".join(
        f"{c} {np.mean([r[c] > threshold for r in normals]):.1%}" for c in ("model", "model|unaerated-max", "model|unaerated-diff")))
    if args.dev_normal and args.dev_abnormal:
        dev_n, dev_a = dev_rows(args.dev_normal, args.dev_abnormal, row, names)
        print("dev flagged at the threshold, normals / abnormals: " + ", ".join(
            f"{c} {np.mean([r[c] > threshold for r in dev_n]):.1%} / {np.mean([r[c] > threshold for r in dev_a]):.1%}"
            for c in ("model", "model|unaerated-max", "model|unaerated-diff")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
