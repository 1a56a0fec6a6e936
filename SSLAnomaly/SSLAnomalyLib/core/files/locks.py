"""One writer per folder: a lock file naming the writer, so two runs never write one folder at once.
Batch outputs lock `OUT/.sslanomaly.lock`; a model folder, replaced whole by its writer, is locked by
a file beside it.

The lock appears whole or not at all (written beside it, then hard-linked into place), so no run
ever reads a half-written lock; it records the holder's host, process id and start time, so that a
lock whose process is gone, or whose id the system has since given to an unrelated process, is stale
and taken over, while a live holder is refused with the lock file named. A lock taken on another host
(an output folder on shared storage, as a Dask site has) cannot be checked from here: it is held.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from SSLAnomalyLib.core.files.atomic import temporary_name
from SSLAnomalyLib.core.files.json_text import dumps
from SSLAnomalyLib.core.files.errors import PathError

YOUNG_S = 10.0  # a lock that cannot be read and is younger than this may be one an older version is writing


def _process_start(pid: int) -> float | None:
    """When process `pid` started (None if there is no such process)."""
    import psutil  # here, not at the top: on Linux it imports POSIX-only `resource`

    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None


def lock_holder(path) -> dict | None:
    """{"pid", "started", "command", "host"} of the live process holding the lock file `path`; None
    when there is none or it is stale (its process here is gone, or its id now names a later process)."""
    path = Path(path)
    try:
        text, age = path.read_text(encoding="utf-8"), time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return None
    try:
        held = json.loads(text)
        if other_host(held) and {"pid", "command"} <= held.keys():
            return held
        started = _process_start(int(held["pid"]))
        live = started is not None and abs(started - float(held["started"])) < 1.0
    except (ValueError, KeyError, TypeError, AttributeError):  # not this version's lock: only a young one may be live
        return {"pid": "unknown", "command": "unknown"} if age < YOUNG_S else None
    return held if live else None


def other_host(held: dict) -> str | None:
    """The host a lock was taken on, where it is not this one (an older version's lock names none)."""
    host = held.get("host")
    return host if host not in (None, socket.gethostname()) else None


def _take(path: Path) -> bool:
    """Create the lock file with its content in one step; False where one is already there."""
    import psutil

    me = psutil.Process()
    tmp = temporary_name(path)
    try:
        command = " ".join(me.cmdline())[:300]
        tmp.write_text(dumps({"pid": me.pid, "started": me.create_time(), "command": command,
                              "host": socket.gethostname()}), encoding="utf-8")
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def folder_lock(lock_file, folder):
    """Hold `lock_file` while writing `folder`: a live holder is refused (PathError naming `folder`,
    the lock file and the holding process), a stale lock is taken over and said on stderr (a run into
    the folder was killed: what it finished is there, and it may want --resume)."""
    path = Path(lock_file)
    for _ in range(3):
        if _take(path):
            break
        held = lock_holder(path)
        if held is not None:
            where = f" on host {other_host(held)}" if other_host(held) else ""
            raise PathError(folder, f"another sslanomaly run (process {held['pid']}{where}: {held['command']}) is writing "
                                    f"into this folder (lock file {path}); wait for it to finish or choose another "
                                    "folder; if no such run is alive, delete the lock file")
        path.unlink(missing_ok=True)  # stale
        print(f"note: {folder}: the lock {path} was left by a run that no longer runs (killed, or its machine "
              "restarted): taken over", file=sys.stderr)
    else:
        raise PathError(folder, f"could not take the folder's lock {path}")
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)
