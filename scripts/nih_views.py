"""The view (AP or PA) of every NIH radiograph in ../shared/data, by file name, from its metadata.csv:
acquisition metadata, never a disease label (docs/model.md, round 17: the view confound of NIH dev)."""

import csv
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def nih_views() -> dict[str, str]:
    with open(DATA / "nih" / "metadata.csv", newline="") as f:
        return {Path(r["image"]).name: r["view"] for r in csv.DictReader(f)}
