"""Model folders edited on purpose: a copy of a model whose manifest (and weights) an edit changed,
with the file hashes and the (unkeyed) seal made again, as whoever edits a model folder can."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from safetensors.torch import load_file, save_file

from SSLAnomalyLib.core.model_files import registry
from SSLAnomalyLib.core.model_files.model_folder import FORMAT_VERSION, MANIFEST, WEIGHTS, sha256
from SSLAnomalyLib.core.model_files.signing import digest


def resealed(name: str, folder: Path, edit=None, edit_tensors=None) -> Path:
    """A copy at `folder` of the bundled model `name`; `edit(manifest dict)` and `edit_tensors({name:
    tensor})` change it in place, and the hashes and seal are made again."""
    folder = shutil.copytree(registry.MODELS_DIR / name, folder)
    if edit_tensors is not None:
        tensors = load_file(str(folder / WEIGHTS))
        edit_tensors(tensors)
        save_file(tensors, str(folder / WEIGHTS), metadata={"format_version": str(FORMAT_VERSION)})
    document = json.loads((folder / MANIFEST).read_text())
    if edit is not None:
        edit(document)
    document["files"] = {name: sha256(folder / name) for name in document["files"]}
    document["manifest_sha256"] = digest(document)
    (folder / MANIFEST).write_text(json.dumps(document))
    return folder
