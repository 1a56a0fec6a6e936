#!/usr/bin/env bash
# The exact commands that make the bundled pediatric model (SSLAnomaly/Resources/Models/pediatric),
# measure it and install it. Resumable: rerun it. SEED=1 INSTALL=0 scripts/train_pediatric_model.sh
# makes and measures another seed of step 2 without installing it.
#   1. the first-round encoder (scripts/first_round_encoder.sh);
#   2. fine-tune it for 400 steps (anatpaste, fine-tuning rate) with ECG electrodes, leads, tubes and
#      a marker plate drawn on half the training views, the checkpoint chosen by the normal-only
#      signal whose shifted normals carry them too, thresholds calibrated on the Kermany val normals
#      and one acquisition-augmented copy of each;
#   3. measure it (scripts/measure_model.sh: kermany/val, its shifted copies, TBX11K boxes);
#   4. install it with its figures and those of seeds 1 and 2 (scripts/install_bundled_model.py).
# The bundled model was made with `--start-from pediatric` while that was the first-round encoder
# refitted in round 2 (the same weights as step 1's run), on a 2-core CPU in 1256 s.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
SEED=${SEED:-0}
run() { echo "runs/round6/ft-objects400-s$1"; }
RUN=$(run "$SEED")
[ -f "$RUN/manifest.json" ] || ENCODER=$(scripts/first_round_encoder.sh)
[ -f "$RUN/manifest.json" ] || .venv/bin/sslanomaly train --normals "$DATA/kermany/train/normal" \
  --val-normals "$DATA/kermany/val/normal" --out "$RUN" --start-from "$ENCODER" --minutes 60 --max-steps 400 \
  --seed "$SEED" --calibration-views 1 --foreign-objects 0.5 --quiet
SHIFTS=zoom_gamma,markers,jpeg,lowres scripts/measure_model.sh "$RUN" pediatric
if [ "${INSTALL:-1}" = 1 ]; then
  .venv/bin/python scripts/install_bundled_model.py pediatric "$RUN" $(for s in 1 2; do [ -f "$(run $s)/dev.json" ] && run $s; done)
fi
