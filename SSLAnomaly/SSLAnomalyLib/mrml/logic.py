"""Everything the Slicer module does, usable without its panel (the module's `SSLAnomalyLogic` is
this class plus Slicer's parameter node), e.g. from the Python console:

    logic = slicer.util.getModuleLogic("SSLAnomaly")
    volume = logic.loadVolume("/data/cxr.dcm")
    logic.detect(volume)                       # heatmap, findings, table in the scene
    logic.exportCase(volume, "/data/out")

Why the imports are inside the methods (the one reason): Slicer imports this file when it loads the
module, before the Python packages the core needs (torch, MONAI, highdicom) may be installed. Each
method that needs them calls `ensureDependencies()` first and then imports the glue module by name.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import slicer

from SSLAnomalyLib.mrml import dependencies

MODULE_DIR = Path(__file__).resolve().parents[2]  # SSLAnomaly/, which holds SSLAnomalyLib


class AnomalyLogic:
    """Detectors are cached per (model folder as it is now, device, false-positive rate). Review calls work on any
    scene holding a detection, e.g. a reloaded one; each review change is autosaved under
    `reviewFolder` (default: <app data>/SSLAnomaly/reviews; None: no autosave), keyed by the image
    (not its name), so no review is restored onto another image."""

    def __init__(self) -> None:
        from SSLAnomalyLib.mrml.headless import app_data_folder
        from SSLAnomalyLib.mrml.removal import remove_derived_with_inputs

        remove_derived_with_inputs(slicer.mrmlScene)  # a deleted volume takes its heatmap and findings along
        self._detectors = {}
        self._dependenciesReady = False
        self.reviewFolder = app_data_folder() / "reviews"
        self._boxWatch = None  # mrml.review.BoxWatch, made on first use

    # --- dependencies -------------------------------------------------------------------------
    def dependenciesInstalled(self) -> bool:
        if not self._dependenciesReady:
            self._dependenciesReady = dependencies.installed()
        return self._dependenciesReady

    def ensureDependencies(self, askConfirmation: bool = True) -> None:
        if not self.dependenciesInstalled():
            dependencies.ensure(slicer.util.confirmOkCancelDisplay if askConfirmation else None, slicer)
            self._dependenciesReady = True

    # --- models and volumes -------------------------------------------------------------------
    def loadDetector(self, model: str = "default", device: str = "auto", falsePositiveRate: float | None = None):
        """The `AnomalyDetector` of a model (a bundled name or a folder), cached; with
        `falsePositiveRate`, its thresholds re-chosen on the calibration normals at that rate."""
        self.ensureDependencies()
        from SSLAnomalyLib.core.detection.detector import AnomalyDetector
        from SSLAnomalyLib.core.model_files.model_folder import fingerprint

        key, state = (str(model), device, falsePositiveRate), fingerprint(model)
        if self._detectors.get(key, (None,))[0] != state:  # a folder trained again replaces what was loaded
            detector = AnomalyDetector.load(model, device=device)
            detector.limit_cpu_threads()  # leaves a core to the GUI; one small image gains nothing from more
            if falsePositiveRate is not None:
                detector.calibration = detector.calibration.with_false_positive_rate(falsePositiveRate)
            self._detectors[key] = (state, detector)
        return self._detectors[key][1]

    def bundledModels(self) -> list:
        """(name, label) of each bundled model for the model selector, the default first. Read from
        models.json alone, so the panel lists them before any dependency is installed."""
        from SSLAnomalyLib.core.model_files import registry

        default = registry.default_name()
        return [(m.name, f"{m.name}{' (default)' if m.name == default else ''}: {m.population.label}")
                for m in registry.bundled_models()]

    def modelChoices(self, folders=(), selected: str = "default") -> tuple[list, int]:
        """(label, model) pairs for the model selector (bundled models, then `folders`) and the index of
        `selected`: a model kept in a reloaded scene is shown as chosen, added if not listed yet."""
        choices = [(label, name) for name, label in self.bundledModels()]
        choices += [(Path(folder).name, str(folder)) for folder in folders]
        models = [model for _, model in choices]
        if selected == "default":
            return choices, 0
        if str(selected) not in models:
            choices.append((Path(selected).name, str(selected)))
            models.append(str(selected))
        return choices, models.index(str(selected))

    def calibrate(self, normalsFolder, outputFolder, model: str = "default", falsePositiveRate: float = 0.05):
        """A new model folder with `model`'s thresholds, percentiles and score standardisation
        re-derived from a site's normals (encoder unchanged); returns its path."""
        self.ensureDependencies()
        from SSLAnomalyLib.training.site_calibration import calibrate_model

        return calibrate_model(model, _folder(normalsFolder), _folder(outputFolder), falsePositiveRate, False)

    def describeModel(self, model):
        """The verified manifest (a `Manifest`) of a model folder; raises if the folder is not a valid model."""
        self.ensureDependencies()
        from SSLAnomalyLib.core.model_files.model_folder import load

        return load(model).manifest

    def loadVolume(self, path):
        """Read a radiograph file (DICOM, PNG, JPEG, NRRD, NIfTI) into a new volume node."""
        self.ensureDependencies()
        from SSLAnomalyLib.mrml.volumes import load_volume

        return load_volume(path)

    def radiographFromVolume(self, volumeNode):
        """The core's `Radiograph` of a volume node (a copy, geometry kept)."""
        if volumeNode is None:
            raise ValueError("Select an input volume.")
        self.ensureDependencies()
        from SSLAnomalyLib.mrml.volumes import volume_node_to_radiograph

        return volume_node_to_radiograph(volumeNode)

    # --- detection ----------------------------------------------------------------------------
    def detect(self, volumeNode, model: str = "default", device: str = "auto", opacity: float = 0.5,
               falsePositiveRate: float | None = None):
        """Score `volumeNode`; its heatmap (same grid, own colour map, foreground in the slice views),
        finding ROIs and findings table appear in the scene. Returns the `DetectionResult`."""
        detector = self.loadDetector(model, device, falsePositiveRate)
        result = detector.detect(self.radiographFromVolume(volumeNode), lungs=True)
        self.showResult(volumeNode, result, opacity)
        return result

    def startDetection(self, volumeNode, model: str = "default", device: str = "auto"):
        """A `DetectionJob` scoring `volumeNode` on a worker thread (the scene is left alone until
        `showResult` is called with its result on the main thread)."""
        from SSLAnomalyLib.jobs import DetectionJob

        detector = self.loadDetector(model, device)
        image = self.radiographFromVolume(volumeNode)
        return DetectionJob(lambda radiograph: detector.detect(radiograph, lungs=True), [image]).start()

    def setLungFieldsVisible(self, volumeNode, visible: bool = True) -> None:
        """Show or hide the outline of the lung fields detection found on `volumeNode`."""
        from SSLAnomalyLib.mrml.lungs import set_lung_fields_visible

        set_lung_fields_visible(volumeNode, visible)

    def showResult(self, volumeNode, result, opacity: float = 0.5):
        """Put a `DetectionResult` into the scene (detections from a worker thread end here)."""
        from SSLAnomalyLib.mrml.case import show_detection

        heat = show_detection(volumeNode, result, opacity)
        self._afterReview(volumeNode, save=False)
        return heat

    def detectBatch(self, inputs, outputFolder, model: str = "default", device: str = "auto",
                    formats=None, overwrite: bool = False, progress=None,
                    falsePositiveRate: float | None = None, resume: bool = False,
                    spacing: float | None = None) -> list[dict]:
        """Detect on each of `inputs` (files, folders, volume nodes, or None for every volume in
        the scene) and write each case into `outputFolder`: the files `sslanomaly detect --lungs`
        writes, and the Slicer export in `formats` (default: all that apply but the scene bundle).
        The batch runs as the command line's does (SSLAnomalyLib/core/batch/runner.py): the folder is
        locked, failures go to failures.log, and batch_index.json, worklist.csv and the drift check
        are written; `resume` keeps what an earlier batch finished for the same input and model;
        `spacing` (mm) is used for inputs without a pixel spacing (PNG, JPEG). `progress(done,
        total, name)` is called after each case; returning False stops the batch. A case that fails
        is reported in its row and the batch goes on. Cases read from files are removed from the
        scene once exported; the scene's own volumes stay. Returns one row per case run:
        {"input", "files"} or {"input", "error"} (and "warning" when the batch drifts)."""
        detector = self.loadDetector(model, device, falsePositiveRate)
        from SSLAnomalyLib.mrml.batch import detect_batch

        return detect_batch(detector, inputs, outputFolder, formats, overwrite, progress, resume, spacing)

    # --- display ------------------------------------------------------------------------------
    def caseResult(self, volumeNode):
        """Image-level result stored for `volumeNode` (None before detection)."""
        from SSLAnomalyLib.mrml.case import case_result

        return case_result(volumeNode)

    def resultText(self, volumeNode) -> str:
        """The score against the calibrated threshold, as the panel shows it (else why there is none)."""
        from SSLAnomalyLib.mrml.case import no_result

        result = self.caseResult(volumeNode)
        if result is None:
            why = no_result(volumeNode)
            return f"{why[0].upper()}{why[1:]}."
        from SSLAnomalyLib.core.results.figures import percentile_text, score_texts
        verdict = "ABNORMAL" if result["abnormal"] else "within the normal range"
        score, threshold = score_texts(result["score"], result["threshold"])
        parts = result["components"]
        detail = (f" (image-level {parts['pooled']:.3g}, patch-level {parts['patch']:.3g})"
                  if {"pooled", "patch"} <= set(parts) else "")
        return (f"Score {score}{detail} vs threshold {threshold} "
                f"({percentile_text(result['percentile'])} percentile of calibration normals): {verdict}; "
                f"{len(self.findingNodes(volumeNode))} finding(s). Model: {result['model']}."
                + "".join(f"\nWarning: {w}" for w in result["warnings"]))

    def sensitivityRange(self, volumeNode) -> tuple[float, float, float]:
        """(minimum, maximum, current) for the sensitivity slider."""
        from SSLAnomalyLib.mrml.case import sensitivity_range

        return sensitivity_range(volumeNode)

    def setSensitivity(self, volumeNode, threshold: float) -> None:
        """Hide heatmap pixels and unreviewed findings below `threshold`."""
        from SSLAnomalyLib.mrml.case import set_sensitivity

        set_sensitivity(volumeNode, threshold)

    def setOpacity(self, opacity: float) -> None:
        """Heatmap opacity in every slice view."""
        from SSLAnomalyLib.mrml.heatmap import set_foreground_opacity

        set_foreground_opacity(opacity)

    # --- findings and review ------------------------------------------------------------------
    def findingNodes(self, volumeNode) -> list:
        """The finding ROI nodes of `volumeNode`, in id order (rows of the findings table)."""
        from SSLAnomalyLib.mrml.finding_rois import finding_nodes

        return finding_nodes(volumeNode)

    def findings(self, volumeNode) -> list[dict]:
        """Each finding as exported: id, label, score, bbox_ijk, centroid_ras, area_mm2, review, shown."""
        from SSLAnomalyLib.mrml.finding_rois import seen_record

        return [seen_record(node) for node in self.findingNodes(volumeNode)]

    def findingsTable(self, volumeNode):
        from SSLAnomalyLib.mrml.table import findings_table

        return findings_table(volumeNode)

    def findingAtRow(self, volumeNode, row: int):
        """The finding ROI shown in `row` (0-based) of the findings table (the panel's selection)."""
        from SSLAnomalyLib.mrml.table import finding_at_row

        return finding_at_row(volumeNode, row)

    def reviewFinding(self, findingNode, status: str | None = None, label: str | None = None,
                      note: str | None = None):
        """Confirm ('confirmed') or reject ('rejected') a finding, relabel it, or note on it."""
        from SSLAnomalyLib.mrml.finding_rois import VOLUME_REFERENCE, review_finding

        node = review_finding(findingNode, status=status, label=label, note=note)
        self._afterReview(findingNode.GetNodeReference(VOLUME_REFERENCE))
        return node

    def confirmFinding(self, findingNode):
        return self.reviewFinding(findingNode, status="confirmed")

    def rejectFinding(self, findingNode):
        return self.reviewFinding(findingNode, status="rejected")

    def addMissedFinding(self, volumeNode, bboxIJK=None, sliceIndex: int = 0, label: str | None = None,
                         note: str = ""):
        """A finding the model missed: box [i0, j0, i1, j1] in pixels (default: a small box in the
        image centre to drag onto the lesion); a volume that shares its findings with a clone gets its own first."""
        from SSLAnomalyLib.mrml.clones import own_results
        from SSLAnomalyLib.mrml.finding_rois import MISSED_LABEL, add_missed_finding

        own_results(volumeNode)  # the other keeps the findings and table they shared, without this one
        node = add_missed_finding(volumeNode, bboxIJK, sliceIndex, label or MISSED_LABEL, note)
        self._afterReview(volumeNode)
        return node

    def _afterReview(self, volumeNode, save: bool = True) -> None:
        """After a review change, a box moved in a view included: the table follows, the review is autosaved
        (`save`: not after a detection, whose earlier review stays to be restored), the findings are watched."""
        from SSLAnomalyLib.mrml.review import BoxWatch, autosave

        if save:
            autosave(volumeNode, self.reviewFolder)
        self._boxWatch = self._boxWatch or BoxWatch(self._afterReview)
        self._boxWatch.watch(volumeNode)

    def savedReview(self, volumeNode):
        """The autosaved review of the image `volumeNode` holds (under whatever name it was shown), or None."""
        from SSLAnomalyLib.core.results.review import find_review
        from SSLAnomalyLib.mrml.volumes import image_identity_of

        if self.reviewFolder is None:
            return None
        return find_review(self.reviewFolder, volumeNode.GetName(), image_identity_of(volumeNode))

    def restoreReview(self, volumeNode, path=None) -> int:
        """Re-apply a saved review (default: the latest autosave, the one the panel offers; one kept aside when
        a review was not restored, by its path) to the findings of `volumeNode`, e.g. after a crash and a new
        detection; returns how many saved findings were applied. A review saved for another image is refused
        (ReviewError), whatever the volume's name."""
        from SSLAnomalyLib.mrml.review import restore_review

        path = path or self.savedReview(volumeNode)
        if path is None or not Path(path).exists():
            raise FileNotFoundError(f"no saved review of '{volumeNode.GetName()}'")
        self._afterReview(volumeNode, save=False)
        with self._boxWatch.paused():  # the boxes it moves back are saved once, after
            applied = restore_review(volumeNode, path)
        self._afterReview(volumeNode)
        return applied

    # --- export, scenes, training -------------------------------------------------------------
    def exportCase(self, volumeNode, outputFolder, formats=None, overwrite: bool = False) -> dict:
        """Write the reviewed case (see SSLAnomalyLib.mrml.export.FORMATS); never replaces an existing
        file unless `overwrite`, nor ever another image's (export_case says how). Returns {kind: path}."""
        self.ensureDependencies()
        from SSLAnomalyLib.mrml.export import export_case

        return export_case(volumeNode, outputFolder, formats=formats, overwrite=overwrite)

    def exportLeftOut(self, volumeNode) -> list[str]:
        """What `exportCase` leaves out, one line each: a format the case would have (e.g. DICOM SEG and SR
        whose source file is gone), or a source header value the SEG and SR leave empty; [] where none."""
        from SSLAnomalyLib.mrml.export import left_out

        return left_out(volumeNode)

    def saveScene(self, path):
        """The whole scene (review included) as a `.mrb`, its folder made if missing; never replaces a file."""
        from SSLAnomalyLib.mrml.bundle import save_new_scene_bundle

        return save_new_scene_bundle(path)

    def loadScene(self, path) -> None:
        """Replace the scene by a saved `.mrb`."""
        from SSLAnomalyLib.mrml.bundle import load_scene_bundle

        load_scene_bundle(path)
        for volume in slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode"):
            self._afterReview(volume, save=False)

    def trainCommand(self, normalsFolder, outputFolder, minutes: float = 30.0, valNormalsFolder=None,
                     device: str = "auto", startFrom=None, otherSourceNormalsFolder=None) -> list[str]:
        """`sslanomaly train` in a separate Python process (Slicer's own Python). `startFrom` (a model name or folder)
        starts from that model's encoder; with `minutes=0` it is only refitted. `otherSourceNormalsFolder`: normals of
        other acquisitions, projected out. No starting model and no minutes is refused (a random, untrained encoder)."""
        if not startFrom and float(minutes) == 0:
            raise ValueError("0 minutes without a starting model would fit a random, untrained encoder: start from "
                             "a model to refit it on these normals, or give minutes to train an encoder")
        command = [python(), "-m", "SSLAnomalyLib.cli", "train", "--normals", _folder(normalsFolder),
                   "--out", _folder(outputFolder), "--minutes", str(float(minutes)), "--device", device]
        if valNormalsFolder:
            command += ["--val-normals", _folder(valNormalsFolder)]
        if startFrom:
            command += ["--start-from", str(startFrom)]
        if otherSourceNormalsFolder:
            command += ["--other-source-normals", _folder(otherSourceNormalsFolder)]
        return command

    def startTraining(self, normalsFolder, outputFolder, minutes: float = 30.0, valNormalsFolder=None,
                      device: str = "auto", startFrom=None, log=None, otherSourceNormalsFolder=None):
        """A started `TrainingJob` (progress: each phase's share, of training the seconds of the budget;
        cancel stops the process tree).
        Interrupted training resumes from its last checkpoint when started again into the same folder."""
        from SSLAnomalyLib.jobs import TrainingJob

        command = self.trainCommand(normalsFolder, outputFolder, minutes, valNormalsFolder, device, startFrom,
                                    otherSourceNormalsFolder)
        return self._startProcess(TrainingJob, command, log, outputFolder)

    def startCalibration(self, normalsFolder, outputFolder, model: str = "default", falsePositiveRate: float = 0.05,
                         log=None):
        """A started `TrainingJob` running `calibrate` (see there) in a separate process, as training
        runs, so the panel stays responsive (progress: normals scored; cancel stops the process tree)."""
        from SSLAnomalyLib.jobs import TrainingJob

        command = [python(), "-m", "SSLAnomalyLib.cli", "calibrate", "--model", str(model), "--normals",
                   _folder(normalsFolder), "--out", _folder(outputFolder), "--fpr", str(float(falsePositiveRate))]
        return self._startProcess(TrainingJob, command, log, outputFolder)

    def _startProcess(self, jobClass, command: list[str], log, output):
        """A process job running the module's command line in Slicer's Python (the module on its path) into `output`."""
        self.ensureDependencies()
        environment = dict(os.environ, PYTHONPATH=os.pathsep.join([str(MODULE_DIR), os.environ.get("PYTHONPATH", "")]))
        return jobClass(command, env=environment, on_line=log, output=Path(_folder(output))).start()

    def train(self, normalsFolder, outputFolder, minutes: float = 30.0, valNormalsFolder=None,
              device: str = "auto", startFrom=None, log=print, otherSourceNormalsFolder=None) -> Path:
        """Train from the console, blocking; each output line goes to `log`."""
        job = self.startTraining(normalsFolder, outputFolder, minutes, valNormalsFolder, device, startFrom, log,
                                 otherSourceNormalsFolder)
        code = job.wait()
        if code != 0:
            raise RuntimeError(f"training failed (exit code {code}); see the log above")
        return Path(outputFolder)


def _folder(path) -> str:  # absolute for the command line: a relative '-site' would be read as an option;
    return str(Path(os.path.expanduser(path)).absolute())  # `~` is the home folder, as typed in the console


def python() -> str:
    """Slicer's Python interpreter (PythonSlicer) inside Slicer, this interpreter elsewhere."""
    launcher = Path(sys.executable).with_name("PythonSlicer" + Path(sys.executable).suffix)  # .exe on Windows
    return str(launcher) if launcher.exists() else sys.executable
