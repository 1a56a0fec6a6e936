"""Ctrl-C and SIGTERM end every command alike, whenever they come: one line on stderr ('interrupted',
'terminated (SIGTERM)'), exit 130 or 143, no traceback."""

import signal
import subprocess
import sys

import pytest

from conftest import REPO

ON_IMPORT = """
import importlib.abc, os, signal, sys
class SignalOnImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "torch":
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.{sig})
sys.meta_path.insert(0, SignalOnImport())
from SSLAnomalyLib.cli import main
sys.exit(main(["models"]))
"""


def run(script: str) -> subprocess.CompletedProcess:
    # a test run started in the background inherits an ignored SIGINT: give the default, as a shell would
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120,
                          preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


@pytest.mark.parametrize("sig, status, said", [("SIGINT", 130, "interrupted\n"),
                                               ("SIGTERM", 143, "terminated (SIGTERM)\n")])
def test_a_signal_while_the_command_starts_ends_it_as_one_mid_run_does(sig, status, said):
    """The first seconds of every command import torch; a Ctrl-C then ended it in a traceback (exit
    -2), a SIGTERM silently (-15): the command line handled neither until the imports were done."""
    r = run(ON_IMPORT.format(sig=sig))
    assert (r.returncode, r.stderr, r.stdout) == (status, said, "")


AGAIN_WHILE_ENDING = """
import atexit, os, signal, sys
from SSLAnomalyLib.cli import main, models
def again():  # a second Ctrl-C (and a SIGTERM) as the command cleans up, and as the process exits
    os.kill(os.getpid(), signal.SIGINT)
    os.kill(os.getpid(), signal.SIGTERM)
def interrupted(args):
    try:
        os.kill(os.getpid(), signal.SIGINT)
    finally:
        again()
        print("cleaned up")
models.cmd_models = interrupted
atexit.register(again)
sys.exit(main(["models"]))
"""


def test_a_second_signal_while_the_command_ends_is_ignored():
    """A second Ctrl-C after the first broke the cleanup under way, or the exit: 'Exception ignored in
    atexit callback' tracebacks, exit -2, or torch's 'terminate called without an active exception'."""
    r = run(AGAIN_WHILE_ENDING)
    assert (r.returncode, r.stderr, r.stdout) == (130, "interrupted\n", "cleaned up\n")
