"""`sslanomaly detect | evaluate | train | train-anatomy | calibrate | models | sample`: a thin command line
over the core (the benchmark is developer tooling: `sslanomaly-bench`)."""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from tqdm import tqdm

from SSLAnomalyLib.core.calibration import DEFAULT_FPR
from SSLAnomalyLib.core.drift import warn_batch
from SSLAnomalyLib.core.encoder import EncoderConfig
from SSLAnomalyLib.core.errors import PathError
from SSLAnomalyLib.core.io import ReadError, list_inputs, read_radiograph, write_image
from SSLAnomalyLib.core.model_folder import ModelError
from SSLAnomalyLib.training.defaults import DEFAULT_PRETEXT, FINE_TUNE_LR, LR, OBJECTIVE_NAMES
from SSLAnomalyLib.core.atomic import atomic_write_text, remove_leftovers
from SSLAnomalyLib.core.outputs import (case_paths, output_lock, refuse_output_inside_inputs, shown, unique_case_names,
                                        write_failures, write_batch_index,
                      write_case_outputs)

FAILURE_LOG = "failures.log"
LUNGS_SUFFIX = ".lungs.nrrd"
PREFETCH = 2  # images read and prepared ahead of the one being scored


def _load_detector(args):
    from SSLAnomalyLib.core.detector import AnomalyDetector

    detector = AnomalyDetector.load(args.model, device=args.device)
    detector.limit_cpu_threads()
    return detector


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, not {text}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, not {text}")
    return value


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {text}") from None


def _ranged(parse, within, needs: str):
    """An argparse type: `parse(text)`, refused unless `within(value)`, with "must be <needs>"."""
    def convert(text: str):
        value = parse(text)
        if not within(value):
            raise argparse.ArgumentTypeError(f"must be {needs}, not {text}")
        return value
    return convert


fraction = _ranged(_number, lambda v: 0 < v < 1, "between 0 and 1 (exclusive)")  # false-positive rates
fraction_or_zero = _ranged(_number, lambda v: 0 <= v < 1, "from 0 to below 1")      # shares of a batch
non_negative = _ranged(_number, lambda v: v >= 0, "0 or more")                       # minutes
positive = _ranged(_number, lambda v: v > 0, "more than 0")                          # learning rates
count = _ranged(_whole, lambda v: v >= 0, "0 or more")                               # seeds, views
positive_count = _ranged(_whole, lambda v: v > 0, "1 or more")                       # steps


def pretext(text: str):
    """An argparse type: `training.objectives.Pretext` of 'name[:weight],...'."""
    from SSLAnomalyLib.training.objectives import Pretext

    try:
        return Pretext.parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


DEVICES = ("auto", "cpu", "cuda")
DEVICE_HELP = "where to run: auto (a CUDA GPU if there is one, else the CPU), cpu or cuda"
QUIET_HELP = "no progress bar"
MODEL_HELP = "bundled model name (adult, pediatric; default = adult) or a model folder"


def cmd_detect(args) -> int:
    """One bad input never stops the batch: each failure is reported on stderr and in failures.log
    as it happens. A case counts as done once its findings JSON exists (written last, atomically),
    so a batch killed at any moment resumes with `--resume` exactly where it stopped."""
    detector = _load_detector(args)
    if args.fpr is not None:
        detector.calibration = detector.calibration.with_false_positive_rate(args.fpr)
    files = list_inputs(args.inputs)
    if not files:
        print(f"error: no input images found in {' '.join(args.inputs)}", file=sys.stderr)
        return 2
    out = Path(args.out)
    refuse_output_inside_inputs(out, args.inputs)
    out.mkdir(parents=True, exist_ok=True)
    with output_lock(out):
        return _detect_batch(args, detector, files, out)


