"""The batch as a reading list: `OUT/worklist.csv`, one row per case with results, highest score
first, so that a reader opens the most suspicious radiographs first; and the one-line verdict that
`sslanomaly detect` prints per image. Built from the findings JSONs themselves, so that it lists the
cases an earlier run finished (`--resume`) as well as this run's. Inputs that failed are not listed
(failures.log names them with the reason): every row has a score to sort by."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from SSLAnomalyLib.core.files.atomic import atomic_write_text
from SSLAnomalyLib.core.results.outputs import shown
from SSLAnomalyLib.core.results.figures import percentile_text
from SSLAnomalyLib.core.results.spreadsheet import cell

WORKLIST = "worklist.csv"
COLUMNS = ("input", "name", "score", "percentile", "abnormal", "n_findings", "verdict", "top_finding_label",
           "top_finding_score", "top_finding_bbox_ijk", "threshold", "model")


def verdict(document: dict) -> str:
    return "ABNORMAL" if document["abnormal"] else "normal"


def verdict_line(document: dict, shown_input: str) -> str:
    """e.g. `ABNORMAL  97.5th pct  3 findings  /data/cxr/IM-1.jpeg`."""
    n = len(document["findings"])
    return (f"{verdict(document):<8}  {percentile_text(document['percentile']):>7} pct  {n} finding{'' if n == 1 else 's'}  "
            f"{shown_input}")


def worklist_row(name: str, document: dict) -> dict:
    top = max(document["findings"], key=lambda f: f["score"], default=None)
    return {"input": shown(document["input"]), "name": name, "score": float(document["score"]),
            "percentile": float(document["percentile"]), "abnormal": str(document["abnormal"]).lower(),
            "n_findings": len(document["findings"]), "verdict": verdict(document),
            "top_finding_label": top["label"] if top else "", "top_finding_score": top["score"] if top else "",
            "top_finding_bbox_ijk": " ".join(map(str, top["bbox_ijk"])) if top else "",
            "threshold": document["threshold"], "model": document["model"]}


def write_worklist(out_dir, documents: dict[str, dict]) -> Path:
    """`OUT/worklist.csv` of {case name: findings document}, sorted by score, highest first; a name, path or label
    that starts like a formula is written as text (spreadsheet.cell)."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    rows = [worklist_row(name, doc) for name, doc in documents.items()]
    writer.writerows({k: cell(v) for k, v in row.items()} for row in sorted(rows, key=lambda r: (-r["score"], r["name"])))
    return atomic_write_text(Path(out_dir) / WORKLIST, text.getvalue())
