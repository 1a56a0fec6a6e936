#!/usr/bin/env bash
# Train and measure model variants with the `sslanomaly` command only; every figure in
# docs/model.md comes from here. Usage: scripts/model_experiments.sh NAME [train options...]
#   e.g. scripts/model_experiments.sh random --minutes 0
#        scripts/model_experiments.sh opacity-50-s0 --minutes 50 --pretext opacity --seed 0
# Writes runs/experiments/NAME/{manifest.json, dev.json, localisation.json}; then
# `.venv/bin/python scripts/model_table.py` rebuilds the table in docs/model.md.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
NAME=$1; shift
RUN=runs/experiments/$NAME
S=.venv/bin/sslanomaly
if [ ! -f "$RUN/manifest.json" ]; then
  $S train --normals "$DATA/kermany/train/normal" --val-normals "$DATA/kermany/val/normal" --out "$RUN" --quiet "$@"
fi
$S evaluate --model "$RUN" --normal "$DATA/kermany/val/normal" --abnormal "$DATA/kermany/val/pneumonia" \
  --json "$RUN/dev.json" --quiet > /dev/null
$S evaluate --model "$RUN" --boxes "$DATA/tbx11k_dev/boxes.csv" --images "$DATA/tbx11k_dev/images" \
  --json "$RUN/localisation.json" --quiet > /dev/null
cat "$RUN/dev.json" "$RUN/localisation.json"