def _detect_batch(args, detector, files, out: Path) -> int:
    remove_leftovers(out)
    names = unique_case_names(files)
    write_batch_index(out, files, names)
    todo = [(f, n) for f, n in zip(files, names) if not (args.resume and _kept(args, detector, out, f, n))]
    log = out / FAILURE_LOG
    log.unlink(missing_ok=True)  # every input without results is tried again, so the log starts afresh
    write_mrb = None
    if args.mrb:
        from SSLAnomalyLib.mrml.bundle import write_mrb
    failures, percentiles = [], []

    def load(item):
        path, name = item
        try:
            image = read_radiograph(path)
            return path, name, image, detector.prepare_ahead(image), None
        except Exception as e:  # reported with its input below
            return path, name, None, None, e

    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = [pool.submit(load, item) for item in todo[:PREFETCH]]
        queue = iter(todo[PREFETCH:])
        bar = tqdm(total=len(todo), desc="detect", unit="img", file=sys.stderr, disable=args.quiet)
        while pending:
            path, name, image, prepared, error = pending.pop(0).result()
            nxt = next(queue, None)
            if nxt is not None:
                pending.append(pool.submit(load, nxt))
            try:
                if error is not None:
                    raise error
                result = detector.detect(image, prepared, lungs=args.lungs)
                if write_mrb is not None:
                    write_mrb(image, result, out / f"{name}.mrb", overwrite=True)
                if result.lungs is not None:
                    write_image(result.lungs, out / f"{name}{LUNGS_SUFFIX}")
                written = write_case_outputs(result, image, out, name)  # findings JSON last: the case is done
                percentiles.append((written["findings"], result.percentile))
                for w in result.warnings:
                    tqdm.write(f"warning: {shown(path)}: {w}", file=sys.stderr)
            except Exception as e:
                failures.append((path, _reason(e)))
                write_failures(log, failures)
                tqdm.write(f"error: {shown(path)}: {failures[-1][1]}", file=sys.stderr)
            bar.update(1)
        bar.close()
    for name in set(names) - {n for _, n in todo}:  # cases an earlier run of this batch finished (--resume)
        done_json = case_paths(out, name)["findings"]
        try:
            percentiles.append((done_json, float(json.loads(done_json.read_text(encoding="utf-8"))["percentile"])))
        except (OSError, ValueError, KeyError, TypeError):
            pass  # not ours to judge: it is counted out of the batch's drift check
    drift = warn_batch(percentiles)
    if drift:
        print(f"warning: {drift}", file=sys.stderr)
    done = len(todo) - len(failures)
    print(f"{done} of {len(todo)} input(s) written to {out}"
          + (f" ({len(files) - len(todo)} already done)" if len(todo) < len(files) else "")
          + (f"; {len(failures)} failed, listed in {log}" if failures else ""))
    return 1 if failures else 0




def _kept(args, detector, out: Path, path, name: str) -> bool:
    """With --resume, an earlier result is kept only if it is of this input, by this model at these
    thresholds, with every file this run would write; otherwise the case is done again."""
    paths = case_paths(out, name)
    if not all(p.exists() for p in paths.values()) or (args.lungs and not (out / f"{name}{LUNGS_SUFFIX}").exists()):
        return False
    try:
        done = json.loads(paths["findings"].read_text(encoding="utf-8"))
        return (done["input"] == str(path) and done["model"] == detector.model_id
                and abs(done["threshold"] - round(detector.calibration.threshold, 6)) < 1e-6)
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _reason(e: Exception) -> str:
    """What went wrong with one input, as one printable line (failures.log has a line per input)."""
    if isinstance(e, ReadError):
        text = e.reason
    elif isinstance(e, MemoryError):
        text = "out of memory while processing this input"
    else:
        text = f"{type(e).__name__}: {e}"
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


def cmd_evaluate(args) -> int:
    from SSLAnomalyLib.evaluation.evaluate import evaluate_boxes, evaluate_images
    from SSLAnomalyLib.evaluation.perturbations import parse_families

    detector = _load_detector(args)
    if args.boxes:
        if not args.images:
            raise SystemExit("error: --boxes needs --images DIR")
        result = evaluate_boxes(detector, args.boxes, args.images, progress=not args.quiet)
    else:
        if not (args.normal and args.abnormal):
            raise SystemExit("error: evaluate needs --normal DIR and --abnormal DIR (or --boxes CSV --images DIR)")
        try:
            families = parse_families(args.perturb) if args.perturb else []
        except ValueError as e:
            raise SystemExit(f"error: --perturb: {e}") from None
        result = evaluate_images(detector, args.normal, args.abnormal, progress=not args.quiet,
                                 scores_csv=args.scores_csv, perturb=families, seed=args.seed)
    result["command"] = "sslanomaly " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    text = json.dumps(result, indent=1, allow_nan=False)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(args.json), text)
    print(text)
    return 0


def cmd_train(args) -> int:
    from SSLAnomalyLib.training.fitting import StartingEncoder, train_model

    command = "sslanomaly " + " ".join(shlex.quote(a) for a in sys.argv[1:])
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
                         foreign_objects=args.foreign_objects, max_steps=args.max_steps)
    print(f"model written to {folder}")
    return 0


