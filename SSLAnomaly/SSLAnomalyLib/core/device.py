"""The torch device a command runs on, in one place so that inference never imports the trainer."""

from __future__ import annotations

import torch


def select_device(requested: str = "auto") -> torch.device:
    """'auto': CUDA where there is a GPU, else the CPU; 'cuda' without a GPU is an error."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but no CUDA device is available")
    return torch.device(requested)
