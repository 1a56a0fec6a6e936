#!/usr/bin/env bash
# Adult heatmap resolution: the bundled adult encoder refitted on the NIH train normals with finer
# patch layers (layer1+layer2: 64 x 64 map; layer2 alone: 32 x 32), positions standardised as the
# bundled model; measured on tbx11k_dev and nih/val boxes and nih/val AUROC (docs/model.md, round 3).
set -euo pipefail
cd "$(dirname "$0")/.."
D=${DATA:-../shared/data}; S=.venv/bin/sslanomaly
#   scripts/adult_patch_layers.sh [PATCH_LAYERS:SEED ...]      (default: layer1,layer2:0 layer2:0)
for SPEC in ${*:-layer1,layer2:0 layer2:0}; do
  PL=${SPEC%%:*}; SEED=${SPEC##*:}
  R=runs/round3/adult-patch-${PL/,/+}-s$SEED
  [ -f $R/manifest.json ] || $S train --normals $D/nih/train/normal --out $R --minutes 0 --seed $SEED --start-from adult \
    --standardise-positions --patch-layers $PL --quiet
  [ -f $R/nih_boxes.json ] && continue
  $S evaluate --model $R --boxes $D/tbx11k_dev/boxes.csv --images $D/tbx11k_dev/images --json $R/localisation.json --quiet > /dev/null
  $S evaluate --model $R --boxes $D/nih/val/boxes.csv --images $D/nih/val/pneumonia --json $R/nih_boxes.json --quiet > /dev/null
  $S evaluate --model $R --normal $D/nih/val/normal --abnormal $D/nih/val/pneumonia --json $R/dev.json --quiet > /dev/null
  echo "$R done"
done
