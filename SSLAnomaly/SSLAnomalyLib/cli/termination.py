"""SIGTERM (a `kill`, Slicer's *Stop*, a scheduler ending a job) turned into an exception, so that a
command stops as cleanly as on Ctrl-C instead of dying mid-write; and a reader of the output that
closed it early (`| head`), met quietly."""

from __future__ import annotations

import os
import signal
import sys
from contextlib import contextmanager


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised as a kind of Ctrl-C's KeyboardInterrupt: whatever keeps its work on Ctrl-C (a
    batch's finished results, a training run's checkpoint) keeps it on SIGTERM too."""


@contextmanager
def signals_raise():
    """Ctrl-C raised as KeyboardInterrupt (unless the process was started to ignore it: `cmd &` in a
    script), SIGTERM as Terminated. The first ends the command, so every later one is ignored until the
    process exits: one more broke the cleanup under way (a lock, a checkpoint's save) or the exit
    ('Exception ignored in atexit callback', exit -2; torch's 'terminate called without an active
    exception', -6). Hence the handlers are put back only where no signal came."""
    def stop(signum, frame):
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, signal.SIG_IGN)
        raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()

    taken = [signal.SIGTERM] + [signal.SIGINT] * (signal.getsignal(signal.SIGINT) is not signal.SIG_IGN)
    previous = {s: signal.signal(s, stop) for s in taken}
    try:
        yield
    finally:
        if signal.getsignal(signal.SIGTERM) is stop:
            for s, handler in previous.items():
                signal.signal(s, handler)


@contextmanager
def signals_held():
    """Ctrl-C and SIGTERM that come during the block take effect as it ends: for importing VTK's native
    modules (slicer-core, which `detect --mrb` imports on its way), which an exception raised mid-import
    crashes ('Segmentation fault') or turns into an ImportError naming another module, not 'interrupted'."""
    came = []
    previous = {s: signal.signal(s, lambda signum, frame: came.append(signum)) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for s in dict.fromkeys(came):
            signal.raise_signal(s)  # its own handler's now: Terminated, KeyboardInterrupt


TERMINATED = 128 + signal.SIGTERM  # the exit status of a command ended by SIGTERM


OUTPUT_CLOSED = 128 + 13  # the exit status a shell gives a command ended by SIGPIPE (13; Windows has no signal.SIGPIPE)


def output_closed() -> int:
    """The reader of stdout closed it before the command was done (`sslanomaly models | head`): stop
    quietly, as a command ended by SIGPIPE does, not with "error: [Errno 32] Broken pipe". Stdout
    is pointed at devnull so that the flush at exit does not fail again (Python's note on SIGPIPE)."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return OUTPUT_CLOSED
