"""Does the normal-only checkpoint signal rank encoders as dev does? (docs/model.md, round 18)

    .venv/bin/python scripts/selection_signal_study.py ENCODER:RESULTS [ENCODER:RESULTS ...]

ENCODER is a pediatric model (name or folder) whose encoder is judged; RESULTS its `bundling_check.py`
folder (runs/bundling/<id>: the encoder refitted the bundled way and measured). For each encoder, the
training signal (`training/selection.py`: held-out Kermany train normals vs the same with synthetic
opacities, seed 0, no foreign objects) is read at step 0 of a one-step `train --start-from ENCODER`
(runs/selection-signal/<name>, kept); beside it dev AUROC, the hard dev of all the encoders together
(the third of the pneumonias they rank lowest), TBX11K pointing and the AUROC of each phantom kind no
pretext draws. Dev labels are read: a study, never a choice of checkpoint or threshold.
"""

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bundling_check import DATA, ROOT, S, hard_auroc, scores  # noqa: E402

OUT = ROOT / "runs" / "selection-signal"


def step0_signal(encoder: str) -> float:
    run = OUT / Path(encoder).name
    if not (run / "manifest.json").exists():
        subprocess.run([S, "train", "--normals", str(DATA / "kermany" / "train" / "normal"),
                        "--val-normals", str(DATA / "kermany" / "val" / "normal"), "--out", str(run), "--start-from", encoder,
                        "--max-steps", "1", "--minutes", "5", "--pretext", "anatpaste", "--seed", "0",
                        "--foreign-objects", "0", "--quiet"], check=True, stdout=subprocess.DEVNULL)
    signals = dict(json.loads((run / "manifest.json").read_text())["training"]["selection_signals"])
    return signals[0]


def main() -> int:
    pairs = [a.split(":", 1) for a in sys.argv[1:]]
    if not pairs or any(len(p) != 2 for p in pairs):
        raise SystemExit(__doc__)
    results = [Path(r) for _, r in pairs]
    hard = hard_auroc(*(scores(r / "dev_scores.csv") for r in results))
    phantoms = [json.loads((r / "phantoms.json").read_text()) for r in results]
    kinds = [(k, s) for k in phantoms[0]["held_out_kinds"] for s in phantoms[0]["kinds"][k]]
    print("| encoder | training signal (step 0) | dev AUROC | hard dev AUROC | TBX11K pointing | "
          + " | ".join(f"{k} {s} AUROC" for k, s in kinds) + " |")
    print("|---" * (5 + len(kinds)) + "|")
    for (encoder, _), r, h, p in zip(pairs, results, hard, phantoms):
        dev = json.loads((r / "dev.json").read_text())["auroc"]
        tbx = json.loads((r / "tbx11k.json").read_text())["pointing_game"]
        cells = [f"{p['kinds'][k][s]['auroc']:.3f}" for k, s in kinds]
        print(f"| `{encoder}` | {step0_signal(encoder):.3f} | {dev:.3f} | {h:.3f} | {tbx:.3f} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
