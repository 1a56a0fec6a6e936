"""The checkpoint of an unfinished run (`train`, `train-anatomy`) that was cut short or edited is
refused naming the file, why, and that --restart discards it: before, each damage was a traceback
(SafetensorError, JSONDecodeError, KeyError 'state', a state_dict RuntimeError)."""

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from SSLAnomalyLib.core.model.encoder import EncoderConfig
from SSLAnomalyLib.training.checkpoint_file import DamagedCheckpoint
from SSLAnomalyLib.training.lung_checkpoint import LungRun, LungRunState
from SSLAnomalyLib.training.objectives import Pretext
from SSLAnomalyLib.training.trainer import TrainConfig, Trainer


def cut_short(path):
    path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])


def rewritten(path, tensors=None, **metadata):
    """The checkpoint with its tensors (by default all but one of the network's) and metadata fields
    replaced (None removes one)."""
    with safe_open(str(path), "pt") as f:
        meta = dict(f.metadata(), **metadata)
    if tensors is None:
        tensors = load_file(str(path))
        del tensors[next(k for k in tensors if k.startswith("model.") and k.endswith(".weight"))]
    save_file(tensors, str(path), metadata={k: v for k, v in meta.items() if v is not None})


DAMAGE = {"cut short": (cut_short, "SafetensorError"),
          "identity not JSON": (lambda p: rewritten(p, load_file(str(p)), identity="{not json"), "JSONDecodeError"),
          "no state": (lambda p: rewritten(p, load_file(str(p)), state=None), "KeyError: 'state'"),
          "state emptied": (lambda p: rewritten(p, load_file(str(p)), state="{}"), "ValueError: its state lacks"),
          "a tensor missing": (rewritten, "RuntimeError")}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_training_checkpoint_is_refused_by_name(tmp_path, damage):
    rng = np.random.default_rng(0)
    images, lungs = rng.random((8, 64, 64), dtype=np.float32), np.ones((8, 64, 64), bool)

    def trainer(steps):
        cfg = TrainConfig(minutes=10, batch_size=4, max_steps=steps, eval_every=10**6)
        return Trainer(EncoderConfig(input_size=64), Pretext(), cfg, tmp_path, device="cpu")

    trainer(1).fit(images, lungs, progress=False)
    damage_it, reason = DAMAGE[damage]
    damage_it(tmp_path / "checkpoint.safetensors")
    with pytest.raises(DamagedCheckpoint, match=rf"checkpoint.safetensors: is damaged and cannot be resumed "
                                                rf"\({reason}.*add --restart to discard it"):
        trainer(2).fit(images, lungs, progress=False)


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_lung_training_checkpoint_is_refused_by_name(tmp_path, damage):
    def run():
        net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 1))
        return LungRun(tmp_path, {"seed": 0}), net, torch.optim.AdamW(net.parameters())

    lung_run, net, opt = run()
    net(torch.ones(2, 3)).sum().backward()
    opt.step()
    lung_run.save(net, opt, LungRunState(step=1))
    damage_it, reason = DAMAGE[damage]
    damage_it(lung_run.path)
    lung_run, net, opt = run()
    with pytest.raises(DamagedCheckpoint, match=rf"is damaged and cannot be resumed \({reason}"):
        lung_run.resume(net, opt)
