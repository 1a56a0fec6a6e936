#!/usr/bin/env bash
# The exact commands that make the bundled adult model (SSLAnomaly/Resources/Models/adult), measure
# it and install it. Resumable: rerun it. SEED=1 INSTALL=0 scripts/train_adult_model.sh for another seed.
#   1. fine-tune the first-round pediatric encoder (scripts/first_round_encoder.sh) on the RSNA adult
#      normals for 40 minutes (acquisition augmentation, anatpaste pastes inside the learned lung
#      fields, checkpoint by the normal-only shift-aware signal), calibrated on the RSNA val normals;
#   2. refit its normal reference and thresholds on the 204 NIH ChestX-ray14 train normals (a held-back
#      fifth for the thresholds), each heatmap position standardised against held-out normals, the
#      heatmap from layer1 + layer2 (a 64 x 64 patch grid);
#   3. measure it (scripts/measure_model.sh: NIH val, its shifted copies, TBX11K and NIH boxes);
#   4. install it with its population and figures (scripts/install_bundled_model.py).
# The bundled model was made with step 2 from the encoder already bundled (`--start-from adult`, the
# same encoder as step 1's run of round 2, which started from `pediatric` while that was the
# first-round encoder): scripts/adult_patch_layers.sh layer1,layer2:0.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
SEED=${SEED:-0}
MINUTES=${MINUTES:-40}
RUN=runs/round2/adult/adult-ft${MINUTES}-s$SEED
[ -f "$RUN/manifest.json" ] || ENCODER=$(scripts/first_round_encoder.sh)
SITE=runs/round2/adult/adult-ft${MINUTES}-nih-s$SEED
[ -f "$RUN/manifest.json" ] || .venv/bin/sslanomaly train --normals "$DATA/rsna/train/normal" \
  --val-normals "$DATA/rsna/val/normal" --out "$RUN" --minutes "$MINUTES" --pretext anatpaste --seed "$SEED" \
  --start-from "$ENCODER" --quiet
[ -f "$SITE/manifest.json" ] || .venv/bin/sslanomaly train --normals "$DATA/nih/train/normal" --out "$SITE" \
  --minutes 0 --seed "$SEED" --start-from "$RUN" --standardise-positions --patch-layers layer1,layer2 --quiet
scripts/measure_model.sh "$SITE" adult
if [ "${INSTALL:-1}" = 1 ]; then
  .venv/bin/python scripts/install_bundled_model.py adult "$SITE"
fi
