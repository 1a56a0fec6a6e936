"""Self-supervised training of the encoder on normal radiographs only.

Each step draws a batch of normals, and every objective of the pretext (objectives.py: synthetic
anomalies, contrastive views, masked patches, patch positions, jigsaw) builds its inputs from that
draw; the loss is their weighted sum. Only the shared encoder is kept.

The checkpoint is one safetensors file (weights, SGD momentum, the best encoder so far, and the run
state and identity as metadata) written atomically, so a run stopped at any time resumes from one
consistent step, and only a run of the same identity resumes it. The kept encoder (with, for `mae`,
the decoder of the same step: the `reconstruction` score component) is chosen by a normal-only
signal (see `selection.py`), never by abnormal labels; a frozen encoder (`freeze_encoder`) trains
only the heads, and the last step's are kept. Under `torchrun` each rank trains on its share of
every batch (distributed.py).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors.torch import save_file
from scipy import ndimage
from torch.nn.parallel import DistributedDataParallel

from SSLAnomalyLib.core.files.atomic import atomic_path
from SSLAnomalyLib.core.files.errors import PathError
from SSLAnomalyLib.core.model.device import place, select_device
from SSLAnomalyLib.core.model.encoder import EncoderConfig, build_encoder
from SSLAnomalyLib.training import checkpoint_file
from SSLAnomalyLib.training.defaults import LR
from SSLAnomalyLib.training.distributed import Ranks
from SSLAnomalyLib.training.foreign_objects import draw_foreign_objects
from SSLAnomalyLib.training.objectives import MAE, Pretext
from SSLAnomalyLib.training.progress import Progress


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
    """The shared encoder plus each objective with its heads (objectives.py). `forward` takes each
    objective's batch and returns each one's loss, so that DistributedDataParallel sees the step."""

    def __init__(self, encoder_cfg: EncoderConfig, pretext: Pretext):
        super().__init__()
        self.encoder = build_encoder(encoder_cfg, num_classes=2)
        self.objectives = pretext.build(encoder_cfg)

    @property
    def decoder(self) -> torch.nn.Module | None:
        """MAE's decoder, which scoring keeps with the encoder (None without the `mae` objective)."""
        return self.objectives[MAE].decode if MAE in self.objectives else None

    def forward(self, batches: dict, device) -> dict[str, torch.Tensor]:
        return {name: objective.loss(self.encoder, batches[name], device) for name, objective in self.objectives.items()}


class RunMismatch(PathError):
    """Checkpoints of another run (other normals, pretext, encoder, seed or start) where this one
    would resume."""

    prefix = "training checkpoints "


