"""Byte-for-byte copies among image files: one normal saved twice under two names (an export run twice,
a folder copied into another) is one normal, and counting it twice makes a reference lean towards it
and a threshold look steadier than the distinct images behind it allow. Only files of a size another
file has are read, so a folder of distinct images costs one `stat` each."""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from pathlib import Path


def _digest(path: Path) -> str:
    with open(path, "rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def byte_copies(files: list[Path], originals: list[Path] | None = None) -> dict[Path, Path]:
    """{copy: the file it copies}: each of `files` whose bytes equal those of an earlier one of `files`,
    or, given `originals`, those of one of `originals` (then `files` are only compared with them)."""
    by_size: dict[int, list[Path]] = defaultdict(list)
    digests: dict[Path, str] = {}

    def digest(path: Path) -> str:
        if path not in digests:
            digests[path] = _digest(path)
        return digests[path]

    for g in originals or []:
        by_size[os.stat(g).st_size].append(g)
    copies = {}
    for f in files:
        bucket = by_size[os.stat(f).st_size]
        match = next((g for g in bucket if digest(g) == digest(f)), None) if bucket else None
        if match is not None:
            copies[f] = match
        elif originals is None:
            bucket.append(f)
    return copies
