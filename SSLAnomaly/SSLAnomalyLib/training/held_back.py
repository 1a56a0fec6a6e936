"""Held-back normals (`--val-normals`) that are also training normals are not held back: scored by a
reference that holds them, and counted twice among the calibration normals, they make a threshold
look steadier than the distinct normals behind it allow."""

from __future__ import annotations

import os
from pathlib import Path

from SSLAnomalyLib.core.reading.images import ReadError, as_folders
from SSLAnomalyLib.training.feature_cache import normal_files


def same_image_keys(f: Path) -> tuple[tuple, tuple]:
    """What makes two paths one image: one file (a link, a folder given twice), or a copy (the same
    name and byte size)."""
    st = os.stat(f)
    return (st.st_dev, st.st_ino), (f.name, st.st_size)


def check_held_back(normals, val_normals) -> None:
    """Refuse `val_normals` (folders) holding any of `normals`' images, naming how many and a few."""
    seen = {key for f in normal_files(normals) for key in same_image_keys(f)}
    shared = [f for f in normal_files(val_normals) if any(key in seen for key in same_image_keys(f))]
    if shared:
        raise ReadError(", ".join(as_folders(val_normals)),
                        f"{len(shared)} of these held-back normals are also in --normals (e.g. "
                        f"{', '.join(f.name for f in shared[:3])}): give --val-normals images the training never sees")
