"""How other `sides` rules would rank the same images, without refitting: the image score rebuilt from
the standardised components that `sslanomaly evaluate --scores-csv` writes (the components do not
depend on the rule; the thresholds do, so a rule worth bundling is then refitted and measured with
scripts/bundling_check.py, as round 8 was).

    .venv/bin/python scripts/sides_rule_variants.py DEV_SCORES.csv BUNDLED_DEV_SCORES.csv [PHANTOM_SCORES.csv]

DEV_SCORES: `evaluate --normal N --abnormal A --scores-csv` of the candidate; BUNDLED_DEV_SCORES: the
same of the bundled model (the hard dev is the third of the abnormals the two rank lowest, as in
bundling_check.py); PHANTOM_SCORES: `evaluate --phantoms ... --normal N --scores-csv`. Printed per
rule: dev AUROC, hard dev AUROC, and the white-out phantoms' median score (a share flagged needs the
rule's own thresholds: the refit).
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from SSLAnomalyLib.core.model.scoring import COMPONENTS, SIDES, SidesRule, image_score

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bundling_check import hard_auroc  # noqa: E402  (the bundling rule's hard dev, not a copy)

RULES = {"round 7: sides - 2, any value": SidesRule(2.0), "sides - 1, any value": SidesRule(1.0),
         "sides - 0, any value": SidesRule(0.0), "sides - 0, beyond 2 (round 8)": SidesRule.fitted(0.0)}


def rows(path: str) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def scored(table: list[dict], rule: SidesRule) -> np.ndarray:
    return image_score({c: np.array([float(r[c]) for r in table]) for c in (*COMPONENTS, SIDES)}, rule)


def main() -> None:
    if len(sys.argv) not in (3, 4):
        raise SystemExit(__doc__)
    dev = [r for r in rows(sys.argv[1]) if r["condition"] == "clean"]
    bundled = {Path(r["file"]).name: (r["label"], float(r["score"])) for r in rows(sys.argv[2]) if r["condition"] == "clean"}
    phantoms = rows(sys.argv[3]) if len(sys.argv) == 4 else []
    y = np.array([r["label"] == "abnormal" for r in dev])
    print("| rule | dev AUROC | hard dev AUROC | white-out median score |")
    print("|---|---|---|---|")
    for name, rule in RULES.items():
        s = scored(dev, rule)
        mine = {Path(r["file"]).name: (r["label"], float(v)) for r, v in zip(dev, s)}
        hard, _ = hard_auroc(mine, bundled)
        cells = [f"{roc_auc_score(y, s):.3f}", f"{hard:.3f}"]
        if phantoms:
            cells.append(f"{np.median(scored([r for r in phantoms if r['condition'].startswith('whiteout')], rule)):.2f}")
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
