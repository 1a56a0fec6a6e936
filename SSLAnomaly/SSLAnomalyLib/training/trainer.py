"""Self-supervised training of the encoder on normal radiographs only.

Each step draws a batch of normals, and every objective of the pretext (objectives.py: synthetic
anomalies, contrastive views, masked patches, patch positions, jigsaw) builds its inputs from that
draw; the loss is their weighted sum. Only the shared encoder is kept.

Checkpoints are safetensors (weights and SGD momentum) plus a JSON state, written atomically, so a
run stopped at any time resumes where it was. The kept checkpoint is chosen by a normal-only
signal (see `selection.py`), never by abnormal labels.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from scipy import ndimage
from tqdm import tqdm

from SSLAnomalyLib.core.atomic import atomic_path, atomic_write_text
from SSLAnomalyLib.core.device import place, select_device
from SSLAnomalyLib.core.encoder import EncoderConfig, build_encoder
from SSLAnomalyLib.training.defaults import LR
from SSLAnomalyLib.training.foreign_objects import draw_foreign_objects
from SSLAnomalyLib.training.objectives import Pretext




@dataclass(frozen=True)
class TrainConfig:
    minutes: float = 30.0
    batch_size: int = 32
    lr: float = LR
    momentum: float = 0.9
    weight_decay: float = 3e-5
    seed: int = 0
    eval_every: int = 100   # steps between normal-only checkpoint evaluations
    max_steps: int | None = None
    foreign_objects: float = 0.0  # share of training views with electrodes, leads and tubes drawn on

    def to_dict(self) -> dict:
        return asdict(self)


def augment(image: np.ndarray, rng: np.random.Generator, objects: float = 0.0) -> np.ndarray:
    """The acquisition changes a normal radiograph has between sites and sessions, so the encoder
    learns to ignore them: field of view (zoom 0.85-1.3, i.e. about 77-118 % of the view), position,
    a small rotation, exposure (gamma 0.67-1.5), contrast and brightness, and sometimes blur or noise;
    with probability `objects`, electrodes, leads, tubes and a marker plate (foreign_objects.py) are
    drawn first. JPEG re-compression, lower resolution and burned-in text are deliberately left out,
    so the shift evaluation (`evaluate --perturb`) keeps families the training never saw."""
    if objects and rng.random() < objects:
        image = draw_foreign_objects(image, rng)
    n = image.shape[0]
    angle = np.deg2rad(rng.uniform(-7, 7))
    scale = np.exp(rng.uniform(np.log(0.85), np.log(1.3)))
    shift = rng.uniform(-0.06, 0.06, size=2) * n
    c, s = np.cos(angle) / scale, np.sin(angle) / scale
    matrix = np.array([[c, -s], [s, c]])
    centre = np.array([n / 2, n / 2])
    offset = centre - matrix @ (centre + shift)
    out = np.clip(ndimage.affine_transform(image, matrix, offset=offset, order=1, mode="nearest"), 0, 1)
    out = out ** np.exp(rng.uniform(-0.4, 0.4))
    out = (out - 0.5) * rng.uniform(0.8, 1.2) + 0.5 + rng.uniform(-0.05, 0.05)
    if rng.random() < 0.2:
        out = ndimage.gaussian_filter(out, rng.uniform(0.3, 1.0))
    if rng.random() < 0.2:
        out = out + rng.normal(0, rng.uniform(0.005, 0.03), out.shape)
    return np.clip(out, 0, 1).astype(np.float32)


class PretextModel(torch.nn.Module):
    """The shared encoder plus each objective with its heads (objectives.py)."""

    def __init__(self, encoder_cfg: EncoderConfig, pretext: Pretext):
        super().__init__()
        self.encoder = build_encoder(encoder_cfg, num_classes=2)
        self.objectives = pretext.build(encoder_cfg)


class Trainer:
    """Fit the encoder on normal images; `fit` returns the chosen encoder's state dict."""

    def __init__(self, encoder_cfg: EncoderConfig, pretext: Pretext, train_cfg: TrainConfig,
                 work_dir: Path, device: str = "auto",
                 select: Callable[[torch.nn.Module], float] | None = None,
                 initial_state: dict[str, torch.Tensor] | None = None):
        self.encoder_cfg, self.pretext, self.cfg = encoder_cfg, pretext, train_cfg
        self.work_dir = Path(work_dir)
        self.device = select_device(device)
        self.select = select  # normal-only score of an encoder, higher is better
        self.initial_state = initial_state  # encoder weights to start from instead of random ones

    def losses(self, model: PretextModel, images, lungs, rng) -> dict[str, torch.Tensor]:
        """Each objective's loss on one seeded draw of normals (the same draw for all of them; distinct
        images where there are enough, so that contrastive negatives are other radiographs)."""
        idx = rng.choice(len(images), self.cfg.batch_size, replace=self.cfg.batch_size > len(images))
        views = partial(augment, objects=self.cfg.foreign_objects)
        return {name: objective.loss(model.encoder, objective.batch(images[idx], lungs[idx], rng, views), self.device)
                for name, objective in model.objectives.items()}

    def _paths(self):
        ck = self.work_dir / "checkpoints"
        return ck / "last.safetensors", ck / "best.safetensors", ck / "state.json"

    def fit(self, images: np.ndarray, lungs: np.ndarray, progress: bool = True) -> dict:
        torch.manual_seed(self.cfg.seed)
        model = PretextModel(self.encoder_cfg, self.pretext)
        if self.initial_state is not None:
            model.encoder.load_state_dict(self.initial_state)
        model = place(model, self.device)
        opt = torch.optim.SGD(model.parameters(), lr=self.cfg.lr, momentum=self.cfg.momentum,
                              weight_decay=self.cfg.weight_decay)
        last, best, state_path = self._paths()
        state = {"step": 0, "seconds": 0.0, "best_signal": None, "best_step": None, "history": [],
                 "history_columns": ["step"] + list(model.objectives)}
        weights = self.pretext.weights()
        if state_path.exists() and last.exists():
            state = json.loads(state_path.read_text())
            self._load(model, opt, last)
        rng = np.random.default_rng([self.cfg.seed, state["step"]])
        budget = self.cfg.minutes * 60
        use_amp = self.device.type == "cuda"
        scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
        bar = tqdm(total=int(budget), initial=int(state["seconds"]), unit="s", disable=not progress,
                   desc="training", bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt}s {postfix}")
        if state["step"] == 0:
            self._checkpoint(model, opt, state)  # the random initialisation is a candidate too
        t_last = time.time()
        while state["seconds"] < budget and (self.cfg.max_steps is None or state["step"] < self.cfg.max_steps):
            model.train()
            lr = self.cfg.lr * 0.5 * (1 + np.cos(np.pi * self._progress(state, budget)))
            for g in opt.param_groups:
                g["lr"] = lr
            with torch.autocast(self.device.type, dtype=torch.float16, enabled=use_amp):
                losses = self.losses(model, images, lungs, rng)
                loss = sum(weights[name] * value for name, value in losses.items())
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            state["step"] += 1
            now = time.time()
            state["seconds"] += now - t_last
            t_last = now
            state["history"].append([state["step"]] + [round(v.item(), 4) for v in losses.values()])
            bar.n = min(int(state["seconds"]), int(budget))
            bar.set_postfix(step=state["step"], loss=f"{loss.item():.3f}")
            if state["step"] % self.cfg.eval_every == 0:
                self._checkpoint(model, opt, state)
                t_last = time.time()
        bar.close()
        self._checkpoint(model, opt, state)
        chosen = best if best.exists() else last
        weights = load_file(str(chosen))
        return {k[len("model.encoder."):]: v for k, v in weights.items() if k.startswith("model.encoder.")}

    def _progress(self, state: dict, budget: float) -> float:
        """How far through its budget the run is (0 to 1), for the cosine learning rate: the time
        spent, or the steps taken where `max_steps` ends the run sooner, so that a step-limited run
        follows the same schedule on a fast or a busy machine."""
        done = state["seconds"] / budget if budget > 0 else 1.0
        if self.cfg.max_steps is not None:
            done = max(done, state["step"] / self.cfg.max_steps)
        return min(1.0, done)

    def state(self) -> dict:
        """The saved training state (steps, seconds, selection signals, chosen step)."""
        return json.loads(self._paths()[2].read_text())

    def _checkpoint(self, model, opt, state):
        """Save last (and best by the normal-only signal) atomically; never pickles."""
        last, best, state_path = self._paths()
        last.parent.mkdir(parents=True, exist_ok=True)
        tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        for i, p in enumerate(opt.param_groups[0]["params"]):
            buf = opt.state.get(p, {}).get("momentum_buffer")
            if buf is not None:
                tensors[f"opt.{i}"] = buf.detach().cpu().contiguous()
        _atomic_save(tensors, last)
        if self.select is not None:
            model.eval()
            signal = float(self.select(model.encoder))
            state["signals"] = state.get("signals", []) + [[state["step"], round(signal, 4)]]
            if state["best_signal"] is None or signal > state["best_signal"]:
                state["best_signal"], state["best_step"] = signal, state["step"]
                _atomic_save(tensors, best)
        atomic_write_text(state_path, json.dumps(state))

    def _load(self, model, opt, path):
        tensors = load_file(str(path))
        model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
        for i, p in enumerate(opt.param_groups[0]["params"]):
            if f"opt.{i}" in tensors:
                opt.state[p]["momentum_buffer"] = tensors[f"opt.{i}"].to(p.device)


def _atomic_save(tensors: dict, path: Path) -> None:
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp))
