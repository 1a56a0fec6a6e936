#!/usr/bin/env bash
# The exact command that makes the bundled default model, its measurement, and the copy into the
# module's resources (weights, manifest and card only; checkpoints stay in runs/). Resumable: rerun it.
#   SEED=1 INSTALL=0 scripts/train_default_model.sh   # another seed of the same recipe, not installed
# Training and both evaluations run through scripts/model_experiments.sh, so the model's row in
# docs/model.md comes from this same run.
set -euo pipefail
cd "$(dirname "$0")/.."
SEED=${SEED:-0}
RUN=anatpaste-s$SEED
scripts/model_experiments.sh "$RUN" --minutes 40 --pretext anatpaste --seed "$SEED"
if [ "${INSTALL:-1}" = 1 ]; then
  mkdir -p SSLAnomaly/Resources/Models/default
  cp "runs/experiments/$RUN"/{model.safetensors,manifest.json,MODEL_CARD.md} SSLAnomaly/Resources/Models/default/
  echo "installed; record its measured figures in its card with scripts/record_measurements.py (see docs/model.md)"
fi
