"""Would left-right asymmetry of the patch features help as a score component? (issue 23, item 2)

A large effusion or a lobar consolidation fills part of one lung field; the mean patch distance over
both fields dilutes it (`patch` of a large effusion: +0.09 deviations, round 21) and the densest-tenth
statistic `sides` does not see it at the base (round 11). A normal chest is nearly symmetric about its
midline, so each patch feature is compared with the feature at the mirrored position across the
midline of the lung fields (the nearest of its 3x3 neighbours there, as the reference tolerates
shifts), each channel on the normals' scale; each position's distance is then standardised by what
normals show there (the heart makes the lower fields differ in every normal).

    .venv/bin/python scripts/mirror_asymmetry_study.py --model adult --fit-normals DIR \
        --phantom-normals DIR --dev-normal DIR --dev-abnormal DIR [--n-fit 150]

Candidates (raw, then standardised on the fit normals, which are never scored here):
- `asym-mean`: the mean standardised asymmetry over the lung positions that have a mirror in the lungs;
- `asym-top`: the mean of its top tenth (a focal departure);
- `asym-zone`: the largest of the three vertical thirds' means (a basal effusion);
and each beside the model's own score as a texture component (mean of pooled, patch and it, with the
model's `sides` term where higher). Printed: AUROC per phantom kind and size against the unaltered
normals and the share above the normals' 95th percentile, and AUROC on the labelled dev split. **The
dev figures read abnormal labels**: a study to decide whether to build the component, never a
threshold or a checkpoint.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from SSLAnomalyLib.core.detection.detector import AnomalyDetector
from SSLAnomalyLib.core.model.encoder import feature_maps, patch_features, to_batch
from SSLAnomalyLib.core.reading.images import list_inputs, read_radiograph
from study_rows import dev_rows, model_score, phantom_cells, phantom_rows

CANDIDATES = ("asym-mean", "asym-top", "asym-zone")


def encoded(detector: AnomalyDetector, image, layers: tuple[str, ...]) -> tuple[torch.Tensor, np.ndarray, dict[str, float]]:
    """Patch features of `layers` (c, h, w), the lung fields on their grid (h, w) and the model's
    standardised components of one radiograph, as detection computes them."""
    p = detector.prepare(image)[0]
    x, lung = p.image01[None], p.lung[None]
    with torch.no_grad():
        patches = patch_features(feature_maps(detector.scorer.net, to_batch(x), layers), layers)
    batch = detector.scorer.score(x, lung)
    z = {c: float(v[0]) for c, v in batch.standardised.items()}
    grid = F.adaptive_max_pool2d(torch.from_numpy(lung.astype(np.float32))[None], patches.shape[-2:])[0, 0]
    return patches[0], grid.numpy() > 0, z


def asymmetry_map(patches: torch.Tensor, lung: np.ndarray, precision: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Each position's Mahalanobis distance to the nearest of the 3x3 features about its mirror across
    the lung fields' midline (h, w), and where it is defined (both in the lungs)."""
    c, h, w = patches.shape
    cols = np.flatnonzero(lung.any(0))
    mid2 = (cols[0] + cols[-1]) if len(cols) else w - 1  # twice the midline column
    xs = np.arange(w)
    mirror = mid2 - xs
    valid_col = (mirror >= 0) & (mirror < w)
    mirror = np.clip(mirror, 0, w - 1)
    flipped = patches[:, :, mirror]  # feature at the mirrored column, same row
    padded = F.pad(flipped[None], (1, 1, 1, 1), mode="replicate")[0]
    best = torch.full((h, w), float("inf"))
    for dy in range(3):
        for dx in range(3):
            d = patches - padded[:, dy:dy + h, dx:dx + w]
            m = torch.einsum("chw,cd,dhw->hw", d, precision, d).clamp_min(0).sqrt()
            best = torch.minimum(best, m)
    defined = lung & lung[:, mirror] & valid_col[None, :]
    return best.numpy(), defined


