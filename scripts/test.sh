#!/usr/bin/env bash
# The test suite on a fresh machine: set up .venv/, then run pytest (tests needing
# ../shared/data skip with a reason where it is absent). One pytest worker per core, each test file
# on one worker (module fixtures are built once), one math thread per worker so that the workers do
# not fight over the cores (7.9 min instead of 14.2 on 2 cores when measured; 859 tests: 11.2 min on 2026-12-08, stop 50, 12.2 min with set-up); `scripts/test.sh -n 0` runs serially.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup_venv.sh
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
exec .venv/bin/python -m pytest -q -n auto --dist loadfile "$@"
