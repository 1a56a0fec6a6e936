"""A file's SHA-256, read a block at a time: what a model folder's manifest records of its files, a
batch index of its inputs, a volume node of the review files it holds, and a copy check of two normals compare."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256(path: Path) -> str:
    with open(path, "rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()
