#!/usr/bin/env bash
# Prepare, here, everything a GPU round needs that a fresh device machine lacks (one command):
#   wheels/  the wheels of what the training imports and the device image does not hold: MONAI
#            (the image has torch, numpy, scipy, scikit-learn, scikit-image, safetensors, tqdm,
#            psutil, pillow and matplotlib: /work/.library/device/KINDS.md), at this venv's versions,
#            for the device's Python 3.12 on x86-64 Linux
#   packs/   the training and calibration normals of both populations at the model input size
#            (kermany and rsna, training/packs.py), with round.json
# Both are git-ignored: the device call names them in `carry`. The working tree, wheels and packs
# must stay under the 64 MiB a call carries: the total is printed at the end.
# Usage: scripts/prepare_device_round.sh [--limit N --size S]   (a dry run's tiny packs)
# Then, on the device: run(command="scripts/device_round.sh", carry=["wheels", "packs"], timeout_s=600)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
DATA=${DATA:-../shared/data}
DEVICE_LACKS=(monai)
rm -rf wheels && mkdir -p wheels
for name in "${DEVICE_LACKS[@]}"; do
  version=$($PY -m pip show "$name" | sed -n 's/^Version: //p')
  $PY -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d wheels "$name==$version"
done
rm -rf packs
$PY -m SSLAnomalyLib.training.device_round pack --data "$DATA" --out packs "$@"
tracked=$(git ls-files -z | xargs -0 stat -c %s 2>/dev/null | awk '{s+=$1} END {print s}')
untracked=$(git ls-files -z --others --exclude-standard | xargs -0 -r stat -c %s 2>/dev/null | awk '{s+=$1} END {print s+0}')
carried=$(du -sb wheels packs | awk '{s+=$1} END {print s}')
total=$(( tracked + untracked + carried ))
echo "what a device call carries: $(( total / 1048576 )) MiB of 64" \
     "(tracked $(( tracked / 1048576 )), untracked $(( untracked / 1048576 )), wheels and packs $(( carried / 1048576 )))"
if [ "$total" -gt $(( 64 * 1048576 )) ]; then
  echo "too much for one device call: pack fewer normals (--limit N) or carry less" >&2
  exit 1
fi
