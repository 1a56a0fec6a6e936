#!/usr/bin/env bash
# The self-supervised objectives compared on the same data, CPU budget and seed (issue 14): each row
# trains on kermany/train/normal for $MINUTES minutes from a random encoder and is measured by
# scripts/measure_model.sh (dev, shifted dev, TBX11K pointing game); scripts/variant_table.py
# writes the table into docs/model.md. Resumable: a row with its measurements is not redone.
#   MINUTES=4 SEED=0 scripts/objective_comparison.sh [objective ...]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
MINUTES=${MINUTES:-4}; SEED=${SEED:-0}
export SHIFTS=${SHIFTS:-zoom_gamma}
OBJECTIVES=${*:-random-init anatpaste opacity contrastive mae relpos jigsaw contrastive+anatpaste mae+anatpaste}
for objective in $OBJECTIVES; do
  RUN=runs/round2/objectives/$objective-s$SEED
  if [ ! -f "$RUN/manifest.json" ]; then
    if [ "$objective" = random-init ]; then options=(--minutes 0); else options=(--minutes "$MINUTES" --pretext "${objective//+/,}"); fi
    start=$(date +%s)
    .venv/bin/sslanomaly train --normals "$DATA/kermany/train/normal" --val-normals "$DATA/kermany/val/normal" \
      --out "$RUN" --seed "$SEED" --quiet "${options[@]}"
    echo $(( $(date +%s) - start )) > "$RUN/seconds.txt"
  fi
  scripts/measure_model.sh "$RUN" pediatric
done
