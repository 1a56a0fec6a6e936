#!/usr/bin/env bash
# The test suite on a fresh machine: set up .venv/, then run pytest (tests needing
# ../shared/data skip with a reason where it is absent).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup_venv.sh
exec .venv/bin/python -m pytest -q "$@"