def cmd_train_anatomy(args) -> int:
    from SSLAnomalyLib.core.lung_model import LungNetConfig
    from SSLAnomalyLib.training.lung_training import train_lung_model

    command = "sslanomaly " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    folder = train_lung_model(args.images, args.masks, args.out, minutes=args.minutes, seed=args.seed,
                              config=LungNetConfig(input_size=args.size), command=command, progress=not args.quiet,
                              negative_share=args.negative_share)
    figures = json.loads((folder / "manifest.json").read_text())["figures"]
    print(f"lung model written to {folder}; held-out Dice mean {figures['held_out_dice_mean']:.3f} "
          f"(median {figures['held_out_dice_median']:.3f}, min {figures['held_out_dice_min']:.3f}, "
          f"n={figures['held_out_n']})")
    return 0


def cmd_calibrate(args) -> int:
    from SSLAnomalyLib.training.site_calibration import calibrate_model

    folder = calibrate_model(args.model, args.normals, args.out, fpr=args.fpr, progress=not args.quiet)
    manifest = json.loads((folder / "manifest.json").read_text())
    c = manifest["calibration"]
    print(f"calibrated model {manifest['model_id']} written to {folder}: threshold {c['threshold']:.3f} at "
          f"{100 * c['false_positive_rate']:g} % false positives on {c['n_normals']} normals")
    return 0


def cmd_models(args) -> int:
    """The bundled models: name, population, input, measured figures and card."""
    from SSLAnomalyLib.core import model_folder, registry

    default = registry.default_name()
    for m in registry.bundled_models():
        try:
            manifest = model_folder.load(m.folder)[0]
        except ModelError as e:
            print(f"{m.name}: unusable ({e.reason})")
            continue
        size = manifest["encoder"]["input_size"]
        measured = manifest.get("measured", {})
        figures = "".join(f"\n    {name}: {text}" for name, text in measured_lines(measured)) or " not measured"
        print(f"{m.name}{' (default)' if m.name == default else ''}: {m.population.label} - {m.description}\n"
              f"  model id {manifest.get('model_id')}, input {size}x{size} px, "
              f"threshold {manifest['calibration']['threshold']:.3f} at "
              f"{100 * manifest['calibration']['false_positive_rate']:g} % false positives\n"
              f"  measured:{figures}\n  card: {m.folder / model_folder.CARD}")
    return 0


def measured_lines(measured: dict) -> list[tuple[str, str]]:
    """The figures a model card records (`scripts/install_bundled_model.py`), as short lines."""
    lines = []
    for name, d in measured.items():
        if name == "shifted" and isinstance(d, dict):
            lines += [(f"shifted ({family})", f"AUROC {f['auroc']:.3f}, {100 * f['fpr_at_threshold']:.0f} % of normals flagged")
                      for family, f in d.get("perturbations", {}).items()]
        elif isinstance(d, dict) and "auroc" in d:
            flagged = f", {100 * d['fpr_at_threshold']:.0f} % of normals flagged" if "fpr_at_threshold" in d else ""
            lines.append((name, f"AUROC {d['auroc']:.3f} ({d.get('n_normal')} normal vs {d.get('n_abnormal')} abnormal{flagged})"))
        elif isinstance(d, dict) and "pointing_game" in d:
            lines.append((name, f"pointing game {d['pointing_game']:.3f} on {d.get('n_images')} images"))
    return lines


