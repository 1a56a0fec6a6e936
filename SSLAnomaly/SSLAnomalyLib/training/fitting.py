"""From normal radiographs to a complete model folder: train the encoder, fit the normal reference,
standardise the score components and calibrate the thresholds, all on normals only.

Splits (seeded): the training normals minus a held-out tenth fit the reference; the held-out tenth
standardises the score components and drives checkpoint selection; separate calibration normals
(`--val-normals`, or a fifth of the training normals when none are given) set percentiles and
thresholds.
"""

from __future__ import annotations

import hashlib
import os
import platform
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from SSLAnomalyLib import __version__

from SSLAnomalyLib.core import model_folder
from SSLAnomalyLib.core.calibration import DEFAULT_FPR, Calibration
from SSLAnomalyLib.core.encoder import EncoderConfig, build_encoder
from SSLAnomalyLib.core.io import ReadError, as_folders, list_inputs, read_radiograph
from SSLAnomalyLib.core.lung_model import bundled_segmenter
from SSLAnomalyLib.core.model_card import model_card
from SSLAnomalyLib.core.preprocess import to_model_input
from SSLAnomalyLib.training.objectives import Pretext
from SSLAnomalyLib.core.scoring import Scorer
from SSLAnomalyLib.training.selection import SyntheticCheck
from SSLAnomalyLib.core.device import select_device
from SSLAnomalyLib.training.trainer import Trainer, TrainConfig, augment

HELD_OUT_FRACTION = 0.1
CALIBRATION_FRACTION = 0.2
MIN_TRAIN_IMAGES = 8  # fewer normals left for training than this cannot fit a reference worth the name


@dataclass
class NormalSet:
    images01: np.ndarray   # (n, size, size)
    lungs: np.ndarray      # (n, size, size) bool
    files: list[str]
    skipped: list[str]

    def subset(self, idx) -> "NormalSet":
        return NormalSet(self.images01[idx], self.lungs[idx], [self.files[i] for i in idx], [])

    def digest(self) -> str:
        return hashlib.sha256("\n".join(Path(f).name for f in sorted(self.files)).encode()).hexdigest()[:16]


def model_digest(state: dict[str, torch.Tensor], arrays: dict[str, np.ndarray]) -> str:
    """A short hash of what model.safetensors holds (encoder weights and normal reference), so that two
    models from the same data and seed (other training, or the same encoder refitted) still differ by id."""
    h = hashlib.sha256()
    for name, value in sorted({**{f"encoder.{k}": v.detach().cpu().numpy() for k, v in state.items()},
                               **{f"reference.{k}": np.asarray(v) for k, v in arrays.items()}}.items()):
        h.update(name.encode())
        h.update(np.ascontiguousarray(value).tobytes())
    return h.hexdigest()[:8]


@dataclass
class StartingEncoder:
    """The encoder of an existing model folder, to fine-tune on other normals or, with no training
    steps, only to refit the normal reference and calibration there (minutes on a CPU)."""

    config: EncoderConfig
    state: dict[str, torch.Tensor]
    model_id: str
    folder: str

    @classmethod
    def load(cls, model) -> "StartingEncoder":
        """From a verified model folder ('default' is the bundled model)."""
        manifest, state, _ = model_folder.load(model)
        try:
            config = EncoderConfig.from_dict(manifest["encoder"])
        except (KeyError, TypeError, ValueError) as e:
            raise model_folder.ModelError(model_folder.resolve(model), f"manifest has no usable encoder ({e})") from None
        return cls(config, state, manifest.get("model_id", "unknown"), str(model_folder.resolve(model)))

    def config_for(self, config: EncoderConfig) -> EncoderConfig:
        """The config to train with: `config` with this encoder's widths and depths (the weights fix
        them; the input size and the layers that feed scoring stay free)."""
        return replace(config, widths=self.config.widths, layers=self.config.layers)

    def describe(self) -> dict:
        return {"model_id": self.model_id, "folder": self.folder}


