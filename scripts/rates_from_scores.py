"""Round-9 study (docs/model.md): what a threshold flags, read off `evaluate --scores-csv` files.

    .venv/bin/python scripts/rates_from_scores.py NIH_DEV.csv RSNA.csv THRESHOLD [NIH_DEV2.csv RSNA2.csv]

NIH_DEV.csv: `evaluate --normal nih/val/normal --abnormal nih/val/pneumonia --scores-csv`; RSNA.csv:
`evaluate --normal <120 RSNA val normals> --abnormal nih/val/pneumonia --scores-csv`. Prints the NIH
AUROC, the RSNA-normal vs NIH-pneumonia AUROC, and the shares flagged at THRESHOLD and at the 90th
and 95th percentiles of the NIH val normals (read to understand, never to set a threshold). With a
second model's pair (evaluated on the same folders, named alike), the image score is the lower of
the two models' (an image judged against the nearer of two normal references).
"""

import sys

import numpy as np
from sklearn.metrics import roc_auc_score

from bundling_check import scores  # {file: (label, score)} of the clean rows of a scores CSV


def of(label: str, first: dict, second: dict | None) -> np.ndarray:
    return np.array([min(s, second[f][1]) if second else s for f, (lab, s) in first.items() if lab == label])


def auroc(normal: np.ndarray, abnormal: np.ndarray) -> float:
    return float(roc_auc_score(np.r_[np.zeros(len(normal)), np.ones(len(abnormal))], np.r_[normal, abnormal]))


def main(dev: str, rsna: str, threshold: str, dev2: str | None = None, rsna2: str | None = None) -> None:
    d1, d2, r2 = scores(dev), *((scores(dev2), scores(rsna2)) if dev2 else (None, None))
    nih_n, nih_p, rsna_n = of("normal", d1, d2), of("abnormal", d1, d2), of("normal", scores(rsna), r2)
    print(f"NIH AUROC {auroc(nih_n, nih_p):.3f}; RSNA normals vs NIH pneumonia AUROC {auroc(rsna_n, nih_p):.3f}")
    for name, t in [("threshold", float(threshold)), ("NIH normals' 90th pct", np.percentile(nih_n, 90)),
                    ("NIH normals' 95th pct", np.percentile(nih_n, 95))]:
        print(f"{name} {t:.3f}: NIH normals {np.mean(nih_n > t):.3f}, NIH pneumonia {np.mean(nih_p > t):.3f}, "
              f"RSNA normals {np.mean(rsna_n > t):.3f}")


if __name__ == "__main__":
    main(*sys.argv[1:])
