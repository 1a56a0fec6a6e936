"""Writing a set of files all-or-nothing and without silently replacing what is there.

Files are first written into a hidden staging folder beside their targets and moved into place
only when every one was written, so a failed export leaves no half-written result; an existing
target is an error unless the caller asked to overwrite. The staging folder carries the process id,
so that the next batch into the folder removes what a killed run left (atomic.remove_leftovers).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from SSLAnomalyLib.core.files.atomic import STAGING_PREFIX


@contextlib.contextmanager
def staged_files(targets: dict[str, Path], overwrite: bool = False):
    """Yield {key: staging path} for {key: target path}; on success move each staged file that
    was written onto its target. When overwriting, a key left unwritten (no SEG: every finding
    rejected) removes its target: the earlier write's file would stand beside the new set as its own."""
    existing = [str(p) for p in targets.values() if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"not overwriting existing file(s): {', '.join(existing)} (ask to overwrite)")
    out_dirs = {p.parent for p in targets.values()}
    for d in out_dirs:
        existing = next(p for p in (d, *d.parents) if p.exists())
        if not existing.is_dir():
            raise NotADirectoryError(f"{existing}: is a file, not a folder (asked to write into {d}); choose a folder")
        d.mkdir(parents=True, exist_ok=True)
    staging = {d: Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=d)) for d in out_dirs}
    try:
        staged = {key: staging[p.parent] / p.name for key, p in targets.items()}
        yield staged
        for key, target in targets.items():
            if staged[key].exists():
                if target.exists() and not overwrite:
                    raise FileExistsError(f"not overwriting {target}: it appeared while writing")
                os.replace(staged[key], target)
            elif overwrite and target.exists():
                target.unlink()
    finally:
        for d in staging.values():
            shutil.rmtree(d, ignore_errors=True)
