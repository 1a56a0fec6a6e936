"""Writing a file so that readers see the old version or the new one, never half of one.

Every temporary file is named after its target and the process writing it
(`.<name>.tmp<pid>-<token>`, and the format's extension for writers that choose by it; staging
folders `.sslanomaly-staging-<pid>-<token>`), so a run only ever removes leftovers of processes that
no longer exist, never another live run's files or the user's own; and no temporary name ends like
a result (`.findings.json`, `.heatmap.nrrd`), so that the results of an input named like a temporary
(`.x.tmp99999-deadbeef.png`: `.x.tmp99999-deadbeef.findings.json`) are never taken for leftovers.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path

LEFTOVER = re.compile(r"\.(.+)\.tmp(\d+)-[0-9a-f]{8}(.*)", re.DOTALL)  # then nothing or the target's extension
STAGING_PREFIX = ".sslanomaly-staging-"  # + "<pid>-": a folder of files written all-or-nothing (staging.py)
LEFTOVER_STAGING = re.compile(rf"^{re.escape(STAGING_PREFIX)}(\d+)-")


@contextmanager
def atomic_path(path, keep_extension: bool = False):
    """Yield a temporary path beside `path` to write to; on success it replaces `path` (after
    reaching the disk), on failure it is removed and `path` is untouched. `keep_extension` ends the
    temporary name with the format's extension (.nrrd, .nii.gz), for writers that choose by it."""
    path = Path(path)
    tmp = temporary_name(path, _extension(path) if keep_extension else "")
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def disk_full_or(error: Exception, folder, needed: int) -> Exception:
    """A C++ writer (SimpleITK) reports a full disk as a RuntimeError in its own words. Where `folder`
    has less room left than the `needed` bytes, it is the OSError ENOSPC on which a batch ends (the
    next case would fail alike), not a failure of the input; else `error` as it is."""
    if shutil.disk_usage(folder).free < needed:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(folder))
    return error


def _extension(path: Path) -> str:
    return ".nii.gz" if path.name.lower().endswith(".nii.gz") else path.suffix


def leftover_pid(name: str, target: str | None = None) -> int | None:
    """The process whose temporary `name` is, where it is named exactly as `temporary_name` names them:
    `.<target>.tmp<pid>-<token>`, then nothing or the target's own extension (and, given, of the file
    named `target`); else None."""
    file = LEFTOVER.fullmatch(name)
    ours = file and file[3] in ("", _extension(Path(file[1]))) and target in (None, file[1])
    return int(file[2]) if ours else None


def temporary_name(path: Path, extension: str = "") -> Path:
    """A name beside `path` for a temporary file of this process (`remove_leftovers` knows it)."""
    return path.with_name(f".{path.name}.tmp{os.getpid()}-{secrets.token_hex(4)}{extension}")


def atomic_write_text(path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def remove_leftovers(folder, target: str | None = None) -> list[Path]:
    """Delete the temporary files and staging folders (with their partial files, e.g. a half-written
    scene bundle) that writers which no longer run left in `folder` (a killed run); returns them.
    Given a `target` name, only that file's temporaries: a single file written into a user's folder.
    A live process's files and anything not named by `atomic_path` or staging stay."""
    removed = []
    for p in Path(folder).iterdir() if Path(folder).is_dir() else []:
        staging = LEFTOVER_STAGING.match(p.name) if p.is_dir() and not p.is_symlink() and target is None else None
        pid = leftover_pid(p.name, target) if p.is_file() else int(staging[1]) if staging else None
        if pid is not None and not writing(pid):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def writing(pid: int) -> bool:
    """Whether process `pid` may still write its files: it runs. A zombie (dead, not yet reaped by its
    parent, as a Dask worker killed mid-write is for a moment) writes nothing more."""
    import psutil  # here, not at the top: on Linux it imports POSIX-only `resource`, and the CLI imports this file

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
