"""How well candidate lung-field density statistics tell large one-sided phantoms from normals,
with the lung fields the product draws on each (altered) image, as detection sees them.

    .venv/bin/python scripts/field_density_study.py NORMALS_DIR [--model adult] [--n 60] [--out FILE.json]

Uses normals and synthetic phantoms only (no abnormal labels). Each candidate is a raw statistic
whose AUROC is measured for each phantom kind and size against the unaltered normals:
- q10, q50: the field's 10th percentile / median density, the two fields' absolute difference;
- zones-q10, zones-q50: the same per vertical third of the fields (upper, middle, lower), the largest
  difference of the three, each third's difference first divided by its spread over the normals;
- zonesraw-q10: the largest of the three thirds' differences, undivided.
Beside each AUROC: the share of phantoms above the normals' 98th percentile (`tpr@98`), the tail
that decides at a threshold.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from SSLAnomalyLib.core.detection.detector import AnomalyDetector
from SSLAnomalyLib.core.reading.images import list_inputs, read_radiograph
from SSLAnomalyLib.evaluation.phantom_evaluation import phantom_on, phantom_seed

CONDITIONS = [("whiteout", "hemithorax"), ("effusion", "small"), ("effusion", "large"), ("consolidation", "lobar"),
              ("pneumothorax", "small"), ("pneumothorax", "large")]
ZONES = 3


def halves(lung: np.ndarray) -> list[np.ndarray]:
    size = lung.shape[1]
    half = np.zeros_like(lung, dtype=bool)
    half[:, : size // 2] = True
    return [lung & half, lung & ~half]


def zone_masks(field: np.ndarray) -> list[np.ndarray]:
    rows = np.flatnonzero(field.any(1))
    if len(rows) < ZONES:
        return [field] * ZONES
    edges = np.linspace(rows[0], rows[-1] + 1, ZONES + 1).astype(int)
    out = []
    for a, b in zip(edges[:-1], edges[1:]):
        m = np.zeros_like(field)
        m[a:b] = field[a:b]
        out.append(m)
    return out


def stats(x: np.ndarray, lung: np.ndarray) -> dict[str, np.ndarray]:
    """Per statistic: the left and right values (whole fields) or (zones, 2) values."""
    fields = halves(lung)
    for side in (0, 1):  # a field not drawn: the mirror of the other (as core/model/field_density.py)
        if fields[side].sum() < 0.02 * lung.size:
            fields[side] = fields[1 - side][:, ::-1] & halves(np.ones_like(lung))[side]
    out = {}
    for q in (0.10, 0.50):
        out[f"q{int(q * 100)}"] = np.array([np.quantile(x[f], q) if f.any() else 1.0 for f in fields])
        out[f"zones-q{int(q * 100)}"] = np.array([[np.quantile(x[z], q) if z.any() else 1.0 for z in zone_masks(f)]
                                                 for f in fields]).T  # (zones, 2)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("normals")
    parser.add_argument("--model", default="adult")
    parser.add_argument("--n", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out")
    args = parser.parse_args()
    detector = AnomalyDetector.load(args.model, device="cpu")
    rows = {("normal", ""): []} | {c: [] for c in CONDITIONS}
    for i, f in enumerate(list_inputs([Path(args.normals)])[: args.n]):
        image = read_radiograph(f)
        prepared = detector.prepare(image)[0]
        rows["normal", ""].append(stats(prepared.image01, prepared.lung))
        lungs = prepared.fields.on_grid(*image.shape[1:]).astype(bool)
        for kind, size in CONDITIONS:
            try:
                drawn, _ = phantom_on(image, kind, size, lungs, phantom_seed(args.seed, kind, size, i))
            except ValueError:
                continue
            p = detector.prepare(drawn)[0]
            rows[kind, size].append(stats(p.image01, p.lung))
        print(f"{i + 1} normals", file=sys.stderr, end="\r")
    normal = rows["normal", ""]
    spread = {name: np.std([np.diff(r[name], axis=-1)[..., 0] for r in normal], axis=0) + 1e-6
              for name in normal[0] if name.startswith("zones")}

    def raw(r, name):
        if name == "zonesraw-q10":
            return float(np.max(np.abs(np.diff(r["zones-q10"], axis=-1)[..., 0])))
        d = np.abs(np.diff(r[name], axis=-1)[..., 0])
        return float(np.max(d / spread[name])) if name in spread else float(d)

    names = [*normal[0], "zonesraw-q10"]

    def figures(found, name):
        n, a = [raw(r, name) for r in normal], [raw(r, name) for r in found]
        return {"auroc": round(float(roc_auc_score([0] * len(n) + [1] * len(a), n + a)), 3),
                "tpr@98": round(float(np.mean(np.array(a) > np.quantile(n, 0.98))), 3)}

    report = {}
    for (kind, size), found in rows.items():
        if kind == "normal":
            continue
        report[f"{kind}:{size}"] = {name: figures(found, name) for name in names} | {"n": len(found)}
    result = {"model": detector.model_id, "normals": str(args.normals), "n_normals": len(normal), "figures": report}
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
