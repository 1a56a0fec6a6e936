"""Scores on a GPU are computed in full float32, as the CPU's that thresholds were set on: torch's
default lets cuDNN's convolutions use TF32 (10 bits of float32's 23), enough to flip a verdict near
the threshold. No GPU here: CUDA is said to be there, and the device chosen turns TF32 off."""

import pytest
import torch

from SSLAnomalyLib.core.model.device import select_device


@pytest.fixture
def tf32_on():
    """torch's defaults, put back afterwards (a process-wide setting)."""
    kept = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = kept


@pytest.mark.parametrize("requested", ["auto", "cuda", "cuda:0"])  # cuda:0: a training rank's own GPU
def test_choosing_a_gpu_turns_tf32_off(requested, tf32_on, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert select_device(requested).type == "cuda"
    assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32


def test_the_cpu_leaves_the_gpu_settings_alone(tf32_on):
    assert select_device("cpu").type == "cpu" and torch.backends.cudnn.allow_tf32
