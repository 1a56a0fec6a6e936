"""What the acquisition directions change for a reader (docs/model.md, round 17): the same radiographs
through the bundled adult model (left of each pair) and a model fitted with `--other-source-normals`
(right), as overlays with the lung fields outlined (docs/images/acquisition_directions.png).

    .venv/bin/python scripts/acquisition_pictures.py CANDIDATE CANDIDATE_RESULTS BUNDLED_RESULTS

Rows: the first three openist normals (another source) the bundled model flags; the first three NIH PA
pneumonias the bundled model flags and the candidate does not (the candidate's misses); the first three
NIH AP pneumonias the candidate flags and the bundled model does not (its gains). The rows are chosen
with the dev labels and views (`bundling_check.py`'s dev_scores.csv of each model), for a picture only.
"""

import sys
from pathlib import Path

from PIL import Image

from SSLAnomalyLib.core.detection.detector import AnomalyDetector
from SSLAnomalyLib.core.reading.images import list_inputs, read_radiograph

sys.path.insert(0, str(Path(__file__).resolve().parent))
from candidate_pictures import flagged  # noqa: E402  (file -> (label, flagged) of a bundling_check dev)
from detection_pictures import TILE, tile  # noqa: E402  (an overlay tile with the lung fields and a caption)
from nih_views import nih_views  # noqa: E402  (AP or PA by file name)

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
OPENIST = ROOT / "runs" / "bundling" / "openist-whiteout" / "normal"  # made by scripts/expert_opacity_check.py
PER_ROW = 3


def flagged_by_name(results: Path) -> dict[str, bool]:
    return {Path(f).name: hit for f, (_, hit) in flagged(results).items()}


def main() -> int:
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    candidate, cand_flags, bund_flags = sys.argv[1], flagged_by_name(Path(sys.argv[2])), flagged_by_name(Path(sys.argv[3]))
    models = [AnomalyDetector.load("adult"), AnomalyDetector.load(candidate)]
    view = nih_views()
    pneumonia = list_inputs([DATA / "nih" / "val" / "pneumonia"])
    openist = [f for f in list_inputs([OPENIST]) if models[0].detect(read_radiograph(f)).abnormal][:PER_ROW]
    lost = [f for f in pneumonia if view[f.name] == "PA" and bund_flags[f.name] and not cand_flags[f.name]][:PER_ROW]
    gained = [f for f in pneumonia if view[f.name] == "AP" and cand_flags[f.name] and not bund_flags[f.name]][:PER_ROW]
    rows = [(files, label) for files, label in ((openist, "openist normal"), (lost, "PA pneumonia"),
                                               (gained, "AP pneumonia"))]
    sheet = Image.new("RGB", (2 * PER_ROW * TILE, len(rows) * TILE))
    for r, (files, label) in enumerate(rows):
        for c, f in enumerate(files):
            image = read_radiograph(f)
            for m, (detector, who) in enumerate(zip(models, ("bundled", "acquisition"))):
                sheet.paste(tile(detector, image, caption=f"{who}: {label} {f.stem}"), ((2 * c + m) * TILE, r * TILE))
    out = ROOT / "docs" / "images" / "acquisition_directions.png"
    sheet.save(out)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
