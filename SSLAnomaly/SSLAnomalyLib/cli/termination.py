"""SIGTERM (a `kill`, Slicer's *Stop*, a scheduler ending a job) turned into an exception, so that a
command stops as cleanly as on Ctrl-C instead of dying mid-write."""

from __future__ import annotations

import signal
from contextlib import contextmanager


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised as a kind of Ctrl-C's KeyboardInterrupt: whatever keeps its work on Ctrl-C (a
    batch's finished results, a training run's checkpoint) keeps it on SIGTERM too."""


@contextmanager
def sigterm_raises():
    def stop(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # one is enough: the command is ending
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


TERMINATED = 128 + signal.SIGTERM  # the exit status of a command ended by SIGTERM
