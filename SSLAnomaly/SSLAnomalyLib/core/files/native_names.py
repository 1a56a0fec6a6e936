"""Paths handed to C++ libraries (SimpleITK): they take a path as UTF-8 text, which a path can only
be where its bytes are that text. Under a non-UTF-8 locale (LC_ALL=C without Python's UTF-8 mode)
a non-ASCII name is held with surrogates that cannot be encoded: SimpleITK then aborts the whole
process. Such a file is reached through a link, under a plain name, to its folder."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from SSLAnomalyLib.core.files.atomic import temporary_name


def native_safe(path) -> bool:
    """Whether a C++ library given `str(path)` as UTF-8 opens this very file."""
    try:
        return str(path).encode("utf-8") == os.fsencode(path)
    except UnicodeEncodeError:
        return False


@contextlib.contextmanager
def plain_folder(folder):
    """`folder` itself, or where it cannot be named to a C++ library, a link to it under a plain name
    in a temporary folder (files written through it land in `folder`)."""
    folder = Path(folder)
    if native_safe(folder):
        yield folder
        return
    with tempfile.TemporaryDirectory(prefix="sslanomaly-name-") as tmp:
        link = Path(tmp) / "folder"
        link.symlink_to(folder.resolve(), target_is_directory=True)
        yield link


@contextlib.contextmanager
def plain_target(path, extension: str = ""):
    """A path a C++ library can write to that becomes `path` when the block ends (a plainly named
    temporary beside it, named as `atomic.temporary_name` names them, so a killed run's is cleared)."""
    path = Path(path)
    if native_safe(path):
        yield path
        return
    plain = temporary_name(Path(f"plain{extension}"), extension).name
    try:
        with plain_folder(path.parent) as folder:
            yield folder / plain
        os.replace(path.parent / plain, path)
    finally:
        (path.parent / plain).unlink(missing_ok=True)
