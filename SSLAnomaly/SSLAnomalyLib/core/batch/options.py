"""What a batch does besides detecting, in one object: `sslanomaly detect`, the Slicer Logic's
`detectBatch` and the Dask driver all hand one to the batch runner (core/batch/runner.py), so that they lock,
resume, log, index, check and list a batch alike. Plain data (and module-level writers), so that it
also travels to Dask workers."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from SSLAnomalyLib.core.detection.detector import DetectionResult
    from SSLAnomalyLib.core.reading.image import Radiograph


@dataclass(frozen=True)
class CaseOutput:
    """Files per case written by code the core does not import (the Slicer scene bundle of
    `detect --mrb`, the Slicer export of `detectBatch`): `write(image, result, out_dir, name)`
    returns {kind: path}. It runs before the findings JSON, which marks the case done, so what it has
    to say of the case (a DICOM SEG's values left empty) it adds to `result.warnings`: the findings
    JSON and the batch's warnings then say it. `suffixes` are the files `<name><suffix>` it always
    writes, which `--resume` requires."""
    suffixes: tuple[str, ...]
    write: Callable[[Radiograph, DetectionResult, Path, str], dict[str, Path]]


@dataclass(frozen=True)
class BatchOptions:
    lock: bool = True             # refuse a second run into the same output folder
    resume: bool = False          # keep results an earlier run finished (same input, model, lung network, thresholds)
    prefetch: int = 2             # inputs read and prepared ahead of the one being scored (0: none)
    background_writer: bool = True  # write on a thread of its own while the next input is scored (False: MRML)
    failures_log: bool = True     # OUT/failures.log, a JSON line per input that failed
    batch_index: bool = True      # OUT/batch_index.json: each case name's input and file identity
    drift_check: bool = True      # warn once when the batch as a whole scores far above the normals
    worklist: bool = True         # OUT/worklist.csv, every case of the batch, highest score first
    lungs: bool = False           # also <name>.lungs.nrrd
    spacing: float | None = None  # mm per pixel for inputs that have none of their own (PNG, JPEG, a DICOM without one)
    overwrite: bool = True        # False: a case whose name holds results or an export fails rather than replace them
    outputs: tuple[CaseOutput, ...] = field(default_factory=tuple)  # e.g. the scene bundle (--mrb)

    def __post_init__(self):
        """A spacing no radiograph's pixel has is refused here, for every front end (the command line's
        --spacing checks the same bounds): 1e-300 mm failed every input with ITK's 'Singular matrix'."""
        if self.spacing is not None:
            from SSLAnomalyLib.core.reading.images import MAX_SPACING_MM, MIN_SPACING_MM

            if not MIN_SPACING_MM <= self.spacing <= MAX_SPACING_MM:
                raise ValueError(f"a pixel spacing of {self.spacing:g} mm is no radiograph's: give one from "
                                 f"{MIN_SPACING_MM:g} to {MAX_SPACING_MM:g} mm")
