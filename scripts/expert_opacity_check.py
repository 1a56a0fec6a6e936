"""The white-out check as an outside reader runs it: adult normals that the product never fitted on,
one lung field made opaque along the *expert* lung mask (not the lung fields the product draws),
scored with the contract's commands only.

    .venv/bin/python scripts/expert_opacity_check.py MODEL OUT_DIR [KIND]

KIND: whiteout (default: the whole field), effusion (its lower 30-60 % under a meniscus) or
consolidation (a patch of discs), as scripts/lung_check.py draws them.

The normals are the openist fold that the bundled lung network held out (adult radiographs of a
teaching collection, another source than the NIH normals the adult model was fitted on). Each is
written twice through the same intensity window and 8-bit PNG: as it is (OUT_DIR/normal) and with
one field, chosen by a seeded coin, opacified with mediastinal density (OUT_DIR/KIND: the drawing of
scripts/lung_check.py, not the phantoms' code); OUT_DIR/boxes.csv holds the box of what it changed. Then
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
from lung_check import DATA, KINDS, ROOT, SEED, opacified  # noqa: E402  (the same drawing, not a copy)

S = str(ROOT / ".venv" / "bin" / "sslanomaly")
CHANGED = 0.05  # a pixel the drawing changed by more than this (of the [0, 1] window) is in the opacity's box


def png(path: Path, image01: np.ndarray) -> None:
    Image.fromarray((255 * np.clip(image01, 0, 1)).round().astype(np.uint8)).save(path)


def write_cases(out: Path, kind: str) -> int:
    """The normal and opacified PNGs and the boxes of the held-out openist fold; their number."""
    names = LungSegmenter.load(BUNDLED_LUNGS).manifest.section("data")["held_out"]
    (out / "normal").mkdir(parents=True, exist_ok=True)
    (out / kind).mkdir(exist_ok=True)
    with open(out / "boxes.csv", "w", newline="") as f:
        boxes = csv.writer(f)
        boxes.writerow(["image", "x0", "y0", "x1", "y1"])
        for i, name in enumerate(names):
            image, truth = load_pair(DATA / "openist" / "images" / name, DATA / "openist" / "masks" / name)
            opaque, _ = opacified(image, truth, kind, np.random.default_rng([SEED, i, KINDS.index(kind)]))
            windowed = normalise(image)
            png(out / "normal" / name, windowed)
            png(out / kind / name, opaque)
            rows, cols = np.nonzero(np.abs(opaque - windowed) > CHANGED)
            boxes.writerow([name, cols.min(), rows.min(), cols.max(), rows.max()])
    return len(names)


def evaluate(model: str, out: Path, name: str, *args: str) -> dict:
    subprocess.run([S, "evaluate", "--model", model, *args, "--json", str(out / name), "--quiet"], check=True,
                   stdout=subprocess.DEVNULL)
    return json.loads((out / name).read_text())


def main() -> None:
    if len(sys.argv) not in (3, 4) or (len(sys.argv) == 4 and sys.argv[3] not in KINDS):
        raise SystemExit(__doc__)
    model, out = sys.argv[1], Path(sys.argv[2])
    kind = sys.argv[3] if len(sys.argv) == 4 else "whiteout"
    n = write_cases(out, kind)
    dev = evaluate(model, out, f"{kind}.json", "--normal", str(out / "normal"), "--abnormal", str(out / kind))
    box = evaluate(model, out, "boxes.json", "--boxes", str(out / "boxes.csv"), "--images", str(out / kind))
    print(f"model {dev['model']}, {n} held-out openist normals, {kind} along one expert lung field:")
    print(f"  AUROC normal vs {kind} {dev['auroc']:.3f}; flagged at the model's threshold: normals "
          f"{100 * dev['fpr_at_threshold']:.1f} %, {kind} {100 * dev['tpr_at_threshold']:.1f} %; "
          f"ABNORMAL without a finding {dev['abnormal_without_finding']}")
    print(f"  heatmap maximum in the opacity's box {100 * box['pointing_game']:.1f} % "
          f"(random placement {100 * box['random_pointing_baseline']:.1f} %)")


if __name__ == "__main__":
    main()
