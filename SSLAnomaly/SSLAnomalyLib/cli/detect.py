"""`sslanomaly detect`: score radiographs and write each one's findings JSON, heatmap and overlay."""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm import tqdm

from SSLAnomalyLib.cli.options import add_device, add_model, add_quiet, fraction, load_detector
from SSLAnomalyLib.core.atomic import remove_leftovers
from SSLAnomalyLib.core.drift import warn_batch
from SSLAnomalyLib.core.io import ReadError, list_inputs, read_radiograph, write_image
from SSLAnomalyLib.core.outputs import (case_paths, output_lock, refuse_output_inside_inputs, shown, unique_case_names,
                                        write_batch_index, write_case_outputs, write_failures)

FAILURE_LOG = "failures.log"
LUNGS_SUFFIX = ".lungs.nrrd"
PREFETCH = 2  # images read and prepared ahead of the one being scored


def add_parser(sub) -> None:
    d = sub.add_parser("detect", help="score radiographs; write findings JSON, heatmap NRRD and overlay PNG")
    d.add_argument("inputs", nargs="+", help="image files (DICOM, PNG, JPEG, NRRD, NIfTI, MHA) or folders")
    add_model(d)
    d.add_argument("--out", required=True, help="output folder")
    add_device(d)
    d.add_argument("--fpr", type=fraction, default=None,
                   help="false-positive rate on normals for the thresholds (default: the model's, 0.05)")
    d.add_argument("--mrb", action="store_true", help="also write a Slicer scene bundle <name>.mrb per input")
    d.add_argument("--lungs", action="store_true",
                   help="also write the lung fields as <name>.lungs.nrrd (uint8 0/1 on the input's grid and geometry)")
    d.add_argument("--resume", action="store_true", help="skip inputs whose results are already complete")
    add_quiet(d)
    d.set_defaults(func=cmd_detect)


def cmd_detect(args) -> int:
    """One bad input never stops the batch: each failure is reported on stderr and in failures.log
    as it happens. A case counts as done once its findings JSON exists (written last, atomically),
    so a batch killed at any moment resumes with `--resume` exactly where it stopped."""
    detector = load_detector(args)
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
