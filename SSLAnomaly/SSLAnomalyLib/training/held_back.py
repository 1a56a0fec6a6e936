"""Held-back normals (`--val-normals`) that are also training normals are not held back: scored by a
reference that holds them, and counted twice among the calibration normals, they make a threshold
look steadier than the distinct normals behind it allow."""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from pathlib import Path

from SSLAnomalyLib.core.reading.images import ReadError, as_folders
from SSLAnomalyLib.training.feature_cache import normal_files


def _digest(f: Path) -> str:
    with open(f, "rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def shared_images(normals: list[Path], held_back: list[Path]) -> list[Path]:
    """The `held_back` files that are one of `normals`: the same file (a link, a folder given twice) or
    a copy (the same bytes). Only files of a size both sides have are read, so two exports of
    different images that merely share names and sizes (0001.dcm...) are told apart."""
    inodes, by_size = set(), defaultdict(list)
    for f in normals:
        st = os.stat(f)
        inodes.add((st.st_dev, st.st_ino))
        by_size[st.st_size].append(f)
    digests: dict[int, set[str]] = {}
    shared = []
    for f in held_back:
        st = os.stat(f)
        if (st.st_dev, st.st_ino) in inodes:
            shared.append(f)
        elif st.st_size in by_size:
            if st.st_size not in digests:
                digests[st.st_size] = {_digest(g) for g in by_size[st.st_size]}
            if _digest(f) in digests[st.st_size]:
                shared.append(f)
    return shared


def check_held_back(normals, val_normals) -> None:
    """Refuse `val_normals` (folders) holding any of `normals`' images, naming how many and a few."""
    shared = shared_images(normal_files(normals), normal_files(val_normals))
    if shared:
        raise ReadError(", ".join(as_folders(val_normals)),
                        f"{len(shared)} of these held-back normals are also in --normals (e.g. "
                        f"{', '.join(f.name for f in shared[:3])}): give --val-normals images the training never sees")
