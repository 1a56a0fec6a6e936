#!/usr/bin/env bash
# The exact command that makes the bundled lung-field network (SSLAnomaly/Resources/Models/lungs),
# and its installation. Seed 0; 30 minutes on the 2-core CPU (shared with other work: 1375 steps), with
# disease drawn inside the lung field on half the training images (--disease-share 0.5,
# training/lung_disease.py), so that a white lung is still outlined as a lung (docs/anatomy.md).
#   INSTALL=0 SEED=1 scripts/train_lung_model.sh   # another seed, not installed
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
SEED=${SEED:-0}
RUN=runs/lungs-disease-m30-s$SEED
[ -f "$RUN/manifest.json" ] || OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} .venv/bin/sslanomaly train-anatomy \
  --images "$DATA/openist/images" --masks "$DATA/openist/masks" --out "$RUN" --minutes 30 --seed "$SEED" \
  --disease-share 0.5 --quiet
if [ "${INSTALL:-1}" = 1 ]; then
  mkdir -p SSLAnomaly/Resources/Models/lungs
  cp "$RUN"/{model.safetensors,manifest.json,MODEL_CARD.md} SSLAnomaly/Resources/Models/lungs/
fi
