"""A batch's files under fixed names in its output folder, worklist.csv, failures.log and batch_index.json, told
apart from a user's files of those names: an output folder is any folder a user names, and the first batch into it
wrote over a worklist.csv of theirs (a RIS export, say), deleted a failures.log and replaced a batch_index.json.
The worklist and log are known by their first line, the index by its rows."""

from __future__ import annotations

import json
from pathlib import Path

from SSLAnomalyLib.core.batch.options import BatchOptions
from SSLAnomalyLib.core.batch.resume import BATCH_INDEX
from SSLAnomalyLib.core.files.errors import PathError
from SSLAnomalyLib.core.results.worklist import COLUMNS, WORKLIST

FAILURE_LOG = "failures.log"


def refuse_foreign_files(out: Path, options: BatchOptions) -> None:
    """Refuse, before anything is written, an output folder holding a worklist.csv, failures.log or
    batch_index.json that this batch would replace (as its options say) and that no batch wrote."""
    kept = [(WORKLIST, _worklist)] if options.worklist else []
    kept += [(FAILURE_LOG, _failure_log)] if options.failures_log else []
    kept += [(BATCH_INDEX, _index)] if options.batch_index else []
    for name, ours in kept:
        path = out / name
        if path.exists() and not (path.is_file() and ours(path)):
            raise PathError(path, "was not written by a batch, and this batch would replace it: give another output "
                                  "folder, or move the file first")


def _first_line(path: Path) -> str:
    with open(path, "rb") as f:
        return f.readline(65536).decode("utf-8", "replace").rstrip("\r\n")


def _worklist(path: Path) -> bool:
    line = _first_line(path)
    return line == "" or line.split(",")[:3] == list(COLUMNS[:3])


def _failure_log(path: Path) -> bool:
    line = _first_line(path)
    try:
        entry = json.loads(line) if line else {"input": "", "reason": ""}
    except ValueError:
        return False
    return isinstance(entry, dict) and {"input", "reason"} <= entry.keys()


def _index(path: Path) -> bool:
    """A batch's index is a list of {"name", "input", ...} (resume.BatchIndex), written whole (atomically)."""
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(rows, list) and all(isinstance(row, dict) and {"name", "input"} <= row.keys() for row in rows)
