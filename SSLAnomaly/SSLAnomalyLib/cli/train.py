"""`sslanomaly train` and `train-anatomy`: an encoder (or the lung-field network) trained on normals
into a verified model folder."""

from __future__ import annotations

import json
from dataclasses import replace

from SSLAnomalyLib.cli.options import (add_device, add_quiet, command_line, count, fraction, fraction_or_zero,
                                       non_negative, positive, positive_count)
from SSLAnomalyLib.core.calibration import DEFAULT_FPR
from SSLAnomalyLib.core.encoder import EncoderConfig
from SSLAnomalyLib.training.defaults import DEFAULT_PRETEXT, FINE_TUNE_LR, LR, OBJECTIVE_NAMES


def pretext(text: str):
    """An argparse type: `training.objectives.Pretext` of 'name[:weight],...'."""
    import argparse

    from SSLAnomalyLib.training.objectives import Pretext

    try:
        return Pretext.parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_parsers(sub) -> None:
    t = sub.add_parser("train", help="train an encoder on normal radiographs and calibrate a model folder")
    t.add_argument("--normals", required=True, nargs="+", metavar="DIR",
                   help="folder(s) of normal radiographs (the only training data)")
    t.add_argument("--out", required=True, help="model folder to write (checkpoints in OUT/work, resumable)")
    t.add_argument("--overwrite", action="store_true", help="replace a model already in --out that another run made "
                                                            "(never a folder of other files)")
    t.add_argument("--val-normals", nargs="+", metavar="DIR", help="folder(s) of held-back normal radiographs for calibration")
    add_device(t)
    t.add_argument("--minutes", type=non_negative, default=30.0, help="training time budget")
    t.add_argument("--seed", type=count, default=0, help="seed of the splits, augmentations and initialisation")
    t.add_argument("--max-steps", type=positive_count, default=None, metavar="N",
                   help="also stop after N steps, so that seeds train alike on a busy machine")
    t.add_argument("--lr", type=positive, default=None,
                   help=f"peak learning rate (default {LR}, or {FINE_TUNE_LR} with --start-from: fine-tuning "
                        "at the from-scratch rate first destroys what the starting encoder knew)")
    t.add_argument("--size", type=int, help=f"encoder input size in pixels (default {EncoderConfig.input_size}, "
                                            "or the --start-from model's)")
    t.add_argument("--start-from", metavar="MODEL",
                   help="start from this model folder's encoder ('default': the bundled one) instead of a random "
                        "one; with --minutes 0 only the normal reference and calibration are fitted on --normals")
    t.add_argument("--patch-layers", metavar="LAYERS",
                   help=f"comma-separated encoder stages that feed the heatmap (default "
                        f"{','.join(EncoderConfig.patch_layers)}, or the --start-from model's)")
    t.add_argument("--pretext", type=pretext, default=DEFAULT_PRETEXT,
                   help=f"self-supervised objective(s), alone or summed with weights, e.g. 'contrastive:0.5,anatpaste' "
                        f"(choose from {', '.join(OBJECTIVE_NAMES)}; default {DEFAULT_PRETEXT})")
    t.add_argument("--fpr", type=fraction, default=DEFAULT_FPR, help="false-positive rate for the thresholds")
    t.add_argument("--reference-views", type=count, default=0, metavar="N",
                   help="also fit the normal reference on N acquisition-augmented copies of each normal (default 0)")
    t.add_argument("--standardise-positions", action="store_true",
                   help="express the heatmap against each position's normal distance on held-out normals (borders "
                        "and the heart edge vary most between normals)")
    t.add_argument("--calibration-views", type=count, default=0, metavar="N",
                   help="also calibrate the thresholds on N acquisition-augmented copies of each calibration normal, "
                        "so the stated false-positive rate holds for normals taken otherwise (default 0)")
    t.add_argument("--foreign-objects", type=fraction_or_zero, default=0.0, metavar="P",
                   help="share of training views with ECG electrodes, leads, tubes and a marker plate drawn on, so "
                        "the encoder learns they are not disease (default 0; never text)")
    add_quiet(t)
    t.set_defaults(func=cmd_train)

    a = sub.add_parser("train-anatomy", help="train the lung-field U-Net on radiographs and their expert lung masks")
    a.add_argument("--images", required=True, help="folder of radiographs")
    a.add_argument("--masks", required=True, help="folder of lung masks with the same file names (nonzero = lung)")
    a.add_argument("--out", required=True, help="lung model folder to write")
    a.add_argument("--overwrite", action="store_true", help="replace a model already in --out (never a folder of other files)")
    a.add_argument("--minutes", type=non_negative, default=12.0, help="training time budget")
    a.add_argument("--seed", type=count, default=0, help="seed of the held-out fold, initialisation and augmentation")
    a.add_argument("--size", type=int, default=128, help="network input size in pixels")
    a.add_argument("--negative-share", type=fraction_or_zero, default=0.0,
                   help="share of each batch made of inputs with no upright lungs (noise, turned radiographs) and "
                        "an empty mask (default 0: measured worse on children and dense lungs, docs/anatomy.md)")
    add_quiet(a)
    a.set_defaults(func=cmd_train_anatomy)


def cmd_train(args) -> int:
    from SSLAnomalyLib.training.fitting import StartingEncoder, train_model

    command = command_line()
    start = StartingEncoder.load(args.start_from) if args.start_from else None
    base = start.config if start is not None else EncoderConfig()
    try:
        encoder_cfg = replace(base, input_size=args.size or base.input_size,
                              patch_layers=tuple(args.patch_layers.split(",")) if args.patch_layers else base.patch_layers)
    except ValueError as e:
        raise SystemExit(f"error: --patch-layers: {e}") from None
    lr = args.lr if args.lr is not None else (FINE_TUNE_LR if start is not None else LR)
    folder = train_model(args.normals, args.out, args.val_normals, device=args.device, minutes=args.minutes, lr=lr,
                         seed=args.seed, encoder_cfg=encoder_cfg,
                         pretext=args.pretext, fpr=args.fpr,
                         command=command, progress=not args.quiet, start=start, reference_views=args.reference_views,
                         calibration_views=args.calibration_views, standardise_positions=args.standardise_positions,
                         foreign_objects=args.foreign_objects, max_steps=args.max_steps, overwrite=args.overwrite)
    print(f"model written to {folder}")
    return 0


def cmd_train_anatomy(args) -> int:
    from SSLAnomalyLib.core.lung_model import LungNetConfig
    from SSLAnomalyLib.training.lung_training import train_lung_model

    command = command_line()
    folder = train_lung_model(args.images, args.masks, args.out, minutes=args.minutes, seed=args.seed,
                              config=LungNetConfig(input_size=args.size), command=command, progress=not args.quiet,
                              negative_share=args.negative_share, overwrite=args.overwrite)
    figures = json.loads((folder / "manifest.json").read_text())["figures"]
    print(f"lung model written to {folder}; held-out Dice mean {figures['held_out_dice_mean']:.3f} "
          f"(median {figures['held_out_dice_median']:.3f}, min {figures['held_out_dice_min']:.3f}, "
          f"n={figures['held_out_n']})")
    return 0