def zone_means(z: np.ndarray, defined: np.ndarray) -> list[float]:
    rows = np.flatnonzero(defined.any(1))
    if len(rows) < 3:
        return [float(z[defined].mean()) if defined.any() else 0.0]
    edges = np.linspace(rows[0], rows[-1] + 1, 4).astype(int)
    out = []
    for a, b in zip(edges[:-1], edges[1:]):
        part = defined.copy()
        part[:a], part[b:] = False, False
        if part.any():
            out.append(float(z[part].mean()))
    return out


class PositionStats:
    """Each position's normal asymmetry (mean, spread with a floor), from the fit normals."""

    def __init__(self, maps: list[np.ndarray], defined: list[np.ndarray]):
        a, m = np.stack(maps), np.stack(defined).astype(float)
        count = m.sum(0)
        self.mean = (a * m).sum(0) / np.maximum(count, 1)
        var = (((a - self.mean) ** 2) * m).sum(0) / np.maximum(count, 1)
        spread = np.sqrt(var)
        self.std = spread + 0.1 * float(np.sqrt((((a - self.mean) ** 2) * m).sum() / max(m.sum(), 1)))
        self.mean[count < 5], self.std[count < 5] = np.median(self.mean[count >= 5]), np.median(self.std[count >= 5])

    def raw(self, amap: np.ndarray, defined: np.ndarray) -> dict[str, float]:
        if not defined.any():
            return dict.fromkeys(CANDIDATES, 0.0)
        z = (amap - self.mean) / self.std
        inside = np.sort(z[defined])
        return {"asym-mean": float(inside.mean()), "asym-top": float(inside[-max(1, len(inside) // 10):].mean()),
                "asym-zone": max(zone_means(z, defined))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="adult")
    parser.add_argument("--fit-normals", required=True)
    parser.add_argument("--phantom-normals", required=True)
    parser.add_argument("--dev-normal")
    parser.add_argument("--dev-abnormal")
    parser.add_argument("--n-fit", type=int, default=150)
    parser.add_argument("--n-phantom", type=int, default=40)
    parser.add_argument("--layers", default="layer1,layer2", help="stages whose features are compared")
    args = parser.parse_args()
    torch.set_num_threads(2)
    detector = AnomalyDetector.load(args.model, device="cpu")
    layers = tuple(args.layers.split(","))
    fit_inputs = [encoded(detector, read_radiograph(f), layers) for f in list_inputs([Path(args.fit_normals)])[: args.n_fit]]
    inside = torch.cat([p[:, torch.from_numpy(lung)] for p, lung, _ in fit_inputs], 1)
    precision = torch.diag(1.0 / inside.var(1).clamp_min(1e-8))  # channels on the normals' scale

    def one(image):
        patches, lung, z = encoded(detector, image, layers)
        amap, defined = asymmetry_map(patches, lung, precision)
        return amap, defined, z

    fit = [asymmetry_map(p, lung, precision) for p, lung, _ in fit_inputs]
    stats = PositionStats([a for a, _ in fit], [d for _, d in fit])
    fit_raw = [stats.raw(a, d) for a, d in fit]
    norm = {c: (np.mean([r[c] for r in fit_raw]), np.std([r[c] for r in fit_raw]) + 1e-8) for c in CANDIDATES}
    print(f"fitted on {len(fit)} normals", file=sys.stderr)

    def row(image) -> dict[str, float]:
        amap, defined, z = one(image)
        raw = stats.raw(amap, defined)
        out = {c: (raw[c] - norm[c][0]) / norm[c][1] for c in CANDIDATES}
        sides = float(detector.scorer.sides.term(np.array([z["sides"]]))[0])
        out["model"] = model_score(detector, z)
        for c in CANDIDATES:
            out[f"model+{c}"] = max((z["pooled"] + z["patch"] + out[c]) / 3, sides)
        return out

    names = ["model", *CANDIDATES, *(f"model+{c}" for c in CANDIDATES)]
    normals, drawn = phantom_rows(detector, args.phantom_normals, args.n_phantom, row)
    print("phantom | " + " | ".join(names))
    for (kind, size), found in drawn.items():
        print(f"{kind} {size} | " + " | ".join(phantom_cells(normals, found, names)))
    if args.dev_normal and args.dev_abnormal:
        dev_rows(args.dev_normal, args.dev_abnormal, row, names)
    return 0


if __name__ == "__main__":
    sys.exit(main())