def load_normals(folder, size: int, progress: bool = True) -> NormalSet:
    """Read and preprocess every image of a folder (or of several: `io.as_folders`); unreadable files
    are listed, not fatal."""
    files = list_inputs(as_folders(folder))
    if not files:
        raise ReadError(folder, "no images found in the folder")
    images, kept, skipped = [], [], []
    for f in tqdm(files, desc=f"reading {', '.join(Path(d).name for d in as_folders(folder))}", unit="img",
                  disable=not progress):
        try:
            x = to_model_input(read_radiograph(f).pixels[0], size)
        except ReadError as e:
            skipped.append(str(e))
            continue
        images.append(x)
        kept.append(str(f))
    if not images:
        raise ReadError(folder, "none of the images in the folder could be read")
    images = np.stack(images)
    return NormalSet(images, bundled_segmenter().masks(images), kept, skipped)


def split_sizes(n: int, separate_calibration: bool) -> tuple[int, int, int]:
    """(calibration, held-out, training) counts of n normals as `train_model` splits them; no
    calibration share when the calibration normals are a folder of their own."""
    n_cal = 0 if separate_calibration else max(1, int(CALIBRATION_FRACTION * n))
    n_held = max(1, int(HELD_OUT_FRACTION * (n - n_cal)))
    return n_cal, n_held, n - n_cal - n_held


def check_enough_normals(normals_dir, val_normals_dir=None) -> None:
    """Refuse, before anything is read or trained, normals whose image files could not give
    MIN_TRAIN_IMAGES training images even if every one of them were readable."""
    files = list_inputs(as_folders(normals_dir))
    name, val_name = ", ".join(as_folders(normals_dir)), ", ".join(as_folders(val_normals_dir or []))
    if not files:
        raise ReadError(name, "no images found in the folder")
    n_cal, n_held, n_train = split_sizes(len(files), val_normals_dir is not None)
    if n_train < MIN_TRAIN_IMAGES:
        raise ReadError(name, f"{len(files)} image file(s) leave at most {n_train} for training after "
                                     f"{n_held} held out" + (f" and {n_cal} for calibration" if n_cal else "")
                        + f"; at least {MIN_TRAIN_IMAGES} are needed")
    if val_normals_dir is not None and not list_inputs(as_folders(val_normals_dir)):
        raise ReadError(val_name, "no images found in the folder")


def augmented_views(images01: np.ndarray, views: int, seed: int) -> np.ndarray:
    """`images01` followed by `views` seeded acquisition-augmented copies of each (`training.augment`)."""
    rng = np.random.default_rng([seed, 11])
    return np.concatenate([images01] + [np.stack([augment(x, rng) for x in images01]) for _ in range(views)])


def fit_reference(net: torch.nn.Module, config: EncoderConfig, reference_set: NormalSet,
                  held_out: NormalSet, device, views: int = 0, seed: int = 0,
                  standardise_positions: bool = False) -> Scorer:
    """Fit the normal reference and the component standardisation for a trained encoder. With
    `views`, the reference also holds that many acquisition-augmented copies of each normal, so that
    a normal taken with another field of view or exposure is nearer to normal. With
    `standardise_positions`, the patch map is expressed against each position's normal distance on
    the held-out normals (`NormalReference.fit_positions`)."""
    return Scorer(net, config, device=device).fit(augmented_views(reference_set.images01, views, seed),
                                                  held_out.images01, held_out.lungs, standardise_positions)


