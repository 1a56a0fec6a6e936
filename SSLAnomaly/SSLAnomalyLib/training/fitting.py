"""From normal radiographs to a complete model folder: train the encoder, fit the normal reference,
standardise the score components and calibrate the thresholds, all on normals only.

Training splits (seeded): the encoder trains on the normals minus a calibration fifth (none with
`--val-normals`) and a held-out tenth, which drives checkpoint selection. The final fit
(`crossfit.py`) then uses every normal: the reference holds them all, and the score
standardisation, position standardisation and thresholds come from out-of-fold scores of every
normal (and of the `--val-normals`, scored only), streamed from disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from SSLAnomalyLib import __version__
from SSLAnomalyLib.core.anatomy.lung_network import bundled_segmenter
from SSLAnomalyLib.core.files.locks import folder_lock
from SSLAnomalyLib.core.model.acquisition import AcquisitionDirections
from SSLAnomalyLib.core.model.calibration import Calibration
from SSLAnomalyLib.core.model.device import select_device
from SSLAnomalyLib.core.model.encoder import build_encoder
from SSLAnomalyLib.core.model.reconstruction import MaskedPatches, Reconstruction
from SSLAnomalyLib.core.model.scoring import SidesRule
from SSLAnomalyLib.core.model_files import model_folder, reference_normals
from SSLAnomalyLib.core.model_files.manifest import Manifest
from SSLAnomalyLib.core.model_files.model_card import model_card
from SSLAnomalyLib.core.files.errors import with_left_out
from SSLAnomalyLib.core.reading.images import ReadError, as_folders
from SSLAnomalyLib.training import checkpoint_file, packs
from SSLAnomalyLib.training.acquisition_directions import (MAX_NORMALS, check_other_sources,
                                                            find_acquisition_directions)
from SSLAnomalyLib.training.crossfit import FOLDS, cross_fit
from SSLAnomalyLib.training.distributed import Ranks, refuse_other_normals
from SSLAnomalyLib.training.feature_cache import distinct_images, normal_files, read_batches
from SSLAnomalyLib.training.held_back import check_held_back
from SSLAnomalyLib.training.phases import Phases
from SSLAnomalyLib.training.selection import SyntheticCheck
from SSLAnomalyLib.training.spec import StartingEncoder, TrainingSpec, kept_acquisition, resolve
from SSLAnomalyLib.training.trainer import TrainConfig, Trainer, checkpoint_in

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
        return hashlib.sha256(os.fsencode("\n".join(Path(f).name for f in sorted(self.files)))).hexdigest()[:16]

    def pixels_digest(self) -> str:
        """What the images hold, not only their names: another folder of the same file names
        (0001.png, 0002.png...) is other normals, whose run must not resume this one's."""
        return hashlib.sha256(np.ascontiguousarray(self.images01).tobytes()).hexdigest()[:16]


