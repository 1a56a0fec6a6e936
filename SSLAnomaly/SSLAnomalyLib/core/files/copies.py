"""Byte-for-byte copies of one set of image files in another: a held-back normal that is a training
normal saved again (an export run twice, a folder copied into another) is no held-back normal. Only
files of a size both sets have are read, so two sets of distinct images cost one `stat` a file, and
two exports of other images that merely share names and sizes (IM-0001.dcm) are told apart."""

from __future__ import annotations

import os
from collections import defaultdict
from functools import lru_cache
from pathlib import Path

from SSLAnomalyLib.core.files.digest import sha256


def byte_copies(files: list[Path], originals: list[Path]) -> dict[Path, Path]:
    """{copy: the original it copies}: each of `files` whose bytes equal those of one of `originals`
    (the same file through a link included)."""
    by_size: dict[int, list[Path]] = defaultdict(list)
    for g in originals:
        by_size[os.stat(g).st_size].append(g)
    digest = lru_cache(maxsize=None)(sha256)
    copies = {}
    for f in files:
        match = next((g for g in by_size.get(os.stat(f).st_size, []) if digest(g) == digest(f)), None)
        if match is not None:
            copies[f] = match
    return copies
