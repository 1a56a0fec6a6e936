#!/usr/bin/env bash
# The exact command that made the bundled default model, then the copy into the module's
# resources (weights, manifest and card only; checkpoints stay in runs/). Resumable: rerun it.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
SEED=${SEED:-0}
.venv/bin/sslanomaly train --normals "$DATA/kermany/train/normal" --val-normals "$DATA/kermany/val/normal" \
  --out "runs/default-s$SEED" --minutes 40 --seed "$SEED" --pretext opacity
if [ "${INSTALL:-1}" = 1 ]; then
  mkdir -p SSLAnomaly/Resources/Models/default
  cp "runs/default-s$SEED"/{model.safetensors,manifest.json,MODEL_CARD.md} SSLAnomaly/Resources/Models/default/
fi
