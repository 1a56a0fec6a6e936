"""How far `sslanomaly calibrate` on a few normals lands from its stated false-positive rate, measured on
normals only: a set of held-out normals is split at random into halves many times; each threshold
rule calibrates on one half (as `calibrate` does: the score standardisation cross-fitted on that
half, the threshold on its out-of-fold scores) and is judged by the share of the other half it flags.

    .venv/bin/python scripts/calibration_stability.py MODEL OUT.json NAME=NORMALS_DIR [NAME=DIR ...]
        [--sizes 30,100] [--splits 400] [--fpr 0.05]

Each folder is scored once (raw score components, cached in OUT.npz); each split then re-derives the
standardisation and the threshold from those components with the product's own functions. No
abnormal image is read, so choosing a rule on these figures looks at no label.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.stats import mstats, norm

from SSLAnomalyLib.core.detection.detector import AnomalyDetector
from SSLAnomalyLib.core.model.calibration import Calibration
from SSLAnomalyLib.core.model.scoring import component_stats
from SSLAnomalyLib.core.reading.images import list_inputs
from SSLAnomalyLib.training.crossfit import FOLDS, fold_component_stats, fold_of
from SSLAnomalyLib.training.site_calibration import score_normals


def components_of(detector: AnomalyDetector, sets: dict[str, str], cache: Path) -> dict[str, dict[str, np.ndarray]]:
    if not cache.exists():
        arrays = {}
        for name, folder in sets.items():
            for c, v in score_normals(detector, list_inputs([folder]), progress=False).components.items():
                arrays[f"{name}.{c}"] = v
        np.savez(cache, **arrays)
    with np.load(cache) as a:
        return {name: {k.split(".", 1)[1]: a[k] for k in a.files if k.startswith(f"{name}.")} for name in sets}


def scores_under(components: dict[str, np.ndarray], stats: dict[str, list[float]], detector) -> np.ndarray:
    """Image scores of raw components under the standardisation `stats` (the scorer's own rule)."""
    detector.scorer.component_stats = stats
    return detector.scorer.combine(components)


def site_scores(components: dict[str, np.ndarray], detector) -> tuple[np.ndarray, dict]:
    """`calibrate`'s out-of-fold scores of these normals, and the standardisation it writes."""
    n = len(next(iter(components.values())))
    fold = fold_of(n, FOLDS, seed=0)
    per_fold = fold_component_stats(components, fold, np.ones(n, bool), FOLDS)
    out_of_fold = np.empty(n)
    for j in range(FOLDS):
        sel = fold == j
        out_of_fold[sel] = scores_under({c: v[sel] for c, v in components.items()}, per_fold[j], detector)
    return out_of_fold, component_stats(components)  # what `calibrate` writes


RULES = {  # candidate thresholds at false-positive rate f of n calibration scores s
    "rank": lambda s, f: Calibration(s, s, f, rule="rank").threshold,
    "quantile": lambda s, f: float(np.quantile(s, 1 - f)),
    "weibull": lambda s, f: float(np.quantile(s, 1 - f, method="weibull")),
    "harrell_davis": lambda s, f: float(mstats.hdquantiles(s, prob=[1 - f])[0]),
    "gaussian": lambda s, f: float(np.mean(s) + norm.ppf(1 - f) * np.std(s, ddof=1)),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model")
    p.add_argument("out")
    p.add_argument("sets", nargs="+", help="NAME=FOLDER of normal radiographs")
    p.add_argument("--sizes", default="30,100")
    p.add_argument("--splits", type=int, default=400)
    p.add_argument("--fpr", type=float, default=0.05)
    args = p.parse_args()
    detector = AnomalyDetector.load(args.model, device="cpu")
    detector.limit_cpu_threads()
    sets = dict(s.split("=", 1) for s in args.sets)
    data = components_of(detector, sets, Path(args.out).with_suffix(".npz"))
    rng = np.random.default_rng(0)
    report = {"model": detector.model_id, "fpr": args.fpr, "splits": args.splits, "rows": []}
    model_stats = detector.scorer.component_stats
    for name, comps in data.items():
        n_all = len(next(iter(comps.values())))
        for size in [int(s) for s in args.sizes.split(",")]:
            if 2 * size > n_all:
                continue
            flagged = {}
            for _ in range(args.splits):
                order = rng.permutation(n_all)
                fit = {c: v[order[:size]] for c, v in comps.items()}
                test = {c: v[order[size:2 * size]] for c, v in comps.items()}
                for standardisation in ("site", "model"):
                    if standardisation == "site":
                        scores, stats = site_scores(fit, detector)
                    else:
                        scores, stats = scores_under(fit, model_stats, detector), model_stats
                    test_scores = scores_under(test, stats, detector)
                    for rule, threshold in RULES.items():
                        t = threshold(scores, args.fpr)
                        flagged.setdefault(f"{standardisation}/{rule}", []).append(float(np.mean(test_scores > t)))
                    if standardisation == "model":  # the model's own normals moved to where the site's sit
                        ref = detector.calibration.normal_scores
                        tail = np.quantile(ref, 1 - args.fpr) - np.median(ref)
                        iqr = [np.subtract(*np.quantile(x, [0.75, 0.25])) for x in (scores, ref)]
                        spread = iqr[0] / iqr[1]
                        for rule, t in {"shift": np.median(scores) + tail,
                                        "shift_scale": np.median(scores) + tail * spread}.items():
                            flagged.setdefault(f"model/{rule}", []).append(float(np.mean(test_scores > t)))
            for rule, f in flagged.items():
                f = np.asarray(f)
                row = {"set": name, "n_normals": n_all, "calibrate_on": size, "judged_on": size, "rule": rule,
                       "mean_flagged": round(float(f.mean()), 4),
                       "in_2_10": round(float(np.mean((f >= 0.02) & (f <= 0.10))), 3),
                       "none_flagged": round(float(np.mean(f == 0)), 3), "over_10": round(float(np.mean(f > 0.10)), 3)}
                report["rows"].append(row)
                print(json.dumps(row), flush=True)
    Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
