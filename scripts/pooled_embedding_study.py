"""How the image-level embedding is built from the encoder's stages (docs/model.md, round 15): the
product's L2-normalised concatenation against a Mahalanobis distance per stage summed after
standardisation (Rippel et al., 2020), a concatenation of stages normalised one by one, and no
normalisation. Each is fitted with scikit-learn's Ledoit-Wolf on the NIH train normals and read as
the AUROC of NIH val normal vs pneumonia (dev labels: a study, never a threshold or a checkpoint);
a stage's distances are standardised by its train normals' out-of-fold distances (5 folds).

    .venv/bin/python scripts/pooled_embedding_study.py [MODEL]     (default: the bundled adult model)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from sklearn.covariance import LedoitWolf
from sklearn.metrics import roc_auc_score

from SSLAnomalyLib.core.detection.detector import AnomalyDetector
from SSLAnomalyLib.core.model.encoder import feature_maps, to_batch
from SSLAnomalyLib.core.model.preprocess import to_model_input
from SSLAnomalyLib.core.reading.images import list_inputs, read_radiograph

NIH = Path(__file__).resolve().parents[2] / "shared" / "data" / "nih"
STAGES = ("layer1", "layer2", "layer3", "layer4")
FOLDS = 5


def stage_means(net, size: int, folder: Path) -> dict[str, np.ndarray]:
    """Each stage's global mean per image of the folder: {stage: (n, channels)}."""
    out = {s: [] for s in STAGES}
    files = list_inputs([folder])
    for i in range(0, len(files), 32):
        x = np.stack([to_model_input(read_radiograph(f).pixels[0], size) for f in files[i:i + 32]])
        with torch.no_grad():
            maps = feature_maps(net, to_batch(x))
        for s in STAGES:
            out[s].append(maps[s].mean(dim=(-2, -1)).numpy())
    return {s: np.concatenate(v) for s, v in out.items()}


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def distance(train: np.ndarray, test: np.ndarray) -> np.ndarray:
    fit = LedoitWolf().fit(train)
    d = test - fit.location_
    return np.sqrt(np.einsum("ij,jk,ik->i", d, fit.precision_, d))


def out_of_fold(train: np.ndarray) -> np.ndarray:
    fold = np.random.default_rng(0).permutation(len(train)) % FOLDS
    scores = np.empty(len(train))
    for j in range(FOLDS):
        scores[fold == j] = distance(train[fold != j], train[fold == j])
    return scores


def main() -> int:
    detector = AnomalyDetector.load(sys.argv[1] if len(sys.argv) > 1 else "adult", device="cpu")
    net, size = detector.scorer.net, detector.input_size
    train = stage_means(net, size, NIH / "train" / "normal")
    normal, pneumonia = stage_means(net, size, NIH / "val" / "normal"), stage_means(net, size, NIH / "val" / "pneumonia")
    test = {s: np.r_[normal[s], pneumonia[s]] for s in STAGES}
    y = np.r_[np.zeros(len(normal["layer1"])), np.ones(len(pneumonia["layer1"]))]
    embeddings = {"L2-normalised concatenation (the product's)": lambda f, ss: unit(np.concatenate([f[s] for s in ss], 1)),
                  "concatenation of stages normalised one by one": lambda f, ss: np.concatenate([unit(f[s]) for s in ss], 1),
                  "concatenation, not normalised": lambda f, ss: np.concatenate([f[s] for s in ss], 1)}
    print("| image-level embedding | stages | NIH dev AUROC |\n|---|---|---|")
    for ss in (("layer3", "layer4"), ("layer2", "layer3", "layer4"), STAGES):
        for name, embed in embeddings.items():
            print(f"| {name} | {'+'.join(ss)} | {roc_auc_score(y, distance(embed(train, ss), embed(test, ss))):.3f} |")
        summed = sum((distance(unit(train[s]), unit(test[s])) - oof.mean()) / oof.std()
                     for s in ss for oof in [out_of_fold(unit(train[s]))])
        print(f"| a distance per stage, standardised and summed | {'+'.join(ss)} | {roc_auc_score(y, summed):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