def cmd_sample(args) -> int:
    from SSLAnomalyLib.core.sample import sample_inputs

    for path in sample_inputs(args.out, args.data):
        print(path)
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sslanomaly", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("detect", help="score radiographs; write findings JSON, heatmap NRRD and overlay PNG")
    d.add_argument("inputs", nargs="+", help="image files (DICOM, PNG, JPEG, NRRD, NIfTI, MHA) or folders")
    d.add_argument("--model", default="default", help=MODEL_HELP)
    d.add_argument("--out", required=True, help="output folder")
    d.add_argument("--device", default="auto", choices=DEVICES, help=DEVICE_HELP)
    d.add_argument("--fpr", type=fraction, default=None,
                   help="false-positive rate on normals for the thresholds (default: the model's, 0.05)")
    d.add_argument("--mrb", action="store_true", help="also write a Slicer scene bundle <name>.mrb per input")
    d.add_argument("--lungs", action="store_true",
                   help="also write the lung fields as <name>.lungs.nrrd (uint8 0/1 on the input's grid and geometry)")
    d.add_argument("--resume", action="store_true", help="skip inputs whose results are already complete")
    d.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    d.set_defaults(func=cmd_detect)

    e = sub.add_parser("evaluate", help="AUROC/AP on labelled folders, or localisation against boxes")
    e.add_argument("--model", default="default", help=MODEL_HELP)
    e.add_argument("--normal", help="folder of normal images")
    e.add_argument("--abnormal", help="folder of abnormal images")
    e.add_argument("--boxes", help="CSV with columns image,x0,y0,x1,y1,label (pixel coordinates)")
    e.add_argument("--images", help="folder of the images named in --boxes")
    e.add_argument("--json", help="write the figures to this JSON file")
    e.add_argument("--scores-csv", metavar="CSV", help="also write every image's score (and each perturbed copy's) to this CSV")
    e.add_argument("--perturb", metavar="FAMILIES",
                   help="also score both folders under seeded acquisition perturbations: 'all' or a comma-separated "
                        "list of fov, translate, rotate, gamma, contrast, noise, blur, lowres, jpeg, markers, combined, "
                        "zoom_gamma; each reports AUROC, AP and the FPR/TPR at the model's threshold")
    e.add_argument("--seed", type=count, default=0, help="seed of the perturbations")
    e.add_argument("--device", default="auto", choices=DEVICES, help=DEVICE_HELP)
    e.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    e.set_defaults(func=cmd_evaluate)

    t = sub.add_parser("train", help="train an encoder on normal radiographs and calibrate a model folder")
    t.add_argument("--normals", required=True, nargs="+", metavar="DIR",
                   help="folder(s) of normal radiographs (the only training data)")
    t.add_argument("--out", required=True, help="model folder to write (checkpoints in OUT/work, resumable)")
    t.add_argument("--val-normals", nargs="+", metavar="DIR", help="folder(s) of held-back normal radiographs for calibration")
    t.add_argument("--device", default="auto", choices=DEVICES, help=DEVICE_HELP)
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
    t.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    t.set_defaults(func=cmd_train)

    a = sub.add_parser("train-anatomy", help="train the lung-field U-Net on radiographs and their expert lung masks")
    a.add_argument("--images", required=True, help="folder of radiographs")
    a.add_argument("--masks", required=True, help="folder of lung masks with the same file names (nonzero = lung)")
    a.add_argument("--out", required=True, help="lung model folder to write")
    a.add_argument("--minutes", type=non_negative, default=12.0, help="training time budget")
    a.add_argument("--seed", type=count, default=0, help="seed of the held-out fold, initialisation and augmentation")
    a.add_argument("--size", type=int, default=128, help="network input size in pixels")
    a.add_argument("--negative-share", type=fraction_or_zero, default=0.0,
                   help="share of each batch made of inputs with no upright lungs (noise, turned radiographs) and "
                        "an empty mask (default 0: measured worse on children and dense lungs, docs/anatomy.md)")
    a.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    a.set_defaults(func=cmd_train_anatomy)

    c = sub.add_parser("calibrate", help="re-derive percentiles, score standardisation and thresholds from a "
                                         "site's own normals (encoder unchanged) into a new model folder")
    c.add_argument("--model", default="default", help=MODEL_HELP)
    c.add_argument("--normals", required=True, nargs="+", metavar="DIR", help="folder(s) of the site's normal radiographs")
    c.add_argument("--out", required=True, help="new model folder to write")
    c.add_argument("--fpr", type=fraction, default=DEFAULT_FPR, help="false-positive rate on normals for the thresholds")
    c.add_argument("--quiet", action="store_true", help=QUIET_HELP)
    c.set_defaults(func=cmd_calibrate)

    m = sub.add_parser("models", help="list the bundled models (name, population, input, measured figures)")
    m.set_defaults(func=cmd_models)

    s = sub.add_parser("sample", help="put a sample radiograph in a folder (real data if present, else synthetic)")
    s.add_argument("--out", required=True, help="folder to put the sample radiograph in")
    s.add_argument("--data", help="folder of radiographs to take the sample from")
    s.set_defaults(func=cmd_sample)

    return p


def main(argv=None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if getattr(args, "device", None) == "cuda":
        import torch

        if not torch.cuda.is_available():
            p.error("--device cuda: no CUDA device is available on this machine (use --device auto or cpu)")
    try:
        return args.func(args)
    except PathError as e:  # a model folder, an input, a review: each names itself and the reason
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # e.g. an output folder that cannot be written
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; completed results are kept (rerun with --resume to finish)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
