"""Where another source's offset lies (docs/model.md, round 17): per group of radiographs, the mean grey of
the lung fields in the model input (the per-image 1st-99th percentile window) and a model's `pooled` and
`patch` components in deviations of its normals, with NIH split by view (AP, PA).

    .venv/bin/python scripts/acquisition_offset_study.py [MODEL]     (default: the bundled adult model)

Groups: NIH val normals and pneumonias by view (../shared/data/nih/metadata.csv), the 55 held-out openist
normals of scripts/expert_opacity_check.py and 120 RSNA val normals; then the AUROC of the view alone as a
score on NIH dev (PA above AP). Dev labels and views are read (a study).
"""

import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from SSLAnomalyLib.core.detection.detector import AnomalyDetector
from SSLAnomalyLib.core.model.preprocess import to_model_input
from SSLAnomalyLib.core.reading.images import list_inputs, read_radiograph

sys.path.insert(0, str(Path(__file__).resolve().parent))
from nih_views import nih_views  # noqa: E402  (AP or PA by file name)

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
OTHER = {"openist normals": ROOT / "runs" / "bundling" / "openist-whiteout" / "normal",
         "RSNA val normals": DATA / "rsna" / "val" / "normal"}
OTHER_SOURCE = 120  # RSNA val normals read, as bundling_check.py measures them


def groups() -> dict[str, list[Path]]:
    view = nih_views()
    out = {}
    for label in ("normal", "pneumonia"):
        files = list_inputs([DATA / "nih" / "val" / label])
        for v in ("AP", "PA"):
            out[f"NIH val {label}, {v}"] = [f for f in files if view[f.name] == v]
    out.update({name: list_inputs([folder])[:OTHER_SOURCE] for name, folder in OTHER.items()})
    return out


def main() -> int:
    detector = AnomalyDetector.load(sys.argv[1] if len(sys.argv) > 1 else "adult", device="cpu")
    print("| group | images | lung-field mean grey | `pooled` (deviations) | `patch` (deviations) |\n|---|---|---|---|---|")
    found = groups()
    for name, files in found.items():
        grey, pooled, patch = [], [], []
        for i in range(0, len(files), 32):
            x = np.stack([to_model_input(read_radiograph(f).pixels[0], detector.input_size) for f in files[i:i + 32]])
            lungs = np.stack([f.mask for f in detector.anatomy.fields(x, detector.lung_prior)])
            z = detector.scorer.score(x, lungs).standardised
            grey += [a[m].mean() for a, m in zip(x, lungs)]
            pooled += list(z["pooled"])
            patch += list(z["patch"])
        print(f"| {name} | {len(files)} | {np.mean(grey):.3f} | {np.mean(pooled):.2f} | {np.mean(patch):.2f} |")
    normal, pneumonia = (np.r_[[0] * len(found[f"NIH val {g}, AP"]), [1] * len(found[f"NIH val {g}, PA"])]
                         for g in ("normal", "pneumonia"))
    auroc = roc_auc_score(np.r_[np.zeros(len(normal)), np.ones(len(pneumonia))], np.r_[normal, pneumonia])
    print(f"\nThe view alone as a score (PA above AP), NIH val normal vs pneumonia: AUROC {auroc:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
