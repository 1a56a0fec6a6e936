"""Reading back the checkpoint of an unfinished run (`train`, `train-anatomy`): one safetensors file
with the run's identity and state as JSON in its metadata. One damaged (cut short, its metadata or
tensors not those of a run) is refused naming the file, why, and that --restart discards it; a
traceback would leave the user with no remedy but deleting files by hand."""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from SSLAnomalyLib.core.files.errors import PathError


class DamagedCheckpoint(PathError):
    prefix = "training checkpoint "


@contextmanager
def reading(path: Path):
    """Whatever fails in the block while a checkpoint is read back (and put into the networks) is
    the checkpoint's damage."""
    try:
        yield
    except (SafetensorError, OSError, ValueError, KeyError, TypeError, RuntimeError) as e:
        why = " ".join(str(e).split())  # torch's state_dict errors run over several lines
        raise DamagedCheckpoint(path, f"is damaged and cannot be resumed ({type(e).__name__}: {why}); add --restart "
                                      "to discard it and start afresh") from None


def read(path: Path, state_keys) -> tuple[dict, dict, dict[str, torch.Tensor]]:
    """(identity, state, tensors) of the checkpoint at `path`, its state holding at least `state_keys`."""
    with reading(path):
        identity, state = _run(path)
        missing = sorted(set(state_keys) - set(state))
        if missing:
            raise ValueError(f"its state lacks {', '.join(missing)}")
        return identity, state, load_file(str(path))


def _run(path: Path) -> tuple[dict, dict]:
    """(identity, state) of the checkpoint at `path`, its tensors unread."""
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    identity, state = json.loads(meta["identity"]), json.loads(meta["state"])
    if not isinstance(identity, dict) or not isinstance(state, dict):
        raise ValueError("its identity and state are not JSON objects")
    return identity, state


def wrote(path: Path, manifest: Path, seconds: str) -> bool:
    """Whether the run whose checkpoint is at `path` wrote the model of `manifest` as it finished (stopped
    as it removed its checkpoints): the manifest's training records the checkpoint's steps and training
    seconds (under `seconds`, to 0.1 s). A model another command put there since (calibrate, merge, a
    copy of another) records other training, or none; a damaged file is no proof."""
    try:
        training = json.loads(manifest.read_text(encoding="utf-8"))["training"]
        with reading(path):
            state = _run(path)[1]
        return training["steps"] == state["step"] and training[seconds] == round(state["seconds"], 1)
    except (OSError, ValueError, KeyError, TypeError, DamagedCheckpoint):
        return False
