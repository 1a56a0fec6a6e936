#!/usr/bin/env bash
# One GPU round in one device call (training/device_round.py): on a fresh device machine, install
# the carried wheels, then train anatpaste, contrastive, contrastive+anatpaste and mae on the
# carried packs of both populations (5 minutes each, 8 at a time, mixed precision), fit and write
# every model folder, time training and detection, and leave under $OUT at most 8 files of 16 MiB:
# models-N.tar, results.json, round.log. Prepare here first: scripts/prepare_device_round.sh.
#   device: run(command="scripts/device_round.sh", carry=["wheels", "packs"], timeout_s=600)
#   here:   OUT=/tmp/round scripts/device_round.sh --dry-run   (a few steps on the CPU)
# Options after the script name go to `device_round run` (--minutes, --recipes, --parallel, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
: "${OUT:?set OUT to the folder whose files come back}"
if ! $PY -c "import monai" 2>/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/sslanomaly-site wheels/*.whl
  export PYTHONPATH=/tmp/sslanomaly-site${PYTHONPATH:+:$PYTHONPATH}
fi
mkdir -p "$OUT"
export PYTHONPATH=$PWD/SSLAnomaly${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 TQDM_DISABLE=1
$PY -m SSLAnomalyLib.training.device_round run --packs "${PACKS:-packs}" --out "$OUT" "$@" 2>&1 | tee "$OUT/console.log"
