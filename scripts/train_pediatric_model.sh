#!/usr/bin/env bash
# The exact commands that make the bundled pediatric model (SSLAnomaly/Resources/Models/pediatric),
# check it against the bundled one under the bundling rule, and install it. Resumable: rerun it.
# Round 7 (docs/model.md): the round-6 model (fine-tuned with foreign objects) lost held-out AUROC, so
# the encoder of round 3 comes back (the first-round encoder, as bundled before commit 4ddba28), with
#   - the lung fields that survive disease (Resources/Models/lungs, round 7),
#   - the reference fitted on every Kermany train normal and thresholds cross-fitted on them (5 folds),
#     no augmented calibration copies (they inflated the threshold above clean new normals),
#   - the one-sided density component (`sides`),
#   - the false-positive rate 0.08: the largest whose 90 % upper bound over 1141 normals stays under
#     10 % (core/calibration.ExpectedFPR), chosen on normals only.
# Seed 0; about 25 minutes on the 2-core CPU while other work shared it.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
ENCODER=runs/round7/pediatric-round3
RUN=runs/round7/pediatric-s0
if [ ! -f "$ENCODER/manifest.json" ]; then
  mkdir -p "$ENCODER"
  for f in manifest.json model.safetensors MODEL_CARD.md; do
    git show "4ddba28^:SSLAnomaly/Resources/Models/pediatric/$f" > "$ENCODER/$f"
  done
fi
[ -f "$RUN/manifest.json" ] || .venv/bin/sslanomaly train --normals "$DATA/kermany/train/normal" --out "$RUN" \
  --start-from "$ENCODER" --minutes 0 --calibration-views 0 --fpr 0.08 --seed 0 --quiet
SHIFTS=zoom_gamma,markers,jpeg,lowres scripts/measure_model.sh "$RUN" pediatric
if .venv/bin/python scripts/bundling_check.py pediatric "$RUN" && [ "${INSTALL:-1}" = 1 ]; then
  .venv/bin/python scripts/install_bundled_model.py pediatric "$RUN"
fi
