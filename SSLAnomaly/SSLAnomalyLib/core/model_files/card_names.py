"""How a model card names files and folders. A card travels with the model to other sites: it
names them by their base names, never by a path on the machine that made it."""

from __future__ import annotations

import ntpath
import os

FEW_NAMED = 10  # files a card names one by one; more are counted, and the manifest names each


def base_name(path: str) -> str:
    """A path's last part, whichever separator the machine that wrote it used."""
    return ntpath.basename(path.rstrip("/\\")) or path


def folders(text: str) -> str:
    """Folders joined by os.pathsep (as manifests hold them), by their base names, or by their last
    two parts where base names repeat (`train/normal, val/normal`)."""
    paths = text.split(os.pathsep)
    names = [base_name(f) for f in paths]
    if len(set(names)) == len(names):
        return ", ".join(names)
    parents = [base_name(ntpath.dirname(f.rstrip("/\\"))) for f in paths]
    return ", ".join(f"{parent}/{name}" for parent, name in zip(parents, names))


def named(files: list[str], manifest_field: str) -> str:
    """A few files by their base names; many, by where the manifest names each."""
    if len(files) > FEW_NAMED:
        return f"each named in the manifest's `{manifest_field}`"
    return ", ".join(f"`{base_name(f)}`" for f in files)
