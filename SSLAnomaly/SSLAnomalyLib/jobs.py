"""Long work the Slicer panel and the Logic start, watch and stop: training and site calibration in
their own Python process, detection on a worker thread. Both report determinate progress and really stop on cancel.
A process reports its progress as JSON lines (training/progress.py), asked for by SSLANOMALY_PROGRESS=json.

A training process is usually started through a launcher (PythonSlicer starts the real Python),
so killing the process Slicer started leaves the training running; cancel ends the whole process
tree with psutil (as MONAIAuto3DSeg does). Detection cannot be interrupted inside one image; it
stops between images.
"""

from __future__ import annotations

import os
import subprocess
import threading
from typing import Callable

import psutil

from SSLAnomalyLib.training.progress import ENV, JSON_LINES, parse_progress


class TrainingJob:
    """`sslanomaly train` or `calibrate` in a separate process (so that the panel stays responsive);
    `lines` holds its log, `phase`, `done` and `total` its latest progress (of training: seconds of
    the budget; of calibration: normals scored of all); `output` the model folder it writes, as it was
    started (what the panel offers when it ends, whatever its fields say by then)."""

    def __init__(self, command: list[str], env: dict | None = None, on_line: Callable[[str], None] | None = None,
                 output: os.PathLike | None = None):
        self.command, self.on_line, self.output = list(command), on_line, output
        self.env = dict(os.environ if env is None else env, **{ENV: JSON_LINES})
        self.lines: list[str] = []
        self.phase, self.done, self.total = None, 0, None
        self.cancelled = False
        self._process = None
        self._reader = None

    def start(self) -> "TrainingJob":
        self._process = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                         errors="replace", env=self.env)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        for line in self._process.stdout:
            line = line.rstrip()
            if not line:
                continue
            progress = parse_progress(line)
            if progress is not None:
                self.phase, self.done, self.total = progress["phase"], progress["done"], progress["total"]
                continue  # a progress report, not a line of the log
            self.lines.append(line)
            if self.on_line is not None:
                self.on_line(line)

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def running(self) -> bool:
        """Until the process has ended and its last line is read (so a poller that then takes the exit
        code has every line: the last one often says why it failed)."""
        return self._process is not None and (self._process.poll() is None or self._reader.is_alive())

    @property
    def fraction(self) -> float | None:
        """Share of the current phase done (None before any progress is reported)."""
        return None if not self.total else min(1.0, self.done / self.total)

    def wait(self, timeout: float | None = None) -> int:
        code = self._process.wait(timeout)
        self._reader.join(timeout=5)
        return code

    def cancel(self, grace_s: float = 5.0) -> None:
        """Stop the process and everything it started; training resumes from its last checkpoint
        when started again with the same output folder."""
        self.cancelled = True
        if self._process is None:
            return
        try:
            tree = psutil.Process(self._process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            tree = []
        for p in tree:
            try:
                p.terminate()
            except psutil.NoSuchProcess:
                pass
        self._process.terminate()  # the root through Popen, which alone reaps it: psutil reaping it
        try:                       # left Popen an exit code of 0, a cancelled job read as a success
            self._process.wait(grace_s)
        except subprocess.TimeoutExpired:
            self._process.kill()
        _, alive = psutil.wait_procs(tree, timeout=grace_s)
        for p in alive:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(alive, timeout=grace_s)
        self._process.wait(grace_s)
        self._reader.join(grace_s)


class DetectionJob:
    """`work(item)` for each item on a worker thread; `results` holds (item, result, error) rows."""

    def __init__(self, work: Callable, items: list):
        self.work, self.items = work, list(items)
        self.results: list[tuple] = []
        self.cancelled = False
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> "DetectionJob":
        self._thread.start()
        return self

    def _run(self) -> None:
        for item in self.items:
            if self.cancelled:
                return
            try:
                self.results.append((item, self.work(item), None))
            except Exception as e:  # reported with its item, the rest goes on
                self.results.append((item, None, e))

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    @property
    def done(self) -> int:
        return len(self.results)

    @property
    def total(self) -> int:
        return len(self.items)

    def cancel(self) -> None:
        """No further item is started; the one being scored finishes and is kept."""
        self.cancelled = True

    def wait(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)
