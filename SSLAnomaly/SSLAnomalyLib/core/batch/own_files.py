"""A batch's files under fixed names in its output folder, worklist.csv and failures.log, told apart from a
user's files of those names: an output folder is any folder a user names, and the first batch into it wrote
over a worklist.csv of theirs (a RIS export, say) and deleted a failures.log. Each is known by its first line."""

from __future__ import annotations

import json
from pathlib import Path

from SSLAnomalyLib.core.batch.options import BatchOptions
from SSLAnomalyLib.core.files.errors import PathError
from SSLAnomalyLib.core.results.worklist import COLUMNS, WORKLIST

FAILURE_LOG = "failures.log"


def refuse_foreign_files(out: Path, options: BatchOptions) -> None:
    """Refuse, before anything is written, an output folder holding a worklist.csv or failures.log that this
    batch would replace (as its options say) and that no batch wrote."""
    kept = [(WORKLIST, _worklist_header)] if options.worklist else []
    kept += [(FAILURE_LOG, _failure_line)] if options.failures_log else []
    for name, ours in kept:
        path = out / name
        if path.exists() and not (path.is_file() and ours(_first_line(path))):
            raise PathError(path, "was not written by a batch, and this batch would replace it: give another output "
                                  "folder, or move the file first")


def _first_line(path: Path) -> str:
    with open(path, "rb") as f:
        return f.readline(65536).decode("utf-8", "replace").rstrip("\r\n")


def _worklist_header(line: str) -> bool:
    return line == "" or line.split(",")[:3] == list(COLUMNS[:3])


def _failure_line(line: str) -> bool:
    try:
        entry = json.loads(line) if line else {"input": "", "reason": ""}
    except ValueError:
        return False
    return isinstance(entry, dict) and {"input", "reason"} <= entry.keys()
