"""One writer per folder: a lock file holding the writer's process id, taken with O_EXCL so two
runs cannot both get it, and taken over when its process is gone (a killed run leaves it behind).
Batch outputs lock `OUT/.sslanomaly.lock`; a model folder, replaced whole by its writer, is locked
by a file beside it."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from SSLAnomalyLib.core.errors import PathError


@contextmanager
def folder_lock(lock_file, folder):
    """Hold `lock_file` while writing `folder`: a second writer is refused (PathError naming `folder`
    and the holding process); a lock whose process is gone is taken over."""
    import psutil  # here, not at the top: on Linux it imports POSIX-only `resource`

    path = Path(lock_file)
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            try:
                holder = int(path.read_text().strip() or 0)
            except (OSError, ValueError):
                holder = 0
            if holder and psutil.pid_exists(holder) and holder != os.getpid():
                raise PathError(folder, f"another sslanomaly run (process {holder}) is writing into this folder; "
                                        "wait for it to finish or choose another folder") from None
            path.unlink(missing_ok=True)  # its process is gone: the lock is stale
    else:
        raise PathError(folder, f"could not take the folder's lock {path.name}")
    with os.fdopen(fd, "w") as f:
        f.write(str(os.getpid()))
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)