def train_model(normals_dir, out_dir, val_normals_dir=None, device: str = "auto", minutes: float = 30.0,
                lr: float = TrainConfig.lr,
                seed: int = 0, encoder_cfg: EncoderConfig = EncoderConfig(),
                pretext: Pretext = Pretext(), fpr: float = DEFAULT_FPR,
                command: str = "", progress: bool = True, start: StartingEncoder | None = None,
                reference_views: int = 0, calibration_views: int = 0, standardise_positions: bool = False,
                foreign_objects: float = 0.0, max_steps: int | None = None, overwrite: bool = False) -> Path:
    """The whole `sslanomaly train`: returns the model folder. With `start`, training begins from
    that encoder instead of a random one (and it stays a candidate for the kept checkpoint);
    `foreign_objects` is the share of training views with electrodes, leads and tubes drawn on."""
    t0 = time.time()
    out_dir = Path(out_dir)
    if start is not None:
        encoder_cfg = start.config_for(encoder_cfg)
    size = encoder_cfg.input_size
    check_enough_normals(normals_dir, val_normals_dir)  # before any image is read or any step trained
    replace_model = overwrite or (out_dir / "work").is_dir()  # a model beside its own checkpoints: a rerun
    model_folder.refuse_existing(out_dir, replace_model)
    normals = load_normals(normals_dir, size, progress)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(normals.files))
    n_cal, n_held, _ = split_sizes(len(order), val_normals_dir is not None)
    if val_normals_dir is not None:
        calib = load_normals(val_normals_dir, size, progress)
    else:
        calib, order = normals.subset(order[:n_cal]), order[n_cal:]
    held, train = normals.subset(order[:n_held]), normals.subset(order[n_held:])
    if len(train.files) < MIN_TRAIN_IMAGES:
        raise ReadError(normals_dir, f"only {len(train.files)} usable training images; at least {MIN_TRAIN_IMAGES} "
                                     "are needed")
    dev = select_device(device)
    check = SyntheticCheck(encoder_cfg, train, held, seed, dev, foreign_objects) if minutes > 0 else None  # nothing to choose
    train_cfg = TrainConfig(minutes=minutes, seed=seed, lr=lr, foreign_objects=foreign_objects, max_steps=max_steps)
    trainer = Trainer(encoder_cfg, pretext, train_cfg, out_dir / "work", device=device, select=check,
                      initial_state=start.state if start is not None else None)
    encoder_state = trainer.fit(train.images01, train.lungs, progress)
    train_seconds = time.time() - t0

    net = build_encoder(encoder_cfg)
    net.load_state_dict(encoder_state)
    scorer = fit_reference(net, encoder_cfg, train, held, dev, views=reference_views, seed=seed,
                           standardise_positions=standardise_positions)
    cal_images = augmented_views(calib.images01, calibration_views, seed + 1)
    cal_lungs = np.concatenate([calib.lungs, bundled_segmenter().masks(cal_images[len(calib.files):])]) \
        if calibration_views else calib.lungs
    cal_scores = scorer.score(cal_images, cal_lungs)
    calibration = Calibration(cal_scores.score, cal_scores.peaks, fpr)
    arrays = dict(scorer.reference.to_arrays(), lung_prior=train.lungs.mean(0).astype(np.float32))
    state = trainer.state()
    manifest = {
        "model_id": f"sslanomaly-{normals.digest()[:8]}-s{seed}-w{model_digest(encoder_state, arrays)}",
        "encoder": encoder_cfg.to_dict(),
        "preprocessing": {"resize": [size, size], "keep_aspect": False, "channels": 1,
                          "intensity": "per-image 1st-99th percentile to [0, 1], then (x - 0.5) / 0.25"},
        "pretext": pretext.to_dict(),
        "training": dict(train_cfg.to_dict(), device=str(dev), steps=state["step"],
                         seconds=round(train_seconds, 1), chosen_step=state.get("best_step"),
                         selection="AUROC of the feature-distance score on held-out training normals vs the "
                                   "same images with synthetic opacities (normal images only)"
                                   + (", foreign objects on the shifted normals" if foreign_objects else ""),
                         selection_signals=state.get("signals", []), command=command,
                         started_from=start.describe() if start is not None else None),
        "scoring": {"components": list(scorer.component_stats), "component_stats": scorer.component_stats},
        "reference": {"augmented_views_per_normal": reference_views,
                      "calibration_augmented_views_per_normal": calibration_views,
                      "positions_standardised": standardise_positions,
                      "augmentation": "training.augment (field of view, position, rotation, gamma, contrast, blur, noise)"},
        "calibration": calibration.to_dict(),
        "data": {"normals": os.pathsep.join(as_folders(normals_dir)), "n_train": len(train.files), "n_held_out": len(held.files),
                 "calibration_normals": os.pathsep.join(as_folders(val_normals_dir or normals_dir)),
                 "n_calibration": len(calib.files),
                 "files_sha256_16": normals.digest(), "skipped": normals.skipped + calib.skipped},
        "software": {"sslanomaly": __version__, "python": sys.version.split()[0], "torch": torch.__version__,
                     "numpy": np.__version__, "platform": platform.platform()},
    }
    return model_folder.save(out_dir, encoder_state, arrays, manifest, model_card(manifest), overwrite=replace_model)
