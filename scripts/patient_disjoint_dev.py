"""Dev AUROC with only the val/normal radiographs whose patient has no image in train/normal.

Kermany names a radiograph by patient (`IM-0115-0001.jpeg`: patient 0115, image 0001), and some
val/normal patients also have training images; a model may find those more "normal" than a new
patient's. This re-scores runs on the patient-disjoint normals (symlinks in runs/, nothing copied)
against the same val/pneumonia, with `sslanomaly evaluate`, into RUN/dev_patient_disjoint.json:

    .venv/bin/python scripts/patient_disjoint_dev.py runs/experiments/anatpaste-s0 [RUN ...]
"""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KERMANY = ROOT.parent / "shared" / "data" / "kermany"
FOLDER = ROOT / "runs" / "dev-patient-disjoint" / "normal"


def patient(name: str) -> str:
    m = re.match(r"((?:NORMAL2-)?IM-\d+)-", name)
    if not m:
        raise SystemExit(f"error: {name}: not a Kermany normal file name (IM-<patient>-<image>)")
    return m[1]


def main() -> int:
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    if not KERMANY.is_dir():
        raise SystemExit(f"error: {KERMANY}: no such folder (the real data is read from ../shared/data)")
    seen = {patient(f.name) for f in (KERMANY / "train" / "normal").iterdir()}
    FOLDER.mkdir(parents=True, exist_ok=True)
    kept = [f for f in sorted((KERMANY / "val" / "normal").iterdir()) if patient(f.name) not in seen]
    for f in kept:
        link = FOLDER / f.name
        if not link.exists():
            link.symlink_to(f)
    print(f"{len(kept)} val/normal radiographs of patients without training images, in {FOLDER}")
    for run in sys.argv[1:]:
        subprocess.run([str(ROOT / ".venv" / "bin" / "sslanomaly"), "evaluate", "--model", run, "--normal", str(FOLDER),
                        "--abnormal", str(KERMANY / "val" / "pneumonia"), "--json", f"{run}/dev_patient_disjoint.json",
                        "--quiet"], check=True, stdout=subprocess.DEVNULL)
        print(f"{run}: written {run}/dev_patient_disjoint.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
