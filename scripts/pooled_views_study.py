"""What the image-level embedding is pooled over (docs/model.md, round 16): the whole model input, the
input framed by its lung fields' box at several margins (`preprocess.lung_framed`), the whole input
averaged over shifted and zoomed views (test-time augmentation, the reference fitted on every view),
and the whole input histogram-standardised onto the NIH train normals' mean landmarks (Nyul et al.).

The `pooled` component alone (Ledoit-Wolf on the NIH train normals' embeddings, the model's pooled
layers): its AUROC on NIH val normal vs pneumonia (dev labels: a study, never a threshold or a
checkpoint), and how far another source's normals move: the openist normals' mean distance in NIH val
normals' deviations, and the share of openist normals and of their expert-mask white-outs above the
NIH val normals' 93rd percentile (the model's 7 % rate, read on those 60 normals).

    .venv/bin/python scripts/pooled_views_study.py [MODEL]     (default: the bundled adult model)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from SSLAnomalyLib.core.detection.detector import AnomalyDetector
from SSLAnomalyLib.core.model.encoder import feature_maps, pooled_features, to_batch
from SSLAnomalyLib.core.model.preprocess import lung_framed, to_model_input
from SSLAnomalyLib.core.reading.images import list_inputs, read_radiograph

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pooled_embedding_study import distance  # noqa: E402  (the Ledoit-Wolf Mahalanobis distance of round 15's study)

ROOT = Path(__file__).resolve().parents[1]
NIH = ROOT.parent / "shared" / "data" / "nih"
OPENIST = ROOT / "runs" / "bundling" / "openist-whiteout"  # made by scripts/expert_opacity_check.py
FOLDERS = {"train": NIH / "train" / "normal", "normal": NIH / "val" / "normal", "pneumonia": NIH / "val" / "pneumonia",
           "openist": OPENIST / "normal", "whiteout": OPENIST / "whiteout"}
MARGINS = (0.0, 0.05, 0.15, 0.3)
VIEWS = ((0, 0, 1), (0.05, 0, 1), (-0.05, 0, 1), (0, 0.05, 1), (0, -0.05, 1), (0, 0, 0.92), (0, 0, 1.08))  # dx, dy, zoom
LANDMARKS = np.linspace(0, 100, 11)


def shifted(x: torch.Tensor, dx: float, dy: float, zoom: float) -> torch.Tensor:
    theta = torch.tensor([[zoom, 0, dx], [0, zoom, dy]], dtype=x.dtype).expand(len(x), 2, 3)
    return F.grid_sample(x, F.affine_grid(theta, list(x.shape), align_corners=False), padding_mode="border",
                         align_corners=False)


class Embedder:
    def __init__(self, detector: AnomalyDetector, template: np.ndarray):
        self.detector, self.size, self.template = detector, detector.input_size, template
        self.net, self.layers = detector.scorer.net, detector.scorer.config.pooled_layers

    @torch.no_grad()
    def pooled(self, x: np.ndarray) -> np.ndarray:
        return pooled_features(feature_maps(self.net, to_batch(x)), self.layers).numpy()

    def standardised(self, x: np.ndarray) -> np.ndarray:
        marks = [np.maximum.accumulate(np.percentile(a, LANDMARKS)) + np.arange(len(LANDMARKS)) * 1e-6 for a in x]
        return np.stack([np.interp(a, m, self.template) for a, m in zip(x, marks)]).astype(np.float32)

    def folder(self, folder: Path) -> dict[str, np.ndarray]:
        """{variant: (n, d) embeddings, or (n, views, d) for the shifted views} of a folder."""
        out: dict[str, list] = {}
        files = list_inputs([folder])
        for i in range(0, len(files), 32):
            x = np.stack([to_model_input(read_radiograph(f).pixels[0], self.size) for f in files[i:i + 32]])
            lungs = [f.mask for f in self.detector.anatomy.fields(x, self.detector.lung_prior)]
            out.setdefault("whole input", []).append(self.pooled(x))
            for m in MARGINS:
                out.setdefault(f"lung-framed, margin {m}", []).append(
                    self.pooled(np.stack([lung_framed(a, lung, m) for a, lung in zip(x, lungs)])))
            with torch.no_grad():
                views = [pooled_features(feature_maps(self.net, shifted(to_batch(x), *v)), self.layers).numpy()
                         for v in VIEWS]
            out.setdefault("views", []).append(np.stack(views, 1))
            out.setdefault("whole input, histogram-standardised", []).append(self.pooled(self.standardised(x)))
        return {k: np.concatenate(v) for k, v in out.items()}


def row(name: str, d: dict[str, np.ndarray]) -> str:
    normal, pneumonia, openist, whiteout = d["normal"], d["pneumonia"], d["openist"], d["whiteout"]
    auroc = roc_auc_score(np.r_[np.zeros(len(normal)), np.ones(len(pneumonia))], np.r_[normal, pneumonia])
    t = np.quantile(normal, 0.93)
    shift = (openist.mean() - normal.mean()) / normal.std()
    return (f"| {name} | {auroc:.3f} | {shift:.2f} | {np.mean(openist > t):.1%} | {np.mean(whiteout > t):.1%} |")


def main() -> int:
    detector = AnomalyDetector.load(sys.argv[1] if len(sys.argv) > 1 else "adult", device="cpu")
    train = [to_model_input(read_radiograph(f).pixels[0], detector.input_size) for f in list_inputs([FOLDERS["train"]])]
    embedder = Embedder(detector, np.mean([np.percentile(a, LANDMARKS) for a in train], 0))
    e = {k: embedder.folder(f) for k, f in FOLDERS.items()}
    print("| pooled over | NIH dev AUROC (`pooled` alone) | openist normals' shift (deviations) | openist normals above "
          "the NIH 93rd percentile | white-outs above it |\n|---|---|---|---|---|")
    for variant in e["train"]:
        if variant == "views":
            train = e["train"]["views"].reshape(-1, e["train"]["views"].shape[-1])
            scores = {k: np.mean([distance(train, v["views"][:, j]) for j in range(len(VIEWS))], 0)
                      for k, v in e.items() if k != "train"}
            print(row("whole input, mean distance over 7 shifted and zoomed views (reference on all 7)", scores))
        else:
            print(row(variant, {k: distance(e["train"][variant], v[variant]) for k, v in e.items() if k != "train"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
