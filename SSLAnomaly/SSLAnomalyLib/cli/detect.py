"""`sslanomaly detect`: score radiographs and write each one's findings JSON, heatmap and overlay,
and the batch's worklist. The batch runner (core/batch/runner.py) does the work; this file turns the
command line into its options and shows its progress: a bar, a verdict line per image, and each
warning and failure as it happens."""

from __future__ import annotations

import sys
from pathlib import Path

from tqdm import tqdm

from SSLAnomalyLib.cli.options import add_device, add_model, fraction, load_detector, output_folder, pixel_spacing
from SSLAnomalyLib.cli.termination import signals_held
from SSLAnomalyLib.core.batch.case import CaseRow
from SSLAnomalyLib.core.batch.options import BatchOptions, CaseOutput
from SSLAnomalyLib.core.batch.runner import BatchEvents, file_cases, run_batch
from SSLAnomalyLib.core.results.outputs import batch_files, shown
from SSLAnomalyLib.core.results.worklist import verdict_line


def add_parser(sub) -> None:
    d = sub.add_parser("detect", help="score radiographs; write findings JSON, heatmap NRRD and overlay PNG")
    d.add_argument("inputs", nargs="+", help="image files (DICOM, PNG, JPEG, TIFF, BMP, NRRD, NIfTI, MHA) or folders")
    add_model(d)
    d.add_argument("--out", required=True, type=output_folder, help="output folder")
    add_device(d)
    d.add_argument("--fpr", type=fraction, default=None,
                   help="false-positive rate on normals for the thresholds (default: the rate the model was "
                        "calibrated at, which `sslanomaly models` shows)")
    d.add_argument("--mrb", action="store_true", help="also write a Slicer scene bundle <name>.mrb per input")
    d.add_argument("--lungs", action="store_true",
                   help="also write the lung fields as <name>.lungs.nrrd (uint8 0/1 on the input's grid and geometry)")
    d.add_argument("--spacing", type=pixel_spacing, default=None, metavar="MM",
                   help="pixel spacing in mm for inputs that have none (PNG, JPEG, TIFF, BMP, a DICOM without one): used "
                        "for area_mm2 and the heatmap's geometry; DICOM, NRRD and NIfTI keep their own")
    d.add_argument("--resume", action="store_true",
                   help="keep results an earlier run finished for the same input file, model folder (weights and "
                        "calibration), lung network and thresholds")
    d.add_argument("--quiet", action="store_true", help="no progress bar and no verdict line per image")
    d.set_defaults(func=cmd_detect)


class TerminalEvents(BatchEvents):
    """A progress bar on stderr, a verdict per image on stdout, warnings and errors on stderr."""

    def __init__(self, quiet: bool) -> None:
        self.quiet, self.bar = quiet, None

    def started(self, todo: int, kept: int) -> None:
        self.bar = tqdm(total=todo, desc="detect", unit="img", file=sys.stderr, disable=self.quiet)

    def case_done(self, row: CaseRow, done: int, todo: int) -> None:
        if row.error:
            tqdm.write(f"error: {shown(row.input)}: {row.error}", file=sys.stderr)
        for w in row.warnings:
            tqdm.write(f"warning: {shown(row.input)}: {w}", file=sys.stderr)
        if row.document is not None and not self.quiet:
            self.bar.clear()
            print(verdict_line(row.document, shown(row.input)), flush=True)
        self.bar.update(1)

    def warning(self, text: str) -> None:
        tqdm.write(f"warning: {text}", file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def scene_bundle() -> CaseOutput:
    """`<name>.mrb` per case (imported here: only --mrb needs slicer-core)."""
    with signals_held():
        from SSLAnomalyLib.mrml.bundle import write_mrb

    def write(image, result, out_dir: Path, name: str) -> dict[str, Path]:
        return {"mrb": write_mrb(image, result, out_dir / f"{name}.mrb", overwrite=True)}

    return CaseOutput((".mrb",), write)


def cmd_detect(args) -> int:
    """One bad input never stops the batch: each failure is reported on stderr and in failures.log
    as it happens. A case counts as done once its findings JSON exists (written last, atomically),
    so a batch killed at any moment resumes with `--resume` exactly where it stopped."""
    detector = load_detector(args)
    if args.fpr is not None:
        detector.calibration = detector.calibration.with_false_positive_rate(args.fpr)
        warn_rate(detector.calibration)
    files, notice = batch_files(args.inputs, args.out)
    if notice:
        print(f"warning: {notice}", file=sys.stderr)
    if not files:
        print(f"error: no input images found in {' '.join(args.inputs)}", file=sys.stderr)
        return 2
    options = BatchOptions(resume=args.resume, lungs=args.lungs, spacing=args.spacing,
                           outputs=(scene_bundle(),) if args.mrb else ())
    events = TerminalEvents(args.quiet)
    try:  # Ctrl-C and SIGTERM end here as KeyboardInterrupt: cli.main says what is kept and exits 130 or 143
        report = run_batch(file_cases(files), args.out, detector, options, events)
    finally:
        events.close()
    print(report.summary())
    return 1 if report.failures else 0


def warn_rate(calibration) -> None:
    """Say on stderr, as `calibrate` and the card say it, when the model's calibration normals cannot
    meet the --fpr asked (the threshold is then their highest, above the rate asked) or set it stably:
    the thresholds moved there silently, though a site reads the rate asked as the rate it gets."""
    expected = calibration.expected_fpr()
    if expected.unmet or expected.unstable:
        print(f"warning: --fpr {calibration.false_positive_rate:g}: {expected.text()}", file=sys.stderr)
