#!/usr/bin/env bash
# What a site gets from its own ~200 normals, measured as a site would do it: NIH ChestX-ray14's
# 204 train normals (nih/train/normal), dev AUROC on nih/val, starting from the RSNA-trained adult
# encoder (the bundled adult encoder with its reference and calibration refitted on RSNA, as the
# site receives a model fitted elsewhere; made first if missing). Times are wall-clock on the 2-core
# CPU. Rows land in runs/round2/adult/site-*; scripts/variant_table.py tabulates them.
#   (a) calibrate only   (b) refit the normal reference (--minutes 0)   (c) fine-tune each of MINUTES
#   (d) from a random encoder for each of SCRATCH_MINUTES          e.g. MINUTES="10 30" SCRATCH_MINUTES=30
# Every row at 5 % false positives, as measured (a --start-from run otherwise keeps its starting model's rate; calibrate's default is 5 %).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
FROM=${FROM:-runs/round2/adult/adult-rsna}
S=.venv/bin/sslanomaly
timed() { local out=$1; shift; [ -f "$out/manifest.json" ] && return 0; local t0=$(date +%s); "$@"; echo $(( $(date +%s) - t0 )) > "$out/seconds.txt"; }
timed "$FROM" $S train --normals "$DATA/rsna/train/normal" --val-normals "$DATA/rsna/val/normal" --out "$FROM" \
  --start-from adult --minutes 0 --fpr 0.05 --seed 0 --quiet
timed runs/round2/adult/site-calibrate $S calibrate --model "$FROM" --normals "$DATA/nih/train/normal" \
  --out runs/round2/adult/site-calibrate --fpr 0.05 --quiet
timed runs/round2/adult/site-refit $S train --normals "$DATA/nih/train/normal" --out runs/round2/adult/site-refit \
  --start-from "$FROM" --minutes 0 --fpr 0.05 --seed 0 --quiet
for M in ${MINUTES:-}; do
  timed runs/round2/adult/site-finetune$M $S train --normals "$DATA/nih/train/normal" --out runs/round2/adult/site-finetune$M \
    --start-from "$FROM" --minutes "$M" --fpr 0.05 --seed 0 --quiet
done
for M in ${SCRATCH_MINUTES:-}; do
  timed runs/round2/adult/site-scratch$M $S train --normals "$DATA/nih/train/normal" --out runs/round2/adult/site-scratch$M \
    --minutes "$M" --seed 0 --quiet
done
for run in "$FROM" runs/round2/adult/site-*; do
  [ -f "$run/dev.json" ] || $S evaluate --model "$run" --normal "$DATA/nih/val/normal" --abnormal "$DATA/nih/val/pneumonia" \
    --json "$run/dev.json" --quiet > /dev/null
done