class Trainer:
    """Fit the encoder on normal images; `fit` returns the chosen encoder's state dict (None on the
    ranks other than 0 of a multi-process run) and `decoder_state()` MAE's decoder of the same step."""

    def __init__(self, encoder_cfg: EncoderConfig, pretext: Pretext, train_cfg: TrainConfig,
                 work_dir: Path, device: str = "auto",
                 select: Callable[[torch.nn.Module], float] | None = None,
                 initial_state: dict[str, torch.Tensor] | None = None,
                 identity: dict | None = None, ranks: Ranks = Ranks(),
                 initial_decoder: dict[str, torch.Tensor] | None = None, freeze_encoder: bool = False):
        self.encoder_cfg, self.pretext, self.cfg = encoder_cfg, pretext, train_cfg
        self.work_dir = Path(work_dir)
        self.ranks = ranks
        self.device = select_device(ranks.device(device))
        self.select = select  # normal-only score of an encoder, higher is better
        self.initial_state = initial_state  # encoder weights to start from instead of random ones
        self.initial_decoder = initial_decoder  # and the starting model's MAE decoder, where it has one
        self.freeze_encoder = freeze_encoder  # only the objectives' heads train; the encoder stays initial_state
        self.best_decoder = None
        # what makes a run this run: a checkpoint of anything else is never resumed (the budget may grow)
        self.identity = {"pretext": pretext.to_dict(), "widths": list(encoder_cfg.widths),
                         "layers": list(encoder_cfg.layers), "input_size": encoder_cfg.input_size,
                         **{k: v for k, v in train_cfg.to_dict().items() if k not in ("minutes", "max_steps", "eval_every")},
                         **({"freeze_encoder": True} if freeze_encoder else {}), **(identity or {})}

    @property
    def checkpoint(self) -> Path:
        """Weights, momentum, the best encoder so far and the run state, in one file written atomically."""
        return checkpoint_in(self.work_dir)

    def batches(self, model: PretextModel, images, lungs, step: int) -> dict:
        """Each objective's inputs for one step: the same seeded draw of normals on every rank, each
        rank its own share of it (distinct images where there are enough, so that contrastive
        negatives are other radiographs), augmented with the rank's own seeded draws."""
        rng = np.random.default_rng([self.cfg.seed, step])
        idx = self.ranks.shard(rng.choice(len(images), self.cfg.batch_size, replace=self.cfg.batch_size > len(images)))
        rng = np.random.default_rng([self.cfg.seed, step, self.ranks.rank])
        views = partial(augment, objects=self.cfg.foreign_objects)
        return {name: objective.batch(images[idx], lungs[idx], rng, views) for name, objective in model.objectives.items()}

    def fit(self, images: np.ndarray, lungs: np.ndarray, progress: bool = True) -> dict | None:
        torch.manual_seed(self.cfg.seed)
        net = PretextModel(self.encoder_cfg, self.pretext)
        if self.initial_state is not None:
            net.encoder.load_state_dict(self.initial_state)
        if self.initial_decoder and net.decoder is not None:
            net.decoder.load_state_dict(self.initial_decoder)
        budget = self.cfg.minutes * 60
        self.run_state = {"step": 0, "seconds": 0.0, "best_signal": None, "best_step": None, "history": []}
        if budget <= 0:  # nothing to train: the starting encoder, and its decoder, as they are
            self.best_decoder = self.initial_decoder or None
            return {k: v.detach().clone() for k, v in net.encoder.state_dict().items()}
        net = place(net, self.device)
        net.encoder.requires_grad_(not self.freeze_encoder)
        opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=self.cfg.lr,
                              momentum=self.cfg.momentum, weight_decay=self.cfg.weight_decay)
        state = {"step": 0, "seconds": 0.0, "best_signal": None, "best_step": None, "history": [],
                 "history_columns": ["step"] + list(net.objectives)}
        self.best = None
        if self.checkpoint.exists():
            state = self._load(net, opt, state)
            if self.ranks.main:  # even with --quiet: a rerun that silently continues an old run surprises
                print(f"resuming the unfinished run in {self.work_dir} from its checkpoint at step {state['step']} "
                      f"({state['seconds']:.0f} s of training done)", file=sys.stderr, flush=True)
        model = net if self.ranks.world == 1 else DistributedDataParallel(net, find_unused_parameters=True)
        scaler = torch.amp.GradScaler("cuda", enabled=self.device.type == "cuda")
        if state["step"] == 0:
            self._save(net, opt, state)  # the random initialisation (or the starting encoder) is a candidate too
        bar = Progress("training", int(budget), "s", initial=int(state["seconds"]), show=progress and self.ranks.main)
        try:
            self._steps(net, model, opt, scaler, state, images, lungs, budget, bar)
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM as the command line raises it: keep the steps taken
            if self.ranks.world == 1:  # (other ranks may be gone already: the last periodic checkpoint stands)
                self._save(net, opt, state, judge=False)
            raise
        finally:
            bar.close()
        self._save(net, opt, state)
        self.run_state = state
        if not self.ranks.main:
            return None
        if self.best is None:
            self.best, self.best_decoder = _encoder(net), _decoder(net)
        return {k: v.clone() for k, v in self.best.items()}

    def _steps(self, net: PretextModel, model, opt, scaler, state: dict, images, lungs, budget: float,
               bar: Progress) -> None:
        """Train until the budget (or max_steps) is spent, checkpointing every `eval_every` steps."""
        weights, use_amp = self.pretext.weights(), scaler.is_enabled()
        t_last = time.time()
        while state["seconds"] < budget and (self.cfg.max_steps is None or state["step"] < self.cfg.max_steps):
            model.train()
            if self.freeze_encoder:
                net.encoder.eval()  # its batch-norm statistics stay the starting model's, as scoring sees them
            lr = self.cfg.lr * 0.5 * (1 + np.cos(np.pi * self._progress(state, budget)))
            for g in opt.param_groups:
                g["lr"] = lr
            batches = self.batches(net, images, lungs, state["step"])
            with torch.autocast(self.device.type, dtype=torch.float16, enabled=use_amp):
                losses = model(batches, self.device)
                loss = sum(weights[name] * value for name, value in losses.items())
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            state["step"] += 1
            now = time.time()
            state["seconds"] += self.ranks.most(now - t_last)
            t_last = now
            state["history"].append([state["step"]] + [round(v.item(), 4) for v in losses.values()])
            bar.update(int(state["seconds"]), step=state["step"], loss=f"{loss.item():.3f}")
            if state["step"] % self.cfg.eval_every == 0:
                self._save(net, opt, state)
                t_last = time.time()

    def decoder_state(self) -> dict[str, torch.Tensor] | None:
        """MAE's decoder of the kept step (None without `mae`, or the starting model's after no training)."""
        return self.best_decoder

    def _progress(self, state: dict, budget: float) -> float:
        """How far through its budget the run is (0 to 1), for the cosine learning rate: the time
        spent, or the steps taken where `max_steps` ends the run sooner, so that a step-limited run
        follows the same schedule on a fast or a busy machine."""
        done = state["seconds"] / budget if budget > 0 else 1.0
        if self.cfg.max_steps is not None:
            done = max(done, state["step"] / self.cfg.max_steps)
        return min(1.0, done)

    def state(self) -> dict:
        """The state of the run `fit` finished (steps, seconds, selection signals, chosen step)."""
        return self.run_state

    def _save(self, net: PretextModel, opt, state: dict, judge: bool = True) -> None:
        """Judge the encoder (rank 0) and write the checkpoint, best encoder and state together,
        atomically: a run killed at any moment resumes from one consistent step. Never pickles.
        An interrupted run is saved unjudged: judging takes longer than a stopped job is given."""
        if self.ranks.main:
            judged = state.get("signals") and state["signals"][-1][0] == state["step"]  # a resumed, finished run
            if self.select is not None and judge and not judged:
                net.eval()
                signal = float(self.select(net.encoder))
                state["signals"] = state.get("signals", []) + [[state["step"], round(signal, 4)]]
                if state["best_signal"] is None or signal > state["best_signal"]:
                    state["best_signal"], state["best_step"] = signal, state["step"]
                    self.best, self.best_decoder = _encoder(net), _decoder(net)
            tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
            for i, p in enumerate(opt.param_groups[0]["params"]):
                buf = opt.state.get(p, {}).get("momentum_buffer")
                if buf is not None:
                    tensors[f"opt.{i}"] = buf.detach().cpu().contiguous()
            tensors.update({f"best.{k}": v for k, v in (self.best or {}).items()})
            tensors.update({f"best_decoder.{k}": v for k, v in (self.best_decoder or {}).items()})
            self.work_dir.mkdir(parents=True, exist_ok=True)
            with atomic_path(self.checkpoint) as tmp:
                save_file(tensors, str(tmp), metadata={"state": json.dumps(state), "identity": json.dumps(self.identity)})
        self.ranks.barrier()  # the other ranks wait here while rank 0 judges and writes

    def _load(self, net: PretextModel, opt, fresh: dict) -> dict:
        """Resume from the checkpoint, after checking that it is this run's (its state holds what a
        `fresh` one does)."""
        saved, state, tensors = checkpoint_file.read(self.checkpoint, fresh)
        if saved != self.identity:
            changed = sorted(k for k in saved.keys() | self.identity.keys() if saved.get(k) != self.identity.get(k))
            raise RunMismatch(self.work_dir, f"hold an unfinished run of other {', '.join(changed)} (it was: "
                                             f"{_brief(saved, changed)}); it is never resumed with other settings. "
                                             "Re-run with --restart to discard it and start afresh, or write to another --out")
        with checkpoint_file.reading(self.checkpoint):
            net.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
            for i, p in enumerate(opt.param_groups[0]["params"]):
                if f"opt.{i}" in tensors:
                    opt.state[p]["momentum_buffer"] = tensors[f"opt.{i}"].to(p.device)
        best = {k[len("best."):]: v for k, v in tensors.items() if k.startswith("best.")}
        self.best = best or None
        decoder = {k[len("best_decoder."):]: v for k, v in tensors.items() if k.startswith("best_decoder.")}
        self.best_decoder = decoder or None
        return state


def _encoder(net: PretextModel) -> dict[str, torch.Tensor]:
    return _copy(net.encoder)


def _decoder(net: PretextModel) -> dict[str, torch.Tensor] | None:
    return None if net.decoder is None else _copy(net.decoder)


def _copy(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}


def _brief(identity: dict, keys: list[str]) -> str:
    """The old run's values of the settings that differ, short enough for one message."""
    def short(value):
        if isinstance(value, dict) and "objectives" in value:
            return "+".join(o["name"] for o in value["objectives"])
        return json.dumps(value)
    return "; ".join(f"{k} {short(identity.get(k))}" for k in keys)


def checkpoint_in(work_dir: Path) -> Path:
    """The checkpoint file of a run kept in `work_dir`."""
    return Path(work_dir) / "checkpoint.safetensors"
