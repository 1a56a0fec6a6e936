#!/usr/bin/env bash
# The main job on a fresh machine: set up .venv/, then run `sslanomaly detect` with a bundled
# model on a sample (SAMPLE_DIR where it is set, else real radiographs from ../shared/data where
# present, else a synthetic radiograph generated and named as such). Prints where the outputs are. The sample is
# children's radiographs (Kermany), so the bundled `pediatric` model scores it (MODEL=adult for adults).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup_venv.sh
OUT=${OUT:-out/demo}
# A sample refused (SAMPLE_DIR missing, or without images) ends the demo with its reason (set -e).
SAMPLE_LIST=$(.venv/bin/sslanomaly sample --out "$OUT/sample" ${SAMPLE_DIR:+--data "$SAMPLE_DIR"})
mapfile -t SAMPLES <<< "$SAMPLE_LIST"
.venv/bin/sslanomaly detect --model "${MODEL:-pediatric}" --lungs --out "$OUT" "${SAMPLES[@]}"
echo "Outputs (findings JSON, heatmap NRRD, lung fields NRRD, overlay PNG) are in: $(cd "$OUT" && pwd)"
