"""One case of a batch in three steps: read (and prepare) it, score it, write its files. The batch
runner overlaps them across cases (reading ahead, writing behind); a Dask worker runs them in a row
(`process_case`). Every failure becomes the case's row, with the reason, and the batch goes on;
only a full disk is fatal (`CaseRow.fatal`), since every case after it would fail the same way."""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from SSLAnomalyLib.core.batch.options import BatchOptions
from SSLAnomalyLib.core.batch.resume import FileIdentity
from SSLAnomalyLib.core.detection.detector import AnomalyDetector, DetectionResult, PreparedSlice
from SSLAnomalyLib.core.files.errors import ReadError
from SSLAnomalyLib.core.reading.image import Radiograph
from SSLAnomalyLib.core.reading.images import read_radiograph
from SSLAnomalyLib.core.reading.shrink import give_file_spacing
from SSLAnomalyLib.core.results.outputs import LUNGS_SUFFIX, case_files, case_paths, write_case_outputs
from SSLAnomalyLib.core.results.set_aside import set_aside_earlier

SPACING_ASSUMED = "1.0 mm assumed"  # how each reader's warning ends where a file has no usable pixel spacing
SPACING_GIVEN = "mm given for the batch (--spacing)"
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


@dataclass(frozen=True)
class Case:
    input: str                  # the file as given, or the name of an image held in memory
    name: str                   # its results are <name>.findings.json, ... (unique in the batch)
    path: Path | None = None    # the file to read; None for an image held in memory
    image: Callable[[], Radiograph] | None = None  # gives that image (e.g. a Slicer volume's)

    def read(self) -> Radiograph:
        return read_radiograph(self.path) if self.image is None else self.image()


@dataclass
class Loaded:
    case: Case
    image: Radiograph | None = None
    prepared: list[PreparedSlice] | None = None
    identity: FileIdentity | None = None
    no_spacing: bool = False
    error: Exception | None = None


@dataclass
class CaseRow:
    """What became of one case: its files and findings document, or the reason it failed."""
    input: str
    name: str
    files: dict[str, Path] = field(default_factory=dict)
    document: dict | None = None  # the findings JSON as written
    error: str | None = None
    fatal: bool = False           # the disk is full: no later case can be written either
    warnings: list[str] = field(default_factory=list)  # the image's, less the batch-level spacing warning
    no_spacing: bool = False
    identity: FileIdentity | None = None


def promised(out_dir, name: str, options: BatchOptions) -> list[Path]:
    """Every file a case's results are made of under these options."""
    paths = list(case_paths(out_dir, name).values())
    paths += [Path(out_dir) / f"{name}{LUNGS_SUFFIX}"] * options.lungs
    return paths + [Path(out_dir) / f"{name}{s}" for output in options.outputs for s in output.suffixes]


def give_spacing(image: Radiograph, mm: float | None) -> bool:
    """Whether the file had no usable pixel spacing; if so and `mm` is given, `mm` becomes its file
    pixel's spacing (so area_mm2 and the heatmap's geometry use it; a reduced image's blocks are
    larger: `give_file_spacing`) and its warning says so."""
    assumed = [w for w in image.warnings if w.endswith(SPACING_ASSUMED)]
    if assumed and mm:
        give_file_spacing(image, float(mm))
        image.warnings = [w for w in image.warnings if w not in assumed]
        image.warnings.append(f"no usable pixel spacing in the file; {mm:g} {SPACING_GIVEN}")
    return bool(assumed)


def spacing_of(warnings: list[str]) -> str | None:
    """The mm per pixel (as the warning writes it) a result was measured at where its file had no
    spacing of its own; None where the file's own was used."""
    for w in warnings:
        if w.endswith(SPACING_ASSUMED):
            return f"{1.0:g}"
        if w.endswith(SPACING_GIVEN):
            return w[: -len(SPACING_GIVEN)].split()[-1]
    return None


def same_spacing(document: dict, options: BatchOptions) -> bool:
    """Whether a finished result was measured at the spacing these options give a file without one
    (`--resume --spacing 0.14` kept areas measured at 0.5 mm)."""
    used = spacing_of(document.get("warnings") or [])
    return used is None or used == f"{options.spacing or 1.0:g}"


def same_model(document: dict, detector: AnomalyDetector) -> bool:
    """Whether a finished result was made by this model folder's weights and calibration (its seal: a
    folder recalibrated or edited under the same model_id kept the earlier findings) on the lung fields of
    this lung network (its seal: the fields decide where the score and findings are computed, and
    SSLANOMALY_LUNGS or an upgrade changes them) at both of these thresholds (the image's decides the
    verdict, the pixel one the findings). A result that names no seal (written before it was recorded) is
    not known to be this model's."""
    lungs = detector.anatomy.model_sha256
    return (bool(detector.model_sha256) and document.get("model_sha256") == detector.model_sha256
            and bool(lungs) and document.get("lung_network_sha256") == lungs and same_thresholds(document, detector))


