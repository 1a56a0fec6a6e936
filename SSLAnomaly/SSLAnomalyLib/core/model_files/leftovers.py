"""What a model writer killed outright (SIGKILL, a power cut) leaves beside the model folder NAME:
its staging folder `.NAME.new<pid>-<token>`, and, killed between its two renames, the model it was
replacing, moved aside to `.NAME.old<pid>-<token>` with nothing at NAME. Both are hidden, each a
whole model's size, and no later run looked at them: the model was gone from NAME for good.

The next write of a model to NAME (holding its lock) puts such a model back, since the write that
moved it never finished, and removes the rest; a reader finding NAME missing is told where it is.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import sys
from pathlib import Path

from SSLAnomalyLib.core.files.atomic import writing

STAGED, MOVED_ASIDE = "new", "old"


def sibling(folder: Path, what: str) -> Path:
    """A hidden name beside `folder` for this process's `what` (STAGED or MOVED_ASIDE)."""
    return folder.with_name(f".{folder.name}.{what}{os.getpid()}-{secrets.token_hex(4)}")


def _stopped(folder: Path, what: str) -> list[Path]:
    """The `what` folders beside `folder` of writers that no longer run, the last written last."""
    name = re.compile(rf"^\.{re.escape(folder.name)}\.{what}(\d+)-[0-9a-f]{{8}}$")
    try:
        found = [p for p in folder.parent.iterdir()
                 if (m := name.match(p.name)) and p.is_dir() and not p.is_symlink() and not writing(int(m[1]))]
    except OSError:  # no parent folder: nothing left there
        return []
    return sorted(found, key=lambda p: p.stat().st_mtime)


def moved_aside(folder: Path) -> Path | None:
    """The model a killed writer moved aside from `folder`, where nothing took its place."""
    if os.path.lexists(folder):
        return None
    found = _stopped(folder, MOVED_ASIDE)
    return found[-1] if found else None


def clear(folder: Path) -> None:
    """Put back the model a killed writer moved aside from `folder` (said on stderr) and remove the
    other leftovers of killed writers; only while holding `folder`'s lock."""
    back = moved_aside(folder)
    if back is not None:
        os.rename(back, folder)
        print(f"note: {folder}: the model a stopped write had moved aside to {back.name} is put back",
              file=sys.stderr)
    for p in _stopped(folder, MOVED_ASIDE) + _stopped(folder, STAGED):
        shutil.rmtree(p, ignore_errors=True)
