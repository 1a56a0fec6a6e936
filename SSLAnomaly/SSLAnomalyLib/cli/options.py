"""What every subcommand shares: argument types that refuse bad values with a reason, the help
texts of the common options, and the model and command-line helpers."""

from __future__ import annotations

import argparse
import math
import shlex
import sys

DEVICES = ("auto", "cpu", "cuda")
DEVICE_HELP = "where to run: auto (a CUDA GPU if there is one, else the CPU), cpu or cuda"
QUIET_HELP = "no progress bar"
MODEL_HELP = "bundled model name (adult, pediatric; default = adult) or a model folder"


class UsageError(SystemExit):
    """Options a subcommand finds wrong after parsing (missing together, contradicting each other):
    exit 2 like argparse's own refusals, where a SystemExit("error: ...") exited 1 like a failed input."""

    def __init__(self, message: str):
        super().__init__(2)
        self.message = message

    def __str__(self) -> str:
        return self.message


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


MIN_FPR = 0.001  # a rarer false positive would need thousands of normals to set (at least 5 above the threshold)
fraction = _ranged(_number, lambda v: MIN_FPR <= v < 1, f"from {MIN_FPR:g} to below 1")  # false-positive rates
fraction_or_zero = _ranged(_number, lambda v: 0 <= v < 1, "from 0 to below 1")      # shares of a batch
non_negative = _ranged(_number, lambda v: v >= 0, "0 or more")                       # minutes
positive = _ranged(_number, lambda v: v > 0, "more than 0")                          # learning rates
count = _ranged(_whole, lambda v: v >= 0, "0 or more")                               # seeds, views
deviations = _ranged(_number, lambda v: -5 <= v <= 10, "from -5 to 10")              # score offsets in deviations
positive_count = _ranged(_whole, lambda v: v > 0, "1 or more")                       # steps


def output_folder(text: str) -> str:
    """An argparse type: a folder to write, named (an empty --out, e.g. an unset shell variable in
    quotes, would mean the current folder and scatter results there)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must name a folder, not an empty string")
    return text


def model_out(text: str) -> str:
    """An argparse type: a model folder to write (`output_folder`), never inside the bundled models'
    folder (`registry.refuse_bundled_target`)."""
    from SSLAnomalyLib.core.model_files import registry

    output_folder(text)
    try:
        registry.refuse_bundled_target(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def pixel_spacing(text: str) -> float:
    """An argparse type: mm per pixel within the readers' bounds for a radiograph's pixel (an absurd
    spacing made every area infinite, and every input fail as JSON that cannot be written; a tiny one
    failed every input with ITK's 'Singular matrix')."""
    from SSLAnomalyLib.core.reading.images import MAX_SPACING_MM, MIN_SPACING_MM

    return _ranged(_number, lambda v: MIN_SPACING_MM <= v <= MAX_SPACING_MM,
                   f"from {MIN_SPACING_MM:g} to {MAX_SPACING_MM:g}")(text)


def input_size(text: str, multiple: int = 1) -> int:
    """An argparse type: a model input size in pixels, one a model folder holds and a multiple of
    `multiple` (--size 0 was a traceback once every image was read; 20 a finished model refused)."""
    from SSLAnomalyLib.core.model_files.model_folder import INPUT_SIZES

    return _ranged(_whole, lambda v: v in INPUT_SIZES and v % multiple == 0,
                   f"{f'a multiple of {multiple} ' if multiple > 1 else ''}from {INPUT_SIZES[0]} to "
                   f"{INPUT_SIZES[-1]} pixels")(text)


def add_model(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="default", help=MODEL_HELP)


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", choices=DEVICES, help=DEVICE_HELP)


def add_quiet(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help=QUIET_HELP)


def load_detector(args):
    """The detector of `--model` on `--device`, with the CPU threads detection should use."""
    from SSLAnomalyLib.core.detection.detector import AnomalyDetector

    detector = AnomalyDetector.load(args.model, device=args.device)
    detector.limit_cpu_threads()
    return detector


def warn_left_out(entries, of: str = "the normals") -> None:
    """Name on stderr each normal ("file: reason") a run went without: a site must see which of its
    normals (`of`: its training images) were not used."""
    for entry in entries:
        print(f"warning: {entry}; left out of {of}", file=sys.stderr)


def report_model(folder, what: str = "model") -> None:
    """Say what a run wrote and how far its threshold can be trusted (the expected false-positive rate
    with its interval, "unstable", the normals set aside as likely abnormal), after naming the normals
    it could not read: a site reads this line, not the card."""
    from SSLAnomalyLib.core.model_files import model_folder

    manifest = model_folder.load(folder).manifest
    warn_left_out(manifest.unread_normals())
    c = manifest.calibration
    print(f"{what} {manifest.model_id} written to {folder}: threshold {c.threshold:.3f} "
          f"(pixel threshold {c.pixel_threshold:.3f}) set for {100 * c.false_positive_rate:g} % false positives "
          f"on {len(c.normal_scores)} normals\n{c.text()}")


def command_line() -> str:
    """This run's command, as recorded in model manifests and evaluation results."""
    return "sslanomaly " + " ".join(shlex.quote(a) for a in sys.argv[1:])
