#!/usr/bin/env bash
# Issue 28, item 2: the first-round pediatric recipe (anatpaste, the bundled pediatric encoder's) at
# 3x its steps (4282 -> 12846), trained in the background across sessions: rerun the same command
# and `train` resumes from its last checkpoint (runs/long/NAME.work, git-ignored, kept while the
# checkout lives). Each start and stop is logged to runs/long/log.tsv (time, event, steps so far).
#   scripts/long_cpu_run.sh [SEED]        (nohup ... & to leave it running)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
SEED=${1:-0}
RUN=runs/long/pediatric-anatpaste-12846-s$SEED
mkdir -p runs/long
steps() {  # the steps of the last checkpoint (the run state is the checkpoint's safetensors metadata)
  .venv/bin/python - "$RUN.work" <<'PY' 2>/dev/null || echo 0
import json, sys
from pathlib import Path
from safetensors import safe_open
found = sorted(Path(sys.argv[1]).rglob("checkpoint.safetensors"))
with safe_open(str(found[0]), "pt") as f:
    print(json.loads(f.metadata()["state"])["step"])
PY
}
printf '%s\tstart\t%s\t%s\n' "$(date -u +%FT%TZ)" "$RUN" "$(steps)" >> runs/long/log.tsv
trap 'printf "%s\tstop\t%s\t%s\n" "$(date -u +%FT%TZ)" "$RUN" "$(steps)" >> runs/long/log.tsv' EXIT
[ -f "$RUN/manifest.json" ] || .venv/bin/sslanomaly train --normals "$DATA/kermany/train/normal" \
  --val-normals "$DATA/kermany/val/normal" --out "$RUN" --minutes 600 --max-steps 12846 --pretext anatpaste \
  --seed "$SEED" --quiet
