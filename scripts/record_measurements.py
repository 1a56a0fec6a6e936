"""Record the figures measured on a trained model (by scripts/model_experiments.sh) in that model's
manifest and card, so the card a user reads states them with their commands.

Usage: .venv/bin/python scripts/record_measurements.py MODEL_DIR RUN [OTHER_SEED_RUN ...]
  e.g. scripts/record_measurements.py SSLAnomaly/Resources/Models/default runs/experiments/anatpaste-s0 \
           runs/experiments/anatpaste-s1 runs/experiments/anatpaste-s2

RUN must hold the same weights as MODEL_DIR (checked by SHA-256); the weights are never rewritten.
"""

import json
import sys
from pathlib import Path

from SSLAnomalyLib import model_folder
from SSLAnomalyLib.model_card import model_card


def figures(run: Path) -> tuple[dict, dict, dict]:
    read = lambda name: json.loads((run / name).read_text())  # noqa: E731
    return read(model_folder.MANIFEST), read("dev.json"), read("localisation.json")


def main(model_dir: str, run: str, *other_seed_runs: str) -> int:
    manifest = model_folder.load(model_dir)[0]  # verifies the folder before anything is changed
    run_manifest, dev, loc = figures(Path(run))
    if run_manifest["files"][model_folder.WEIGHTS] != manifest["files"][model_folder.WEIGHTS]:
        raise SystemExit(f"error: {run} does not hold the weights of {model_dir}")
    others = []
    for other in map(Path, other_seed_runs):
        m, d, lo = figures(other)
        others.append({"run": other.name, "seed": m["training"]["seed"], "auroc": d["auroc"], "ap": d["ap"],
                       "pointing_game": lo["pointing_game"], "command": m["training"]["command"]})
    manifest["measured"] = {"dev": dev, "localisation": loc, "other_seeds": others}
    model_folder.write_manifest(Path(model_dir), manifest, model_card(manifest))
    print(model_card(manifest))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
