"""`sslanomaly train` and `train-anatomy`: an encoder (or the lung-field network) trained on normals
into a verified model folder."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from SSLAnomalyLib.cli.options import (UsageError, add_device, add_quiet, command_line, count, deviations, fraction,
                                       fraction_or_zero, input_size, model_out, non_negative, positive, positive_count,
                                       report_model, warn_left_out)
from SSLAnomalyLib.cli.termination import TERMINATED, Terminated
from SSLAnomalyLib.core.anatomy.lung_network import LungNetConfig
from SSLAnomalyLib.core.model.acquisition import DEFAULT_DIRECTIONS
from SSLAnomalyLib.core.model.calibration import DEFAULT_FPR
from SSLAnomalyLib.core.model.encoder import IMAGE, LUNGS, EncoderConfig
from SSLAnomalyLib.core.model.scoring import SIDES_OFFSET
from SSLAnomalyLib.training.defaults import DEFAULT_PRETEXT, FINE_TUNE_LR, LR, OBJECTIVE_NAMES


def pretext(text: str):
    """An argparse type: `training.objectives.Pretext` of 'name[:weight],...'."""
    from SSLAnomalyLib.training.objectives import Pretext

    try:
        return Pretext.parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def disease_kinds(text: str) -> tuple[str, ...]:
    """An argparse type: `train-anatomy --disease-kinds`, 'all' or some of `lung_disease.ALL_KINDS`."""
    from SSLAnomalyLib.evaluation.choices import parse_names
    from SSLAnomalyLib.training.lung_disease import ALL_KINDS

    try:
        return tuple(parse_names(text, ALL_KINDS, "disease kind(s)"))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def lung_input_size(text: str) -> int:
    """An argparse type: `train-anatomy --size`, one the lung U-Net can take (`LungNetConfig.size_step`)."""
    return input_size(text, LungNetConfig().size_step)


def add_parsers(sub) -> None:
    t = sub.add_parser("train", help="train an encoder on normal radiographs and calibrate a model folder")
    t.add_argument("--normals", required=True, nargs="+", metavar="DIR",
                   help="folder(s) of normal radiographs (the only training data), or one normals pack "
                        "(NAME.npz.xz, training/packs.py)")
    t.add_argument("--out", required=True, type=model_out, help="model folder to write (checkpoints in OUT.work beside it until the "
                                                "model is complete: rerunning the same command resumes)")
    t.add_argument("--restart", action="store_true",
                   help="discard the unfinished run in OUT.work and start afresh (a run is only ever resumed by the "
                        "same normals, pretext, encoder, seed and starting model)")
    t.add_argument("--overwrite", action="store_true", help="replace a model already in --out that another run made "
                                                            "(never a folder of other files)")
    t.add_argument("--val-normals", nargs="+", metavar="DIR",
                   help="folder(s) of held-back normal radiographs for calibration, or one normals pack")
    add_device(t)
    t.add_argument("--minutes", type=non_negative, default=30.0, help="training time budget")
    t.add_argument("--seed", type=count, default=0, help="seed of the splits, augmentations and initialisation")
    t.add_argument("--max-steps", type=positive_count, default=None, metavar="N",
                   help="also stop after N steps, so that seeds train alike on a busy machine")
    t.add_argument("--lr", type=positive, default=None,
                   help=f"peak learning rate (default {LR}, or {FINE_TUNE_LR} with --start-from: fine-tuning "
                        "at the from-scratch rate first destroys what the starting encoder knew)")
    t.add_argument("--size", type=input_size, help=f"encoder input size in pixels (default {EncoderConfig.input_size}, "
                                            "or the --start-from model's)")
    t.add_argument("--start-from", metavar="MODEL",
                   help="start from this model's encoder (a bundled model's name: adult, pediatric, default = adult; "
                        "or a model folder) instead of a random one; with --minutes 0 only the normal reference and "
                        "calibration are fitted on --normals")
    t.add_argument("--patch-layers", metavar="LAYERS",
                   help=f"comma-separated encoder stages that feed the heatmap (default "
                        f"{','.join(EncoderConfig.patch_layers)}, or the --start-from model's)")
    t.add_argument("--pooled-layers", metavar="LAYERS",
                   help=f"comma-separated encoder stages whose pooled embedding gives the image-level score "
                        f"(default {','.join(EncoderConfig.pooled_layers)}, or the --start-from model's)")
    t.add_argument("--pooled-views", metavar="VIEWS",
                   help=f"comma-separated views the image-level embedding is pooled over, joined: {IMAGE} (the whole "
                        f"input), {LUNGS} (the input cropped to its lung fields' box: what an acquisition puts around "
                        f"the lungs left out) (default {','.join(EncoderConfig.pooled_views)}, or the --start-from "
                        "model's)")
    t.add_argument("--pretext", type=pretext, default=None,
                   help=f"self-supervised objective(s), alone or summed with weights, e.g. 'contrastive:0.5,anatpaste' "
                        f"(choose from {', '.join(OBJECTIVE_NAMES)}; default {DEFAULT_PRETEXT}, or the --start-from "
                        "model's)")
    t.add_argument("--fpr", type=fraction, default=None,
                   help=f"false-positive rate for the thresholds (default {DEFAULT_FPR:g}, or the --start-from "
                        "model's: its operating point)")
    t.add_argument("--reference-views", type=count, default=None, metavar="N",
                   help="also fit the normal reference on N acquisition-augmented copies of each normal (default 0, "
                        "or the --start-from model's)")
    t.add_argument("--standardise-positions", action=argparse.BooleanOptionalAction, default=None,
                   help="express the heatmap against each position's normal distance on held-out normals (borders "
                        "and the heart edge vary most between normals; default off, or as the --start-from model)")
    t.add_argument("--calibration-views", type=count, default=None, metavar="N",
                   help="also calibrate the thresholds on N acquisition-augmented copies of each calibration normal, "
                        "so the stated false-positive rate holds for normals taken otherwise (default 0, or the "
                        "--start-from model's)")
    t.add_argument("--foreign-objects", type=fraction_or_zero, default=None, metavar="P",
                   help="share of training views with ECG electrodes, leads, tubes and a marker plate drawn on, so "
                        "the encoder learns they are not disease (default 0, or the --start-from model's; never text)")
    t.add_argument("--sides-offset", type=deviations, default=None, metavar="Z",
                   help="what a lung-field density imbalance beyond 2 deviations (the `sides` component) brings to "
                        f"the image score: its deviations less Z (default {SIDES_OFFSET:g}, or the --start-from "
                        "model's; lower flags more white-outs and large effusions)")
    t.add_argument("--other-source-normals", nargs="+", metavar="DIR", default=(),
                   help="folder(s) of normal radiographs from other acquisitions (another hospital, scanner, film "
                        "digitiser or export): the directions in which their patch features differ from --normals' "
                        "are acquisition, not anatomy, and are projected out before the reference is fitted, so a "
                        "normal from elsewhere is not flagged for where it came from (default: none; a --start-from "
                        "model's are kept while its encoder is not trained on)")
    t.add_argument("--acquisition-directions", type=positive_count, default=None, metavar="K",
                   help=f"how many acquisition directions --other-source-normals gives (default {DEFAULT_DIRECTIONS})")
    t.add_argument("--freeze-encoder", action="store_true",
                   help="keep the --start-from model's encoder exactly as it is and train only MAE's decoder on it "
                        "(with --pretext mae): the model gains the `reconstruction` score component and keeps "
                        "everything else")
    t.add_argument("--keep-last-step", action="store_true",
                   help="keep the encoder of the last training step instead of the checkpoint the normal-only "
                        "signal chooses (that signal ranks encoders of different runs backwards: docs/model.md, "
                        "eighteenth round); the bundling rule, not the signal, then judges the run")
    t.add_argument("--half-weights", action="store_true",
                   help="store the encoder in float16: half the size, the reference and thresholds fitted with exactly "
                        "those weights (the GPU round uses it to bring eight models back)")
    add_quiet(t)
    t.set_defaults(func=cmd_train)

    a = sub.add_parser("train-anatomy", help="train the lung-field U-Net on radiographs and their expert lung masks")
    a.add_argument("--images", required=True, help="folder of radiographs")
    a.add_argument("--masks", required=True, help="folder of lung masks, each at its image's path under --images (nonzero = lung)")
    a.add_argument("--out", required=True, type=model_out, help="lung model folder to write")
    a.add_argument("--overwrite", action="store_true", help="replace a model already in --out (never a folder of other files)")
    a.add_argument("--restart", action="store_true",
                   help="discard an unfinished run kept in OUT.work (by Ctrl-C, SIGTERM or a kill) instead of resuming it")
    a.add_argument("--minutes", type=non_negative, default=12.0, help="training time budget (a resumed run counts "
                                                                       "the training time of its earlier processes)")
    a.add_argument("--seed", type=count, default=0, help="seed of the held-out fold, initialisation and augmentation")
    a.add_argument("--size", type=lung_input_size, default=LungNetConfig.input_size,
                   help=f"network input size in pixels (a multiple of {LungNetConfig().size_step})")
    a.add_argument("--negative-share", type=fraction_or_zero, default=0.0,
                   help="share of each batch made of inputs with no upright lungs (noise, turned radiographs) and "
                        "an empty mask (default 0: measured worse on children and dense lungs, docs/anatomy.md)")
    a.add_argument("--disease-share", type=fraction_or_zero, default=0.5, metavar="P",
                   help="share of training images with a white-out, an effusion or consolidation drawn inside one "
                        "lung field, mask unchanged, so a white lung is still outlined (default 0.5, docs/anatomy.md)")
    a.add_argument("--disease-kinds", type=disease_kinds, default=None, metavar="KINDS",
                   help="comma-separated kinds of disease drawn: whiteout, effusion, consolidation (the default) "
                        "and hemithorax (the whole side of the chest opaque, chest wall included; docs/anatomy.md)")
    add_quiet(a)
    a.set_defaults(func=cmd_train_anatomy)


def training_spec(args):
    """The `training.spec.TrainingSpec` of the command line: what was given, None for what was not
    (the starting model's, else the default: spec.resolve)."""
    from SSLAnomalyLib.training.spec import TrainingSpec

    lists = {name: tuple(given.split(",")) if given else None
             for name, given in (("patch_layers", args.patch_layers), ("pooled_layers", args.pooled_layers),
                                 ("pooled_views", args.pooled_views))}
    for name, chosen in lists.items():
        try:
            EncoderConfig(**{name: chosen or getattr(EncoderConfig, name)})
        except ValueError as e:  # before any image is read or a starting model loaded
            raise UsageError(f"--{name.replace('_', '-')}: {e}") from None
    if args.acquisition_directions is not None and not args.other_source_normals:
        raise UsageError("--acquisition-directions needs --other-source-normals (the normals they are found on)")
    return TrainingSpec(minutes=args.minutes, max_steps=args.max_steps, seed=args.seed, device=args.device, fpr=args.fpr,
                        lr=args.lr, input_size=args.size, patch_layers=lists["patch_layers"],
                        pooled_layers=lists["pooled_layers"], pooled_views=lists["pooled_views"], pretext=args.pretext,
                        reference_views=args.reference_views, calibration_views=args.calibration_views,
                        standardise_positions=args.standardise_positions, foreign_objects=args.foreign_objects,
                        sides_offset=args.sides_offset, half_weights=args.half_weights, restart=args.restart,
                        overwrite=args.overwrite, freeze_encoder=args.freeze_encoder, keep_last_step=args.keep_last_step,
                        other_source_normals=tuple(args.other_source_normals),
                        acquisition_directions=args.acquisition_directions or DEFAULT_DIRECTIONS)


def cmd_train(args) -> int:
    from SSLAnomalyLib.training.fitting import train_model
    from SSLAnomalyLib.training.spec import StartingEncoder, resolve

    started = time.time()
    spec = training_spec(args)
    start = StartingEncoder.load(args.start_from) if args.start_from else None
    try:
        resolve(spec, start)  # options that contradict each other, before any image is read
    except ValueError as e:
        raise UsageError(str(e)) from None
    if start is None and spec.minutes == 0:
        print("warning: --minutes 0 without --start-from fits the reference on a random, untrained encoder (a "
              "baseline for experiments); to refit a model on these normals give --start-from MODEL", file=sys.stderr)
    try:  # SIGTERM too arrives as KeyboardInterrupt (cli.main)
        folder = train_model(args.normals, args.out, args.val_normals, spec, start=start, command=command_line(),
                             progress=not args.quiet)
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (Terminated): the checkpoint holds every step taken
        from SSLAnomalyLib.training.fitting import work_dir
        from SSLAnomalyLib.training.trainer import checkpoint_in

        return stopped(e, checkpoint_in(work_dir(args.out)), args.out, started)
    if folder is not None:  # rank 0 of a torchrun (or the only process) wrote it
        report_model(folder)
    return 0


def stopped(e: KeyboardInterrupt, checkpoint: Path, out, started: float) -> int:
    """Say where a stopped training run is kept, or that nothing is (no `checkpoint`, the command's own
    file: stopped before its first, e.g. while reading the normals, so a rerun starts afresh), or that the
    model is complete (a stop that came once `out` was written, as its checkpoints were being removed:
    a rerun would be refused as if the model were an earlier one); the exit status of Ctrl-C or SIGTERM."""
    from SSLAnomalyLib.core.model_files.model_folder import MANIFEST

    how = "terminated (SIGTERM)" if isinstance(e, Terminated) else "interrupted"
    written = Path(out) / MANIFEST
    if written.exists() and written.stat().st_mtime >= started - 2:  # 2 s: file systems that keep coarse times
        left = f"; remove {checkpoint.parent}, its checkpoints, left behind" if checkpoint.parent.exists() else ""
        print(f"{how} after the model was written: {out} is complete{left}", file=sys.stderr)
    elif checkpoint.exists():
        print(f"{how}; the run is kept in {checkpoint.parent}: run the same command again to resume it", file=sys.stderr)
    else:
        print(f"{how} before its first checkpoint: nothing was kept; run the same command again to start it",
              file=sys.stderr)
    return TERMINATED if isinstance(e, Terminated) else 130


def cmd_train_anatomy(args) -> int:
    from SSLAnomalyLib.core.model_files import model_folder
    from SSLAnomalyLib.training.fitting import work_dir
    from SSLAnomalyLib.training.lung_checkpoint import CHECKPOINT
    from SSLAnomalyLib.training.lung_disease import KINDS
    from SSLAnomalyLib.training.lung_training import train_lung_model

    command, started = command_line(), time.time()
    try:  # SIGTERM too arrives as KeyboardInterrupt (cli.main)
        folder = train_lung_model(args.images, args.masks, args.out, minutes=args.minutes, seed=args.seed,
                                  config=LungNetConfig(input_size=args.size), command=command,
                                  progress=not args.quiet, negative_share=args.negative_share,
                                  disease_share=args.disease_share, disease_kinds=args.disease_kinds or KINDS,
                                  overwrite=args.overwrite, restart=args.restart)
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (Terminated): the checkpoint holds every step taken
        return stopped(e, work_dir(args.out) / CHECKPOINT, args.out, started)
    manifest = model_folder.load(folder).manifest
    warn_left_out(manifest.unread_normals(), "the training images")
    figures = manifest.section("figures")
    print(f"lung model written to {folder}; held-out Dice mean {figures['held_out_dice_mean']:.3f} "
          f"(median {figures['held_out_dice_median']:.3f}, min {figures['held_out_dice_min']:.3f}, "
          f"n={figures['held_out_n']})")
    return 0