def halved(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Weights stored as float16 (`--half-weights`)."""
    return {k: v.half() if v.is_floating_point() else v for k, v in state.items()}


def model_digest(state: dict[str, torch.Tensor], arrays: dict[str, np.ndarray], decisions: dict,
                 decoder: dict[str, torch.Tensor] | None = None) -> str:
    """A short hash of what model.safetensors holds (encoder weights, normal reference, MAE's decoder) and of how
    the model decides (`decisions`: the manifest's scoring and calibration sections), so that two models
    from the same data and seed (other training, the same encoder refitted, the same reference scored
    or thresholded otherwise) still differ by id."""
    h = hashlib.sha256(json.dumps(decisions, sort_keys=True).encode())
    for name, value in sorted({**{f"encoder.{k}": v.detach().cpu().numpy() for k, v in state.items()},
                               **{f"reference.{k}": np.asarray(v) for k, v in arrays.items()},
                               **{f"decoder.{k}": v.detach().cpu().numpy() for k, v in (decoder or {}).items()}}.items()):
        h.update(name.encode())
        h.update(np.ascontiguousarray(value).tobytes())
    return h.hexdigest()[:8]


def load_normals(folder, size: int, progress: bool = True, pixels: bool = True) -> NormalSet:
    """Read and preprocess every image of a folder (or of several: `io.as_folders`); unreadable files
    are listed, not fatal. Without `pixels`, only the file list (a refit streams the images from disk
    in `crossfit`, so its memory does not grow with the number of normals)."""
    files = normal_files(folder)
    if not pixels:
        return NormalSet(np.zeros((len(files), 0, 0), np.float32), np.zeros((len(files), 0, 0), bool),
                         [str(f) for f in files], [])
    images, kept, skipped = [], [], []
    for indices, inputs, left_out, _ in read_batches(files, size, progress=progress):
        images.append(inputs)
        kept += [str(files[i]) for i in indices]
        skipped += left_out
    if not kept:
        raise ReadError(folder, with_left_out("none of the images in the folder could be read", skipped))
    images = np.concatenate(images)
    return NormalSet(images, bundled_segmenter().masks(images), kept, skipped)


def split_sizes(n: int, separate_calibration: bool) -> tuple[int, int, int]:
    """(calibration, held-out, training) counts of n normals as `train_model` splits them; no
    calibration share when the calibration normals are a folder of their own."""
    n_cal = 0 if separate_calibration else max(1, int(CALIBRATION_FRACTION * n))
    n_held = max(1, int(HELD_OUT_FRACTION * (n - n_cal)))
    return n_cal, n_held, n - n_cal - n_held


def check_enough_normals(normals_dir, val_normals_dir=None) -> None:
    """Refuse, before anything is read or trained, normals whose image files could not give
    MIN_TRAIN_IMAGES training images even if every one of them were readable, and held-back
    normals that are training normals too. Held-back normals may be a pack (as `train --val-normals`
    takes one): it holds no files to compare byte for byte, as when both are packs."""
    val_pack = val_normals_dir is not None and packs.is_pack(val_normals_dir)
    for folder in as_folders(normals_dir) + ([] if val_pack else as_folders(val_normals_dir or [])):
        if not Path(folder).is_dir():
            raise ReadError(folder, "no such folder")
    files = normal_files(normals_dir)
    name = ", ".join(as_folders(normals_dir))
    n_cal, n_held, n_train = split_sizes(len(files), val_normals_dir is not None)
    if n_train < MIN_TRAIN_IMAGES:
        raise ReadError(name, f"{len(files)} image file(s) leave at most {n_train} for training after "
                                     f"{n_held} held out" + (f" and {n_cal} for calibration" if n_cal else "")
                        + f"; at least {MIN_TRAIN_IMAGES} are needed")
    if val_normals_dir is not None and not val_pack:
        check_held_back(normals_dir, val_normals_dir)  # no images is an error that names the folder too


def work_dir(out_dir) -> Path:
    """Where a training run keeps its checkpoints: beside the model folder, never in it, so that
    a killed run leaves nothing in MODEL_DIR; removed once the model folder is complete. (`.` has a
    name there, as model_folder.save names it.)"""
    out_dir = Path(os.path.abspath(out_dir))
    return out_dir.with_name(out_dir.name + ".work")


def refuse_existing_out(out_dir, overwrite: bool, checkpoint: Path, seconds: str) -> None:
    """`model_folder.refuse_taken` for a training run into `out_dir` (`run_lock` has refused one that
    cannot be written). An unfinished run kept beside it does not make a model there its own: a run
    writes its model only as it finishes, so that model was put there by another command after the
    run stopped (calibrate, merge, a copy), and resuming replaced it unasked; or by the run itself in
    the moment before its checkpoints were removed (`checkpoint`, the run's file, says which:
    `checkpoint_file.wrote`, the manifest's training seconds under `seconds`), and it is complete."""
    try:
        model_folder.refuse_taken(out_dir, overwrite)
    except model_folder.ModelError as e:
        work = work_dir(out_dir)
        if not work.is_dir():
            raise
        if checkpoint_file.wrote(checkpoint, Path(out_dir) / model_folder.MANIFEST, seconds):
            raise model_folder.ModelError(out_dir, f"{e.reason}; the run kept in {work} wrote it as it finished "
                                                   f"and was stopped as it removed its checkpoints: the model is "
                                                   f"complete; remove {work}, left behind") from None
        raise model_folder.ModelError(out_dir, f"{e.reason}; the unfinished run kept in {work} did not write "
                                               "it: pass --overwrite to let the resumed run replace it, or choose "
                                               "a new --out") from None


def run_lock(out_dir, main: bool = True):
    """The lock a training run into `out_dir` holds (`main`: rank 0 of a torchrun) from its first look
    at `out_dir` until its model is written: a second run into the same --out (the same command
    started twice) resumed the live run's checkpoint, trained beside it, wrote over its checkpoints
    and replaced its model unasked (the work folder beside it made it a rerun); it is refused. An
    `out_dir` that cannot be written is refused first, on every rank."""
    model_folder.refuse_unwritable(out_dir)  # the work folder and the lock are made beside it
    if not main:
        return nullcontext()
    work = work_dir(out_dir)
    work.parent.mkdir(parents=True, exist_ok=True)
    return folder_lock(work.with_name(f".{work.name}.lock"), out_dir)


def read_normals(normals, size: int, progress: bool = True, pixels: bool = True) -> NormalSet:
    """Folders of images (`load_normals`) or one normals pack (packs.py), each image once."""
    if not packs.is_pack(normals):
        return load_normals(normals, size, progress, pixels)
    path = normals[0] if isinstance(normals, (list, tuple)) else normals
    packed = packs.read_pack(path, size)
    kept, copies = distinct_images(packed.images01, packed.files)
    return NormalSet(packed.images01[kept], packed.lungs[kept], [packed.files[i] for i in kept], copies)


def train_model(normals, out_dir, val_normals=None, spec: TrainingSpec = TrainingSpec(),
                start: StartingEncoder | None = None, command: str = "", progress: bool = True) -> Path | None:
    """The whole `sslanomaly train`: returns the model folder (None on the ranks other than 0 of a
    `torchrun`). `normals` and `val_normals` are folders of images or a normals pack. With `start`,
    training begins from that encoder instead of a random one (and it stays a candidate for the kept
    checkpoint) and keeps its recipe where `spec` leaves a value unset (spec.py). The checkpoints
    live in `work_dir(out_dir)`; a rerun resumes them only if it is the same run."""
    t0 = time.time()
    out_dir, work = Path(out_dir), work_dir(out_dir)
    ranks = Ranks.start(spec.device)
    say = Phases(progress and ranks.main)
    recipe = resolve(spec, start)
    encoder_cfg, pretext, seed, fpr, minutes = recipe.encoder, recipe.pretext, spec.seed, recipe.fpr, spec.minutes
    reference_views, calibration_views = recipe.reference_views, recipe.calibration_views
    standardise_positions, foreign_objects = recipe.standardise_positions, recipe.foreign_objects
    size = encoder_cfg.input_size
    if not packs.is_pack(normals):
        check_enough_normals(normals, val_normals)  # before any image is read or any step trained
    if spec.other_source_normals:  # named now, not after training
        check_other_sources(spec.other_source_normals, normals, spec.acquisition_directions)
    with run_lock(out_dir, ranks.main):  # from the first look at --out until the model is in it
        if start is not None:
            model_folder.refuse_source(out_dir, Path(start.folder))
        refuse_existing_out(out_dir, spec.overwrite, checkpoint_in(work), "step_seconds")  # "seconds" counts the fit too
        ranks.barrier()  # every rank has looked before rank 0 removes anything
        if spec.restart and ranks.main:
            shutil.rmtree(work, ignore_errors=True)
        ranks.barrier()
        say(f"reading the normals ({', '.join(as_folders(normals))})")
        normals_dir, normals = normals, read_normals(normals, size, progress and ranks.main, pixels=minutes > 0)
        refuse_other_normals(ranks, ", ".join(as_folders(normals_dir)), normals.files, normals.skipped)
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(normals.files))
        n_cal, n_held, _ = split_sizes(len(order), val_normals is not None)
        order = order[n_cal:]  # the encoder never trains on the calibration share (none with val_normals)
        held, train = normals.subset(order[:n_held]), normals.subset(order[n_held:])
        if len(train.files) < MIN_TRAIN_IMAGES:
            raise ReadError(", ".join(as_folders(normals_dir)), with_left_out(
                f"only {len(train.files)} usable training images; at least {MIN_TRAIN_IMAGES} are needed",
                normals.skipped))
        dev = select_device(ranks.device(spec.device))
        # a refit, or a frozen encoder, has nothing to choose (the last decoder is kept); rank 0 alone judges
        judged = minutes > 0 and ranks.main and not spec.freeze_encoder and not spec.keep_last_step
        if judged:
            say("drawing the checkpoint check (held-out normals, shifted and with synthetic opacities)")
        check = SyntheticCheck(encoder_cfg, train, held, seed, dev, foreign_objects) if judged else None
        train_cfg = TrainConfig(minutes=minutes, seed=seed, lr=recipe.lr, foreign_objects=foreign_objects,
                                max_steps=spec.max_steps)
        started = start.reconstruction if start is not None else None
        trainer = Trainer(encoder_cfg, pretext, train_cfg, work, device=spec.device, select=check,
                          initial_state=start.state if start is not None else None, ranks=ranks,
                          identity={"normals": train.digest(), "pixels": train.pixels_digest(),
                                    "start": start.model_id if start is not None else None},
                          initial_decoder=started.state() if started is not None else None,
                          freeze_encoder=spec.freeze_encoder)
        say((f"training on {len(train.files)} normals for {minutes:g} min"
             + (f" on {ranks.world} processes" if ranks.world > 1 else "")
             + (" (the encoder frozen: MAE's decoder only)" if spec.freeze_encoder else "")
             if minutes > 0 else "no training steps (--minutes 0): the starting encoder as it is")
            + f"; device {dev}" + (" (chosen by --device auto)" if spec.device == "auto" else ""))
        encoder_state = trainer.fit(train.images01, train.lungs, progress)
        if not ranks.main:
            ranks.finish()
            return None
        decoder_state = trainer.decoder_state()
        if spec.half_weights:  # the reference below is fitted with exactly the weights the folder stores
            encoder_state, decoder_state = halved(encoder_state), decoder_state and halved(decoder_state)
        reconstruction = (Reconstruction.from_state(decoder_state, started.params if started else MaskedPatches(),
                                                    encoder_cfg) if decoder_state else None)

        say(f"fitting the normal reference on every normal, thresholds on {FOLDS}-fold out-of-fold scores")
        net = build_encoder(encoder_cfg)
        net.load_state_dict(encoder_state)
        site_normals = normals if packs.is_pack(normals_dir) else normals_dir
        acquisition, acquisition_record = acquisition_of(spec, start, net, encoder_cfg, dev, site_normals, say, progress)
        held_back = read_normals(val_normals, size, False) if val_normals and packs.is_pack(val_normals) else val_normals
        fit = cross_fit(net, encoder_cfg, dev, site_normals,
                        held_back, seed=seed, reference_views=reference_views, calibration_views=calibration_views,
                        standardise_positions=standardise_positions, progress=progress,
                        sides=SidesRule.fitted(recipe.sides_offset), reconstruction=reconstruction, acquisition=acquisition)
        scorer = fit.scorer
        calibration = Calibration.of_normals(fit.scores, fit.peaks, fpr, fit.names)
        arrays = dict(scorer.reference.to_arrays(), lung_prior=fit.encoded.lung_prior,
                      **(acquisition.to_arrays() if acquisition is not None else {}),
                      **reference_normals.to_arrays(fit.encoded.marks))
        scoring = {"components": list(scorer.component_stats), "component_stats": scorer.component_stats,
                   **scorer.sides.to_dict(),
                   **({"reconstruction": reconstruction.params.to_dict()} if reconstruction is not None else {})}
        decisions = {"scoring": scoring, "calibration": calibration.to_dict()}
        state = trainer.state()
        weights_digest = model_digest(encoder_state, arrays, decisions, decoder_state)
        seconds = time.time() - t0  # training, the reference and the thresholds: all a refit's work
        manifest = Manifest.from_dict({
            "model_id": f"sslanomaly-{normals.digest()[:8]}-s{seed}-w{weights_digest}",
            "encoder": encoder_cfg.to_dict(),
            "preprocessing": {"resize": [size, size], "keep_aspect": False, "channels": 1,
                              "intensity": "per-image 1st-99th percentile to [0, 1], then (x - 0.5) / 0.25"},
            "pretext": pretext.to_dict(),
            "training": dict(train_cfg.to_dict(), device=str(dev), steps=state["step"],
                             seconds=round(seconds, 1), step_seconds=round(state["seconds"], 1),
                             processes=ranks.world, weights="float16" if spec.half_weights else "float32",
                             inherited=recipe.inherited, overridden=recipe.overridden,
                             chosen_step=state.get("best_step"),
                             encoder_frozen=spec.freeze_encoder,
                             selection="none: the encoder was frozen, the last step's decoder is kept"
                                       if spec.freeze_encoder else
                                       "none: the last step is kept (--keep-last-step)" if spec.keep_last_step else
                                       "AUROC of the feature-distance score on held-out training normals vs the "
                                       "same images with synthetic opacities (normal images only)"
                                       + (", foreign objects on the shifted normals" if foreign_objects else ""),
                             selection_signals=state.get("signals", []), command=command,
                             started_from=start.describe() if start is not None else None),
            "scoring": scoring,
            "anatomy": {"lungs": bundled_segmenter().model_id},
            "reference": {"augmented_views_per_normal": reference_views,
                          "calibration_augmented_views_per_normal": calibration_views,
                          "positions_standardised": standardise_positions,
                          "acquisition_directions": acquisition_record,
                          "augmentation": "training.augment (field of view, position, rotation, gamma, contrast, "
                                          "blur, noise)"},
            "calibration": calibration.to_dict(),
            "data": {"normals": os.pathsep.join(as_folders(normals_dir)), "n_train": fit.encoded.n_normals,
                     "n_held_out": 0, "cross_fitted_folds": FOLDS,
                     "calibration_normals": os.pathsep.join(as_folders(normals_dir) + as_folders(val_normals or [])),
                     "n_calibration": len(fit.scores),
                     "files_sha256_16": normals.digest(), "skipped": fit.encoded.skipped},
            "software": {"sslanomaly": __version__, "python": sys.version.split()[0], "torch": torch.__version__,
                         "numpy": np.__version__, "platform": platform.platform()},
        })
        say(f"writing the model folder {out_dir}")
        folder = model_folder.save(out_dir, encoder_state, arrays, manifest, model_card(manifest), overwrite=spec.overwrite,
                                   decoder_state=decoder_state)
        shutil.rmtree(work, ignore_errors=True)  # the model is complete: its checkpoints are no longer needed
        ranks.finish()
        return folder


def acquisition_of(spec: TrainingSpec, start: StartingEncoder | None, net, config, device, normals, say,
                   progress: bool) -> tuple[AcquisitionDirections | None, dict | None]:
    """The acquisition directions the model is fitted with, and what the manifest says of them: found
    anew on `spec.other_source_normals`, kept from the starting model (`spec.kept_acquisition`), or
    none (a starting model's dropped where its encoder was trained on, which the run says)."""
    if spec.other_source_normals:
        say(f"finding {spec.acquisition_directions} acquisition directions against "
            f"{', '.join(as_folders(spec.other_source_normals))}")
        found, unread = find_acquisition_directions(net, config, device, normals, spec.other_source_normals,
                                                    spec.acquisition_directions, spec.seed, progress)
        return found, {"k": found.k, "other_source_normals": os.pathsep.join(as_folders(spec.other_source_normals)),
                       "site_normals": os.pathsep.join(as_folders(normals)) if not hasattr(normals, "images01")
                       else "a normals pack", "max_normals_each": MAX_NORMALS, "skipped": unread}
    kept = kept_acquisition(spec, start)
    if kept is not None:
        return kept, {"k": kept.k, "kept_from": start.model_id}
    if start is not None and start.acquisition is not None:
        say("the starting model's acquisition directions are dropped: the encoder was trained on, so they no "
            "longer describe its features (give --other-source-normals to find them again)")
    return None, None
