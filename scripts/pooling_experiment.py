"""Does the image-level (pooled) component fail under burned-in markers because of how it pools?
Refits only the pooled Gaussian, on 400 seeded kermany/train normals through a model's encoder, for
four ways of pooling the feature maps (mean over the image, mean over the lung fields, median,
25 %-trimmed mean), and reports AUROC and the share of normals above the clean 95th percentile on
kermany/val clean and under `markers` and `zoom_gamma` (evaluation/perturbations.py, seeded by image).
A diagnostic, not a product path: the answer (docs/model.md, round 3) decided what not to build.
    .venv/bin/python scripts/pooling_experiment.py [MODEL]        (about 8 minutes on one core)
"""

import glob
import sys

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.covariance import LedoitWolf
from sklearn.metrics import roc_auc_score

from SSLAnomalyLib.core.detection.detector import AnomalyDetector
from SSLAnomalyLib.core.model.encoder import feature_maps, to_batch
from SSLAnomalyLib.core.model.preprocess import to_model_input
from SSLAnomalyLib.core.reading.images import read_radiograph
from SSLAnomalyLib.evaluation.perturbations import perturb

DATA = "../shared/data/kermany"


def inputs(detector, files, family=None):
    xs = []
    for i, f in enumerate(files):
        image = read_radiograph(f)
        xs.append(to_model_input((perturb(image, family, i) if family else image).pixels[0], detector.input_size))
    xs = np.stack(xs)
    return xs, detector.anatomy.masks(xs)


@torch.no_grad()
def pooled(detector, xs, lungs) -> dict[str, np.ndarray]:
    out = {"image mean": [], "lung mean": [], "median": [], "trimmed mean": []}
    for i in range(0, len(xs), 32):
        maps = feature_maps(detector.scorer.net, to_batch(xs[i:i + 32]))
        m = torch.from_numpy(lungs[i:i + 32].astype(np.float32))[:, None]
        parts = {k: [] for k in out}
        for layer in detector.scorer.config.pooled_layers:
            a = maps[layer]
            w = F.interpolate(m, size=a.shape[-2:], mode="area")
            flat = a.flatten(2)
            ranked = flat.sort(dim=2).values
            q = flat.shape[2] // 4
            parts["image mean"].append(flat.mean(2))
            parts["lung mean"].append((a * w).sum((-2, -1)) / w.sum((-2, -1)).clamp_min(1e-6))
            parts["median"].append(flat.median(dim=2).values)
            parts["trimmed mean"].append(ranked[:, :, q:flat.shape[2] - q].mean(2))
        for k, v in parts.items():
            out[k].append(F.normalize(torch.cat(v, 1), dim=1))
    return {k: torch.cat(v).numpy() for k, v in out.items()}


def main(model: str = "pediatric") -> None:
    torch.set_num_threads(1)
    detector = AnomalyDetector.load(model)
    rng = np.random.default_rng(0)
    train = sorted(glob.glob(f"{DATA}/train/normal/*"))
    train = [train[i] for i in rng.choice(len(train), 400, replace=False)]
    normal, pneumonia = sorted(glob.glob(f"{DATA}/val/normal/*")), sorted(glob.glob(f"{DATA}/val/pneumonia/*"))
    gaussians = {k: LedoitWolf().fit(v) for k, v in pooled(detector, *inputs(detector, train)).items()}

    def distance(k, v):
        d = v - gaussians[k].location_
        return np.sqrt(np.einsum("nd,de,ne->n", d, gaussians[k].precision_, d))

    clean = {}
    for family in (None, "markers", "zoom_gamma"):
        n = pooled(detector, *inputs(detector, normal, family))
        p = pooled(detector, *inputs(detector, pneumonia, family))
        for k in gaussians:
            dn, dp = distance(k, n[k]), distance(k, p[k])
            threshold = clean.setdefault(k, np.quantile(dn, 0.95))
            auroc = roc_auc_score(np.r_[np.zeros(len(dn)), np.ones(len(dp))], np.r_[dn, dp])
            print(f"{family or 'clean'} | {k} | AUROC {auroc:.3f} | normals above the clean threshold "
                  f"{np.mean(dn > threshold):.0%} | pneumonia above it {np.mean(dp > threshold):.0%}", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
