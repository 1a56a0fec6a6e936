"""One line per phase of a training run (reading, training, reference, calibration, writing), so
that no phase of `sslanomaly train` passes in silence: a refit (`--minutes 0`) is all phases and no
training bar. Lines go to stderr, beside the progress bars (training/progress.py)."""

from __future__ import annotations

import sys
import time


class Phases:
    """Say each phase as it starts, with the time since the run began."""

    def __init__(self, show: bool = True):
        self.show, self.t0 = show, time.time()

    def __call__(self, text: str) -> None:
        if self.show:
            print(f"[{time.time() - self.t0:7.1f} s] {text}", file=sys.stderr, flush=True)
