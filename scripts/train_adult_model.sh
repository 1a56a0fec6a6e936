#!/usr/bin/env bash
# The exact commands that make the bundled adult model (SSLAnomaly/Resources/Models/adult), measure
# it and install it. Resumable: rerun it. SEED=1 INSTALL=0 scripts/train_adult_model.sh for another seed.
#   1. fine-tune the pediatric encoder on the RSNA adult normals for 40 minutes (acquisition
#      augmentation, anatpaste pastes inside the learned lung fields, checkpoint by the normal-only
#      shift-aware signal), calibrated on the RSNA val normals;
#   2. measure it (scripts/measure_model.sh: NIH val, its shifted copies, TBX11K and NIH boxes);
#   3. install it with its population and figures (scripts/install_bundled_model.py).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
SEED=${SEED:-0}
MINUTES=${MINUTES:-40}
RUN=runs/round2/adult/adult-ft${MINUTES}-s$SEED
[ -f "$RUN/manifest.json" ] || .venv/bin/sslanomaly train --normals "$DATA/rsna/train/normal" \
  --val-normals "$DATA/rsna/val/normal" --out "$RUN" --minutes "$MINUTES" --pretext anatpaste --seed "$SEED" \
  --start-from pediatric --quiet
scripts/measure_model.sh "$RUN" adult
if [ "${INSTALL:-1}" = 1 ]; then
  .venv/bin/python scripts/install_bundled_model.py adult "$RUN"
fi
