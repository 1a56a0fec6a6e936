"""The Slicer Logic's batch (`detectBatch`) on the core's batch runner (core/batch/runner.py), so that it
locks, resumes, logs, indexes, checks drift and writes the worklist as `sslanomaly detect` does.

Cases are files, folders or volume nodes of the scene. Each case gets the command line's files
(findings JSON, heatmap, overlay, lung fields) and, written through MRML beside them, the Slicer
export (markups, segmentation, findings CSV, lung segmentation, DICOM SEG + SR for a DICOM input):
the runner is handed that export as a per-case writer, so the core never imports Slicer. Everything
touching the scene runs on the caller's thread; only files are read ahead on another.
"""

from __future__ import annotations

import logging
import os

import slicer

from SSLAnomalyLib.core.batch.case import Case, CaseRow
from SSLAnomalyLib.core.batch.options import BatchOptions, CaseOutput
from SSLAnomalyLib.core.batch.runner import BatchEvents, run_batch
from SSLAnomalyLib.core.results.export_owner import EXPORT_SUFFIXES, RECORD_SUFFIX
from SSLAnomalyLib.core.results.outputs import batch_files, unique_case_names
from SSLAnomalyLib.mrml.case import remove_case, show_detection
from SSLAnomalyLib.mrml.export import default_formats, export_case, left_out
from SSLAnomalyLib.mrml.volumes import is_heatmap, radiograph_to_volume_node, volume_node_to_radiograph

CORE_FORMATS = ("json", "heatmap")  # the core writes these for every case, as the command line does
ALWAYS_WRITTEN = ("csv", "mrk", "seg", "lungs")  # export formats that every case has (--resume requires them)


def batch_cases(inputs, out_dir) -> tuple[list[Case], dict[str, object], str | None]:
    """The cases of files, folders and volume nodes (None: every image volume of the scene),
    {case name: volume node} of those held by the scene, and a warning naming the files given more
    than once (each is scored once) and the DICOM objects passed over in folders (batch_files), or None. Files are read only when their turn comes; an
    `out_dir` inside an input folder is refused (PathError), as the command line refuses it."""
    if inputs is None:  # the scene's images, not labelmaps or the module's own heatmaps
        inputs = [n for n in slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode")
                  if n.GetClassName() != "vtkMRMLLabelMapVolumeNode" and not is_heatmap(n)]
    elif isinstance(inputs, (str, os.PathLike)) or hasattr(inputs, "GetID"):
        inputs = [inputs]
    volumes = [i for i in inputs if hasattr(i, "GetID")]
    files, notice = batch_files([i for i in inputs if not hasattr(i, "GetID")], out_dir)
    names = unique_case_names([v.GetName() for v in volumes] + files)
    scene = [Case(v.GetName(), n, image=lambda v=v: volume_node_to_radiograph(v)) for v, n in zip(volumes, names)]
    return scene + [Case(os.fsdecode(f), n, f) for f, n in zip(files, names[len(volumes):])], \
        {c.name: v for c, v in zip(scene, volumes)}, notice


def slicer_export(formats, volumes: dict[str, object]) -> CaseOutput:
    """The Slicer export of each case (`formats`; None: every one that applies but the scene
    bundle), through a volume node: the scene's own, or one made for a file case and removed after.
    Its files include the export's record (`<name>.export.json`), and its lung segmentation as 'lungs_seg' (the
    core's 'lungs' is the lung fields' NRRD): the runner sets aside a file of the case not among them. What the
    DICOM SEG and SR leave out (export.left_out: the source's values they leave empty, or why they are not
    written), which the panel's export shows, becomes the case's warnings."""
    def write(image, result, out_dir, name):
        volume = volumes.get(name) or radiograph_to_volume_node(image, name)
        try:
            show_detection(volume, result)
            chosen = default_formats(volume, scene_bundle=False) if formats is None else formats
            files = export_case(volume, out_dir, formats=[f for f in chosen if f not in CORE_FORMATS], name=name,
                                overwrite=True, other_image=True)
            if formats is None or "dicom" in formats:
                result.warnings += left_out(volume)
            return {**{"lungs_seg" if kind == "lungs" else kind: path for kind, path in files.items()},
                    "record": out_dir / f"{name}{RECORD_SUFFIX}"}
        finally:
            if name not in volumes:
                remove_case(volume)

    always = [f for f in (ALWAYS_WRITTEN if formats is None else formats) if f in ALWAYS_WRITTEN]
    return CaseOutput(tuple(EXPORT_SUFFIXES[f] for f in always), write)


class ProgressEvents(BatchEvents):
    """The console's view of a batch: `progress(done, total, input)` after each case (False stops
    it), failures and warnings in Slicer's log, as the command line prints them."""

    def __init__(self, progress) -> None:
        self.progress = progress

    def case_done(self, row: CaseRow, done: int, todo: int) -> bool | None:
        if row.error:
            logging.error(f"SSL Anomaly: {row.input}: {row.error}")
        for w in row.warnings:
            logging.warning(f"SSL Anomaly: {row.input}: {w}")
        return None if self.progress is None else self.progress(done, todo, row.input)

    def warning(self, text: str) -> None:
        logging.warning(f"SSL Anomaly: {text}")


def detect_batch(detector, inputs, output_folder, formats=None, overwrite: bool = False, progress=None,
                 resume: bool = False, spacing: float | None = None) -> list[dict]:
    """`AnomalyLogic.detectBatch` (its docstring says what it does); rows as it returns them."""
    cases, volumes, notice = batch_cases(inputs, output_folder)
    events = ProgressEvents(progress)
    if notice:
        events.warning(notice)
    options = BatchOptions(resume=resume, overwrite=overwrite or resume, lungs=True, spacing=spacing,
                           prefetch=0 if volumes else BatchOptions.prefetch, background_writer=False,
                           outputs=(slicer_export(formats, volumes),))
    report = run_batch(cases, output_folder, detector, options, events)
    rows = [{"input": r.input, "error": r.error} if r.error else
            {"input": r.input, "files": {k: str(v) for k, v in r.files.items()}} for r in report.rows]
    for row in rows if report.drift else []:
        row["warning"] = report.drift
    return rows
