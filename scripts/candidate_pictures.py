"""What a reader sees change between a bundled model and a candidate: the same dev radiographs through
both (bundled left of each pair, candidate right), as overlays with the lung fields outlined.

    .venv/bin/python scripts/candidate_pictures.py BUNDLED CANDIDATE BUNDLED_RESULTS CANDIDATE_RESULTS OUT.png

BUNDLED and CANDIDATE are model names or folders; the RESULTS are their `bundling_check.py` folders
(runs/bundling/<id>), whose dev_scores.csv says which dev images each flags. Rows: the first dev
abnormals the bundled model flags and the candidate does not (its losses), the first it flags and the
bundled model does not (its gains), the first dev normals only the candidate flags. The rows are
chosen with the dev labels, for a picture only.
"""

import csv
import sys
from pathlib import Path

from PIL import Image

from SSLAnomalyLib.core.detection.detector import AnomalyDetector
from SSLAnomalyLib.core.reading.images import read_radiograph

sys.path.insert(0, str(Path(__file__).resolve().parent))
from detection_pictures import TILE, tile  # noqa: E402  (an overlay tile with the lung fields and a caption)

PER_ROW = 3


def flagged(results: Path) -> dict[str, tuple[str, bool]]:
    """File -> (label, flagged at the model's own threshold) of the clean dev images."""
    with open(results / "dev_scores.csv", newline="") as f:
        return {r["file"]: (r["label"], r["abnormal"] == "1") for r in csv.DictReader(f) if r["condition"] == "clean"}


def main() -> int:
    if len(sys.argv) != 6:
        raise SystemExit(__doc__)
    bundled, candidate = AnomalyDetector.load(sys.argv[1]), AnomalyDetector.load(sys.argv[2])
    was, now, out = flagged(Path(sys.argv[3])), flagged(Path(sys.argv[4])), Path(sys.argv[5])

    def only(label: str, by_bundled: bool) -> list[str]:
        return [f for f, (lab, hit) in was.items() if lab == label and hit == by_bundled and now[f][1] != by_bundled]

    rows = [(only("abnormal", True), "abnormal, candidate misses"), (only("abnormal", False), "abnormal, candidate gains"),
            (only("normal", False), "normal, candidate flags")]
    sheet = Image.new("RGB", (2 * PER_ROW * TILE, len(rows) * TILE))
    for r, (files, label) in enumerate(rows):
        for c, f in enumerate(files[:PER_ROW]):
            image = read_radiograph(f)
            for m, (detector, who) in enumerate(((bundled, "bundled"), (candidate, "candidate"))):
                sheet.paste(tile(detector, image, caption=f"{who}: {label} {Path(f).stem}"), ((2 * c + m) * TILE, r * TILE))
    sheet.save(out)
    print(f"{out}: " + "; ".join(f"{label} {len(files)}" for files, label in rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