def unsealed(document: dict) -> bool:
    """Whether a result names no seal of its model folder or lung network (written, or exported from a
    Slicer scene saved, before they were recorded): nothing tells whether this model made it."""
    return not document.get("model_sha256") or not document.get("lung_network_sha256")


def same_thresholds(document: dict, detector: AnomalyDetector) -> bool:
    """Whether a result names this model's id and both of its thresholds."""
    return (document["model"] == detector.model_id
            and abs(document["threshold"] - round(detector.calibration.threshold, 6)) < 1e-6
            and abs(document["pixel_threshold"] - round(detector.calibration.pixel_threshold, 6)) < 1e-6)


def load_case(case: Case, detector: AnomalyDetector, options: BatchOptions) -> Loaded:
    """Read and prepare one case (on a prefetch thread); an error is kept for its turn."""
    try:
        identity = FileIdentity.of(case.path) if case.path is not None else None
        image = case.read()
        no_spacing = give_spacing(image, options.spacing)
        return Loaded(case, image, detector.prepare_ahead(image), identity, no_spacing)
    except Exception as e:  # reported with its case, in order
        return Loaded(case, error=e)


def score_case(loaded: Loaded, detector: AnomalyDetector, options: BatchOptions) -> DetectionResult:
    if loaded.error is not None:
        raise loaded.error
    return detector.detect(loaded.image, loaded.prepared, lungs=options.lungs)


def write_case(loaded: Loaded, result: DetectionResult, out_dir: Path, options: BatchOptions) -> CaseRow:
    """Every file of the case, the findings JSON last (it marks the case done, and `--resume` keeps a case
    so marked): what an earlier run left under its name that this one does not write (the `IM.lungs.nrrd`
    of a run with `--lungs`, of the image IM.jpeg held before) is set aside before the core's files, so
    that no kill leaves a kept result beside another run's files; the row's and the findings JSON's
    warnings say where, and so does the failure of a case whose own files then could not be written. Without
    `overwrite` (the Slicer Logic's default) a case fails where any file a batch may write or set aside under its
    name is there (`case_files`: a DICOM SR too, which no `promised` file names), and nothing is replaced or moved."""
    case, image, moved = loaded.case, loaded.image, None
    try:
        existing = [str(p) for p in case_files(out_dir, case.name) if os.path.lexists(p)]
        if existing and not options.overwrite:
            raise FileExistsError(f"not overwriting existing file(s): {', '.join(existing)} (ask to overwrite)")
        files = {}
        for output in options.outputs:
            files.update(output.write(image, result, out_dir, case.name))
        written = {p.name for p in [*files.values(), *promised(out_dir, case.name, options)]}  # the core's next
        moved = set_aside_earlier(out_dir, case.name, written)
        result.warnings += [moved] * bool(moved)  # in the findings JSON too, for whoever opens it later
        files.update(write_case_outputs(result, image, out_dir, case.name, lungs=options.lungs))
    except Exception as e:
        failed = failed_row(case, e)
        failed.error += f"; {moved}" * bool(moved)  # the runner's note names only the folder it sets aside next
        return failed
    warnings = [w for w in result.warnings if not w.endswith((SPACING_ASSUMED, SPACING_GIVEN))]
    return CaseRow(case.input, case.name, files, result.to_dict(image.source), warnings=warnings,
                   no_spacing=loaded.no_spacing, identity=loaded.identity)


def process_case(case: Case, detector: AnomalyDetector, out_dir: Path, options: BatchOptions) -> CaseRow:
    """The three steps in a row (a Dask worker's task)."""
    loaded = load_case(case, detector, options)
    try:
        result = score_case(loaded, detector, options)
    except Exception as e:
        return failed_row(case, e)
    return write_case(loaded, result, out_dir, options)


def failed_row(case: Case, error: Exception) -> CaseRow:
    fatal = isinstance(error, OSError) and error.errno in DISK_FULL
    return CaseRow(case.input, case.name, error=reason(error), fatal=fatal)


def reason(e: Exception) -> str:
    """What went wrong with one input, as one printable line (failures.log has a line per input)."""
    if isinstance(e, ReadError):
        text = e.reason
    elif isinstance(e, MemoryError):
        text = "out of memory while processing this input"
    else:
        text = f"{type(e).__name__}: {e}"
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())
