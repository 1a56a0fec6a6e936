"""The unfinished run of `sslanomaly train-anatomy`, kept beside the lung model folder (`OUT.work`,
as `train` keeps its own) so that Ctrl-C, SIGTERM or a killed process costs the steps since the last
save, not the whole budget: the same command resumes it.

One safetensors file written atomically (weights, AdamW's moments, the run's step, seconds and loss
history in its metadata), the only format it reads back. A checkpoint of other settings (images, masks, seed, size,
batch, disease drawing) is never resumed: the budget alone may grow.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file

from SSLAnomalyLib.core.files.atomic import atomic_path
from SSLAnomalyLib.core.files.errors import PathError
from SSLAnomalyLib.core.files.json_text import dumps, strict
from SSLAnomalyLib.training import checkpoint_file

CHECKPOINT = "lungs-checkpoint.safetensors"
SAVE_EVERY_SECONDS = 60.0


class LungRunMismatch(PathError):
    prefix = "lung training checkpoint "


@dataclass
class LungRunState:
    step: int = 0
    seconds: float = 0.0  # training seconds spent, over every process of the run
    history: list = field(default_factory=list)  # [step, loss] every 20 steps


class LungRun:
    """The checkpoint of one run of `train-anatomy` in `work_dir`, for the settings in `identity`."""

    def __init__(self, work_dir: Path, identity: dict, restart: bool = False):
        self.work_dir, self.identity = Path(work_dir), strict(identity)  # as written, and so as read back
        if restart:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    @property
    def path(self) -> Path:
        return self.work_dir / CHECKPOINT

    def resume(self, net: torch.nn.Module, opt: torch.optim.Optimizer) -> LungRunState | None:
        """Load the run into `net` and `opt` and return its state; None where there is none."""
        if not self.path.exists():
            return None
        saved, state, tensors = checkpoint_file.read(self.path, LungRunState.__dataclass_fields__)
        if saved != self.identity:
            changed = ", ".join(sorted(k for k in saved.keys() | self.identity.keys() if saved.get(k) != self.identity.get(k)))
            raise LungRunMismatch(self.work_dir, f"holds an unfinished run of other {changed}; it is never resumed "
                                                 "with other settings: add --restart to discard it, or write to another --out")
        with checkpoint_file.reading(self.path):
            net.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
            moments = {}
            for key, value in tensors.items():
                if key.startswith("opt."):
                    _, index, name = key.split(".")
                    moments.setdefault(int(index), {})[name] = value
            opt.load_state_dict({"state": moments, "param_groups": opt.state_dict()["param_groups"]})
            return LungRunState(**state)

    def save(self, net: torch.nn.Module, opt: torch.optim.Optimizer, state: LungRunState) -> None:
        tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
        for index, moments in opt.state_dict()["state"].items():
            tensors.update({f"opt.{index}.{name}": torch.as_tensor(v).detach().cpu().contiguous()
                            for name, v in moments.items()})
        self.work_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path) as tmp:
            save_file(tensors, str(tmp), metadata={"state": json.dumps(state.__dict__), "identity": dumps(self.identity)})

    def finish(self) -> None:
        """The model folder is complete: the run's checkpoint goes."""
        shutil.rmtree(self.work_dir, ignore_errors=True)
