"""Progress of a long step of training or calibration (seconds of the training budget, normals
read or scored), reported in one of two forms: a bar on stderr for a person at a terminal, or, for a
program that started the process (the Slicer panel's `jobs.TrainingJob`, which sets
SSLANOMALY_PROGRESS=json), one JSON line on stdout per change:

    {"progress": {"phase": "training", "done": 12, "total": 600, "unit": "s"}}

so that no one parses a rendered progress bar back into numbers.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Iterable, Iterator, TypeVar

from tqdm import tqdm

ENV = "SSLANOMALY_PROGRESS"
JSON_LINES = "json"
T = TypeVar("T")


def progress_line(phase: str, done: int, total: int, unit: str) -> str:
    return json.dumps({"progress": {"phase": phase, "done": int(done), "total": int(total), "unit": unit}})


def parse_progress(line: str) -> dict | None:
    """The progress a line reports ({phase, done, total, unit}), or None for a line of the log."""
    if not line.startswith('{"progress"'):
        return None
    try:
        report = json.loads(line)["progress"]
        return {"phase": str(report["phase"]), "done": int(report["done"]), "total": int(report["total"]),
                "unit": str(report["unit"])}
    except (ValueError, KeyError, TypeError):
        return None


class Progress:
    """`done` of `total` `unit`s of `phase`: a tqdm bar, or JSON lines where SSLANOMALY_PROGRESS=json."""

    def __init__(self, phase: str, total: int, unit: str, initial: int = 0, show: bool = True):
        self.phase, self.total, self.unit, self.done = phase, int(total), unit, int(initial)
        self.as_json = show and os.environ.get(ENV) == JSON_LINES
        self.bar = tqdm(total=self.total, initial=self.done, desc=phase, unit=unit, file=sys.stderr,
                        disable=not show or self.as_json)
        self._say()

    def update(self, done: int, **postfix) -> None:
        done = min(int(done), self.total)
        if done == self.done:
            return
        self.done = done
        self.bar.n = done
        if postfix:
            self.bar.set_postfix(**postfix)
        else:
            self.bar.refresh()
        self._say()

    def close(self) -> None:
        self.bar.close()

    def _say(self) -> None:
        if self.as_json:
            print(progress_line(self.phase, self.done, self.total, self.unit), flush=True)


def progress_over(items: Iterable[T], phase: str, unit: str, show: bool = True, total: int | None = None) -> Iterator[T]:
    """Each of `items`, counted as progress of `phase` after it is handled."""
    items = list(items) if total is None else items
    progress = Progress(phase, len(items) if total is None else total, unit, show=show)
    try:
        for i, item in enumerate(items):
            yield item
            progress.update(i + 1)
    finally:
        progress.close()
