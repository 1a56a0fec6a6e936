"""The white-out check as an outside reader runs it: adult normals that the product never fitted on,
one whole lung field made opaque along the *expert* lung mask (not the lung fields the product
draws), scored with the contract's commands only.

    .venv/bin/python scripts/expert_whiteout_check.py MODEL OUT_DIR

The normals are the openist fold that the bundled lung network held out (adult radiographs of a
teaching collection, another source than the NIH normals the adult model was fitted on). Each is
written twice through the same intensity window and 8-bit PNG: as it is (OUT_DIR/normal) and with
one field, chosen by a seeded coin, filled with mediastinal density (OUT_DIR/whiteout: the drawing of
scripts/lung_check.py, not the phantoms' code); OUT_DIR/boxes.csv holds each opaque field's box. Then
`sslanomaly evaluate --normal --abnormal` and `evaluate --boxes` are run and their figures printed:
AUROC, the shares flagged at the model's own threshold, and the pointing game against random placement.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from SSLAnomalyLib.core.anatomy.lung_network import BUNDLED_LUNGS, LungSegmenter
from SSLAnomalyLib.core.model.preprocess import normalise
from SSLAnomalyLib.training.lung_training import load_pair

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lung_check import DATA, ROOT, SEED, one_field, opacified  # noqa: E402  (the same drawing, not a copy)

S = str(ROOT / ".venv" / "bin" / "sslanomaly")


def png(path: Path, image01: np.ndarray) -> None:
    Image.fromarray((255 * np.clip(image01, 0, 1)).round().astype(np.uint8)).save(path)


def write_cases(out: Path) -> int:
    """The normal and white-out PNGs and the boxes of the held-out openist fold; their number."""
    names = LungSegmenter.load(BUNDLED_LUNGS).manifest.section("data")["held_out"]
    (out / "normal").mkdir(parents=True, exist_ok=True)
    (out / "whiteout").mkdir(exist_ok=True)
    with open(out / "boxes.csv", "w", newline="") as f:
        boxes = csv.writer(f)
        boxes.writerow(["image", "x0", "y0", "x1", "y1"])
        for i, name in enumerate(names):
            image, truth = load_pair(DATA / "openist" / "images" / name, DATA / "openist" / "masks" / name)
            opaque, image_left = opacified(image, truth, "whiteout", np.random.default_rng([SEED, i, 0]))
            png(out / "normal" / name, normalise(image))
            png(out / "whiteout" / name, opaque)
            rows, cols = np.nonzero(one_field(truth, image_left))
            boxes.writerow([name, cols.min(), rows.min(), cols.max(), rows.max()])
    return len(names)


def evaluate(model: str, out: Path, name: str, *args: str) -> dict:
    subprocess.run([S, "evaluate", "--model", model, *args, "--json", str(out / name), "--quiet"], check=True,
                   stdout=subprocess.DEVNULL)
    return json.loads((out / name).read_text())


def main() -> None:
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    model, out = sys.argv[1], Path(sys.argv[2])
    n = write_cases(out)
    dev = evaluate(model, out, "whiteout.json", "--normal", str(out / "normal"), "--abnormal", str(out / "whiteout"))
    box = evaluate(model, out, "boxes.json", "--boxes", str(out / "boxes.csv"), "--images", str(out / "whiteout"))
    print(f"model {dev['model']}, {n} held-out openist normals, one expert lung field made opaque:")
    print(f"  AUROC normal vs white-out {dev['auroc']:.3f}; flagged at the model's threshold: normals "
          f"{100 * dev['fpr_at_threshold']:.1f} %, white-outs {100 * dev['tpr_at_threshold']:.1f} %; "
          f"ABNORMAL without a finding {dev['abnormal_without_finding']}")
    print(f"  heatmap maximum in the opaque field's box {100 * box['pointing_game']:.1f} % "
          f"(random placement {100 * box['random_pointing_baseline']:.1f} %)")


if __name__ == "__main__":
    main()
