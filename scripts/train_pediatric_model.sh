#!/usr/bin/env bash
# The exact command that makes the bundled default model, its measurement, and the copy into the
# module's resources (weights, manifest and card only; checkpoints stay in runs/). Resumable: rerun it.
#   SEED=1 INSTALL=0 scripts/train_pediatric_model.sh   # another seed of the same recipe, not installed
# Training and both evaluations run through scripts/model_experiments.sh, so the model's row in
# docs/model.md comes from this same run.
set -euo pipefail
cd "$(dirname "$0")/.."
SEED=${SEED:-0}
RUN=anatpaste-s$SEED
scripts/model_experiments.sh "$RUN" --minutes 40 --pretext anatpaste --seed "$SEED"
if [ "${INSTALL:-1}" = 1 ]; then
  mkdir -p SSLAnomaly/Resources/Models/pediatric
  cp "runs/experiments/$RUN"/{model.safetensors,manifest.json,MODEL_CARD.md} SSLAnomaly/Resources/Models/pediatric/
  echo "installed; measure it (scripts/measure_model.sh) and install it with scripts/install_bundled_model.py (see docs/model.md)"
fi
