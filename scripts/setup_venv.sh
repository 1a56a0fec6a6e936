#!/usr/bin/env bash
# Create (or complete) .venv/ with SSLAnomaly and everything it needs, slicer-core included.
# torch is pinned to the CPU wheel (2.13.0): a bare `torch` would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import SSLAnomalyLib.core, sslanomaly_bench, slicer, pytest, xdist, jsonschema" >/dev/null 2>&1; then
  .venv/bin/pip install --quiet --upgrade pip
  .venv/bin/pip install --quiet torch==2.13.0
  .venv/bin/pip install --quiet -e ".[slicer,test]"
fi
