#!/usr/bin/env bash
# Measure a model folder with the `sslanomaly` command only, on the data of its population; every
# figure of the round-2 tables in docs/model.md comes from here (scripts/variant_table.py builds them).
#   scripts/measure_model.sh RUN pediatric|adult
# pediatric: dev.json (kermany/val normal vs pneumonia), shifted.json (the same under seeded acquisition
#            perturbations: zoom_gamma, combined, markers), localisation.json (tbx11k_dev boxes)
# adult:     dev.json (nih/val normal vs pneumonia), shifted.json (the same, perturbed),
#            localisation.json (tbx11k_dev boxes), nih_boxes.json (nih/val pneumonia boxes)
# Labels of these folders are used to report only, never to train, select or set a threshold.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
RUN=$1; POP=$2
S=.venv/bin/sslanomaly
SHIFTS=${SHIFTS:-zoom_gamma,combined,markers}
case "$POP" in
  pediatric) NORMAL=$DATA/kermany/val/normal; ABNORMAL=$DATA/kermany/val/pneumonia ;;
  adult) NORMAL=$DATA/nih/val/normal; ABNORMAL=$DATA/nih/val/pneumonia ;;
  *) echo "population must be pediatric or adult" >&2; exit 2 ;;
esac
[ -f "$RUN/dev.json" ] || $S evaluate --model "$RUN" --normal "$NORMAL" --abnormal "$ABNORMAL" --json "$RUN/dev.json" \
  --scores-csv "$RUN/dev_scores.csv" --quiet > /dev/null
[ -f "$RUN/shifted.json" ] || $S evaluate --model "$RUN" --normal "$NORMAL" --abnormal "$ABNORMAL" --perturb "$SHIFTS" \
  --json "$RUN/shifted.json" --quiet > /dev/null
[ -f "$RUN/localisation.json" ] || $S evaluate --model "$RUN" --boxes "$DATA/tbx11k_dev/boxes.csv" \
  --images "$DATA/tbx11k_dev/images" --json "$RUN/localisation.json" --quiet > /dev/null
if [ "$POP" = adult ] && [ ! -f "$RUN/nih_boxes.json" ]; then
  $S evaluate --model "$RUN" --boxes "$DATA/nih/val/boxes.csv" --images "$DATA/nih/val/pneumonia" \
    --json "$RUN/nih_boxes.json" --quiet > /dev/null
fi
echo "$RUN measured ($POP)"
