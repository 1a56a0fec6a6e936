"""Held-back normals (`--val-normals`) that are also training normals are not held back: scored by a
reference that holds them, and counted twice among the calibration normals, they make a threshold
look steadier than the distinct normals behind it allow."""

from __future__ import annotations

from SSLAnomalyLib.core.files.copies import byte_copies
from SSLAnomalyLib.core.reading.images import ReadError, as_folders
from SSLAnomalyLib.training.feature_cache import normal_files


def check_held_back(normals, val_normals) -> None:
    """Refuse `val_normals` (folders) holding any of `normals`' images (the same file through a link,
    or a copy of its bytes; another image of the same name and size is no copy), naming a few."""
    shared = list(byte_copies(normal_files(val_normals), originals=normal_files(normals)))
    if shared:
        raise ReadError(", ".join(as_folders(val_normals)),
                        f"{len(shared)} of these held-back normals are also in --normals (e.g. "
                        f"{', '.join(f.name for f in shared[:3])}): give --val-normals images the training never sees")
