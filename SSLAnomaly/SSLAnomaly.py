"""SSL Anomaly: finds anomalies in chest radiographs with a self-supervised encoder trained on
normal radiographs only, shows a heatmap and findings over the image, lets the radiologist review
them, and exports the result (Slicer files, CSV/JSON, DICOM SEG + SR).

The widget only collects parameters and calls the logic; everything a button does is a
`SSLAnomalyLogic` method usable from the Python console. The work itself is in `SSLAnomalyLib`:
the pure core and the mrml glue (its `mrml_*` modules), imported only once the dependencies are
installed, so that this module loads in a Slicer without them.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Annotated

import qt
import slicer
import vtk
from slicer import vtkMRMLScalarVolumeNode
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

MODULE_DIR = Path(__file__).resolve().parent
REQUIREMENTS = MODULE_DIR / "Resources" / "requirements.txt"
TORCH_REQUIREMENT = ">=2.2"
DEVICES = ("auto", "cpu", "cuda")
MODEL_FOLDERS_SETTING = "SSLAnomaly/ModelFolders"
NEVER_PIP_INSTALLED = ("torch", "SimpleITK")  # the PyTorch extension's torch and Slicer's own SimpleITK


class SSLAnomaly(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = "SSL Anomaly"
        self.parent.categories = ["Quantification"]
        self.parent.dependencies = []  # PyTorch (extension) is asked for on first use, not at load
        self.parent.contributors = ["SSLAnomaly developers"]
        self.parent.helpText = """
Finds regions of a chest radiograph that differ from normal radiographs. Select a radiograph
(DICOM CR/DX, PNG, JPEG, NRRD, NIfTI; a 3D volume is scored slice by slice) and click
<b>Detect anomalies</b>: a heatmap is shown over the image, the image score is compared with the
model's threshold (calibrated on normal radiographs only, at a stated false-positive rate), and each
suspicious region becomes a finding you can confirm, reject, relabel, annotate, or add if missed.
Export writes the reviewed findings as CSV/JSON, markups, segmentation, heatmap and scene, and as
DICOM SEG + Structured Report when the input came from DICOM. Two models are bundled: <b>adult</b>
(the default) and <b>pediatric</b>; at another site, <b>Calibrate on site normals</b> re-derives the
thresholds from that site's normal radiographs in seconds. The lung fields the model scored inside
are outlined (<b>Show lung fields</b>). Every step is also a <tt>SSLAnomalyLogic</tt> method for the
Python console (batch over files, folders, scene volumes).
<p><b>Not for diagnosis.</b> It flags departures from the normal radiographs the model was trained
on; it does not name diseases, and a low score does not rule disease out. See the model card.</p>
"""
        self.parent.acknowledgementText = """
The method builds on anatomy-aware self-supervised anomaly detection: Sato J. et al., "Anatomy-aware
self-supervised learning for anomaly detection in chest radiographs", iScience 26(7):107086, 2023,
with patch-level heatmaps in the manner of PaDiM/PatchCore. The bundled pediatric model was trained on
normal pediatric radiographs of Kermany et al. (doi:10.17632/rscbjbr9sj.2, CC BY 4.0); the adult model
on adult normals of the NIH Clinical Center (RSNA Pneumonia Detection Challenge); the lung-field network
on the lung masks of the OpenIST chest X-ray set.
"""


@parameterNodeWrapper
class SSLAnomalyParameterNode:
    """What the panel edits; saved with the scene."""

    inputVolume: vtkMRMLScalarVolumeNode
    model: str = "default"
    device: Annotated[str, Choice(list(DEVICES))] = "auto"  # the wrapper fills the combo box with the choices
    opacity: Annotated[float, WithinRange(0.0, 1.0)] = 0.5
    exportFolder: Path = Path.home()
    overwrite: bool = False
    normalsFolder: Path = Path.home()
    modelOutputFolder: Path = Path.home()
    trainMinutes: Annotated[float, WithinRange(0.0, 10000.0)] = 30.0
    trainFromSelectedModel: bool = False
    showLungs: bool = True


class SSLAnomalyWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: parameters in, logic calls out. Detection runs on a worker thread and training in
    a separate process, so the GUI stays responsive and both can be cancelled."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._job = None          # running detection: {"thread", "cancelled", "result", "error", "volume"}
        self._training = None     # running training: qt.QProcess
        self._timer = None
        self._sliderVolume = None  # the volume whose sensitivity the slider shows (it lives on its heatmap)

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/SSLAnomaly.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = SSLAnomalyLogic()
        self.logic.reviewFolder = Path(qt.QStandardPaths.writableLocation(qt.QStandardPaths.AppDataLocation),
                                       "SSLAnomaly", "reviews")

        self._populateModels()
        self._timer = qt.QTimer()
        self._timer.setInterval(100)
        self._timer.timeout.connect(self._pollDetection)

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.ui.modelSelector.currentIndexChanged.connect(self.onModelChanged)
        self.ui.addModelButton.clicked.connect(self.onAddModelFolder)
        self.ui.detectButton.clicked.connect(self.onDetect)
        self.ui.cancelButton.clicked.connect(self.onCancel)
        self.ui.sensitivitySlider.valueChanged.connect(self.onSensitivityChanged)
        self.ui.opacitySlider.valueChanged.connect(self.onOpacityChanged)
        self.ui.confirmButton.clicked.connect(lambda: self._review("confirmed"))
        self.ui.rejectButton.clicked.connect(lambda: self._review("rejected"))
        self.ui.relabelButton.clicked.connect(self.onRelabel)
        self.ui.noteButton.clicked.connect(self.onNote)
        self.ui.addFindingButton.clicked.connect(self.onAddFinding)
        self.ui.exportButton.clicked.connect(self.onExport)
        self.ui.trainButton.clicked.connect(self.onTrain)
        self.ui.calibrateButton.clicked.connect(self.onCalibrate)
        self.ui.showLungsCheckBox.toggled.connect(self.onShowLungs)
        self.ui.cancelTrainingButton.clicked.connect(self.onCancelTraining)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.onCancel()
        self.onCancelTraining()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGui)

    def onSceneStartClose(self, caller, event) -> None:
        self.onCancel()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            self._parameterNode.inputVolume = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")

    def setParameterNode(self, parameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGui)
        self._parameterNode = parameterNode
        if self._parameterNode:
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateGui)
            self._updateGui()

    def _updateGui(self, caller=None, event=None) -> None:
        """Buttons, result text and table follow the selected volume and whether work is running."""
        volume = self._parameterNode.inputVolume if self._parameterNode else None
        busy = self._job is not None
        ready = self.logic.dependenciesInstalled()  # until then nothing is imported (or installed)
        result = self.logic.caseResult(volume) if volume and ready else None
        self.ui.detectButton.enabled = volume is not None and not busy
        self.ui.cancelButton.enabled = busy
        self.ui.exportButton.enabled = result is not None and not busy
        for button in (self.ui.confirmButton, self.ui.rejectButton, self.ui.relabelButton, self.ui.noteButton,
                       self.ui.addFindingButton):
            button.enabled = result is not None
        if not busy:
            self.ui.resultLabel.text = (self.logic.resultText(volume) if volume and ready else "Select a radiograph."
                                        if ready else "Python packages are installed on the first detection.")
        self.ui.findingsTableView.setMRMLTableNode(self.logic.findingsTable(volume) if result else None)
        if result and volume is not self._sliderVolume:
            self._resetSensitivitySlider(volume)
        self.ui.trainButton.enabled = self._training is None
        self.ui.cancelTrainingButton.enabled = self._training is not None

    # --- models -------------------------------------------------------------------------------
    def _populateModels(self) -> None:
        self.ui.modelSelector.clear()
        for name, label in self.logic.bundledModels():
            self.ui.modelSelector.addItem(label, name)
        for folder in self._savedModelFolders():
            self.ui.modelSelector.addItem(Path(folder).name, folder)

    def _savedModelFolders(self) -> list:
        saved = qt.QSettings().value(MODEL_FOLDERS_SETTING) or []
        return [saved] if isinstance(saved, str) else list(saved)

    def onModelChanged(self, index) -> None:
        if self._parameterNode and index >= 0:
            self._parameterNode.model = self.ui.modelSelector.itemData(index)

    def onAddModelFolder(self) -> None:
        folder = qt.QFileDialog.getExistingDirectory(slicer.util.mainWindow(), "Select a model folder")
        if not folder:
            return
        with slicer.util.tryWithErrorDisplay("Not a usable model folder.", waitCursor=True):
            self._addModelFolder(folder)

    def _addModelFolder(self, folder: str) -> None:
        """Verify a model folder, remember it and select it."""
        self.logic.describeModel(folder)  # verifies manifest and hashes before offering it
        folders = [f for f in self._savedModelFolders() if f != folder] + [folder]
        qt.QSettings().setValue(MODEL_FOLDERS_SETTING, folders)
        self._populateModels()
        self.ui.modelSelector.setCurrentIndex(self.ui.modelSelector.count - 1)

    # --- detection ----------------------------------------------------------------------------
    def onDetect(self) -> None:
        with slicer.util.tryWithErrorDisplay("Detection could not start.", waitCursor=True):
            p = self._parameterNode
            self.logic.ensureDependencies()
            detector = self.logic.loadDetector(p.model, p.device)
            image = self.logic.radiographFromVolume(p.inputVolume)
            job = {"cancelled": False, "result": None, "error": None, "volume": p.inputVolume}

            def work():
                try:
                    job["result"] = detector.detect(image, lungs=True)
                except Exception as e:  # reported on the main thread
                    job["error"] = e

            job["thread"] = threading.Thread(target=work, daemon=True)
            self._job = job
            self.ui.progressBar.setRange(0, 0)  # busy indicator: the engine reports no fractions
            self.ui.resultLabel.text = f"Detecting anomalies in '{p.inputVolume.GetName()}'..."
            job["thread"].start()
            self._timer.start()
            self._updateGui()

    def _pollDetection(self) -> None:
        job = self._job
        if job is None or job["thread"].is_alive():
            return
        self._timer.stop()
        self._job = None
        self.ui.progressBar.setRange(0, 100)
        self.ui.progressBar.value = 100 if job["result"] is not None else 0
        if job["error"] is not None:
            slicer.util.errorDisplay(f"Detection failed: {job['error']}")
        elif not job["cancelled"]:
            with slicer.util.tryWithErrorDisplay("Could not show the result.", waitCursor=True):
                self.logic.showResult(job["volume"], job["result"], opacity=self._parameterNode.opacity)
                self._resetSensitivitySlider(job["volume"])
                saved = self.logic.savedReview(job["volume"])
                if saved and slicer.util.confirmYesNoDisplay(
                        f"A review of '{job['volume'].GetName()}' was saved earlier ({saved}). Restore its decisions?"):
                    self.logic.restoreReview(job["volume"], saved)
        self._updateGui()

    def onCancel(self) -> None:
        """The worker cannot be interrupted mid-image; its result is discarded when it ends."""
        if self._job is not None:
            self._job["cancelled"] = True
            self._job = None
            self._timer.stop()
            self.ui.progressBar.setRange(0, 100)
            self.ui.progressBar.value = 0
            self._updateGui()
            self.ui.resultLabel.text = "Detection cancelled."

    def _resetSensitivitySlider(self, volume) -> None:
        self._sliderVolume = volume
        low, high, value = self.logic.sensitivityRange(volume)
        self.ui.sensitivitySlider.blockSignals(True)
        self.ui.sensitivitySlider.minimum, self.ui.sensitivitySlider.maximum = low, high
        self.ui.sensitivitySlider.blockSignals(False)
        self.ui.sensitivitySlider.value = value

    def onSensitivityChanged(self, value) -> None:
        volume = self._parameterNode.inputVolume if self._parameterNode else None
        if volume is not None and self.logic.caseResult(volume) is not None:
            self.logic.setSensitivity(volume, value)

    def onOpacityChanged(self, value) -> None:
        self.logic.setOpacity(value)

    # --- review -------------------------------------------------------------------------------
    def _selectedFinding(self):
        rows = {index.row() for index in self.ui.findingsTableView.selectionModel().selectedIndexes()}
        nodes = self.logic.findingNodes(self._parameterNode.inputVolume)
        if len(rows) != 1 or min(rows) >= len(nodes):
            raise ValueError("Select one finding in the table first.")
        return nodes[min(rows)]

    def _review(self, status) -> None:
        with slicer.util.tryWithErrorDisplay("Could not review the finding."):
            self.logic.reviewFinding(self._selectedFinding(), status=status)

    def onRelabel(self) -> None:
        with slicer.util.tryWithErrorDisplay("Could not relabel the finding."):
            self.logic.reviewFinding(self._selectedFinding(), label=self.ui.labelLineEdit.text)

    def onNote(self) -> None:
        with slicer.util.tryWithErrorDisplay("Could not save the note."):
            self.logic.reviewFinding(self._selectedFinding(), note=self.ui.noteLineEdit.text)

    def onAddFinding(self) -> None:
        with slicer.util.tryWithErrorDisplay("Could not add a finding."):
            label = self.ui.labelLineEdit.text.strip() or None
            self.logic.addMissedFinding(self._parameterNode.inputVolume, label=label,
                                        note=self.ui.noteLineEdit.text)

    # --- export and training ------------------------------------------------------------------
    def onExport(self) -> None:
        with slicer.util.tryWithErrorDisplay("Export failed.", waitCursor=True):
            p = self._parameterNode
            written = self.logic.exportCase(p.inputVolume, p.exportFolder, overwrite=p.overwrite)
            slicer.util.infoDisplay("Written:\n" + "\n".join(str(path) for path in written.values()))

    def onCalibrate(self) -> None:
        with slicer.util.tryWithErrorDisplay("Calibration failed.", waitCursor=True):
            p = self._parameterNode
            folder = self.logic.calibrate(p.normalsFolder, p.modelOutputFolder, model=p.model)
            self._addModelFolder(str(folder))
            slicer.util.infoDisplay(f"Calibrated model written to {folder} and selected.")

    def onShowLungs(self, visible) -> None:
        if self._parameterNode and self._parameterNode.inputVolume is not None:
            self.logic.setLungFieldsVisible(self._parameterNode.inputVolume, visible)

    def onTrain(self) -> None:
        with slicer.util.tryWithErrorDisplay("Training could not start."):
            p = self._parameterNode
            self.logic.ensureDependencies()
            command = self.logic.trainCommand(p.normalsFolder, p.modelOutputFolder, minutes=p.trainMinutes,
                                              valNormalsFolder=self.ui.valNormalsFolderSelector.currentPath,
                                              device=p.device, startFrom=p.model if p.trainFromSelectedModel else None)
            process = qt.QProcess()
            process.setProcessChannelMode(qt.QProcess.MergedChannels)
            process.setProcessEnvironment(self._processEnvironment())
            process.readyReadStandardOutput.connect(
                lambda: self.ui.trainingLog.appendPlainText(bytes(process.readAllStandardOutput()).decode(errors="replace").rstrip()))
            process.finished.connect(lambda code, status: self._trainingFinished(code, p.modelOutputFolder))
            self.ui.trainingLog.clear()
            self.ui.trainingLog.appendPlainText(" ".join(command))
            process.start(command[0], command[1:])
            self._training = process
            self._updateGui()

    @staticmethod
    def _processEnvironment():
        environment = qt.QProcessEnvironment.systemEnvironment()
        environment.insert("PYTHONPATH", os.pathsep.join([str(MODULE_DIR), environment.value("PYTHONPATH")]))
        return environment

    def onCancelTraining(self) -> None:
        """Stops training; the training resumes from its last checkpoint when started again."""
        if self._training is not None:
            self._training.kill()

    def _trainingFinished(self, exitCode, folder) -> None:
        self._training = None
        self._updateGui()
        if exitCode == 0:
            folders = [f for f in self._savedModelFolders() if f != str(folder)] + [str(folder)]
            qt.QSettings().setValue(MODEL_FOLDERS_SETTING, folders)
            self._populateModels()
            self.ui.trainingLog.appendPlainText(f"Model ready: {folder} (selected in the model list)")
            self.ui.modelSelector.setCurrentIndex(self.ui.modelSelector.count - 1)
        else:
            self.ui.trainingLog.appendPlainText(f"Training stopped (exit code {exitCode}); start again to resume.")


def missing_requirements(requirements_file: Path = REQUIREMENTS) -> list[str]:
    """Requirement lines of `requirements_file` whose distribution is not installed."""
    missing = []
    for line in Path(requirements_file).read_text().splitlines():
        requirement = line.split("#")[0].strip()
        if not requirement:
            continue
        name = requirement.split(";")[0].split("[")[0]
        for separator in ("==", ">=", "<=", "~=", ">", "<", "!="):
            name = name.split(separator)[0]
        try:
            importlib.metadata.version(name.strip())
        except importlib.metadata.PackageNotFoundError:
            missing.append(requirement)
    return missing


class SSLAnomalyLogic(ScriptedLoadableModuleLogic):
    """Everything the module does, usable without the GUI, e.g. from the Python console:

        logic = slicer.util.getModuleLogic("SSLAnomaly")
        volume = logic.loadVolume("/data/cxr.dcm")
        logic.detect(volume)                       # heatmap, findings, table in the scene
        logic.exportCase(volume, "/data/out")

    Detectors are cached per (model, device). Calls that need the core install its dependencies
    first (with confirmation); review calls work on any scene holding a detection, e.g. a reloaded one.
    """

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        self._detectors = {}
        self._dependenciesReady = False
        self.reviewFolder = None  # where each review decision is autosaved as <volume>.review.json

    def getParameterNode(self):
        return SSLAnomalyParameterNode(super().getParameterNode())

    # --- dependencies -------------------------------------------------------------------------
    def dependenciesInstalled(self) -> bool:
        """True once torch and every package of requirements.txt are importable."""
        if not self._dependenciesReady:
            self._dependenciesReady = importlib.util.find_spec("torch") is not None and not missing_requirements()
        return self._dependenciesReady

    def ensureDependencies(self, askConfirmation: bool = True) -> None:
        """torch from the PyTorch extension (which picks the CUDA build for the driver), the rest
        from requirements.txt (which lists neither torch nor SimpleITK, so Slicer's stay)."""
        if self.dependenciesInstalled():
            return
        if importlib.util.find_spec("torch") is None:
            self._installTorch(askConfirmation)
        missing = missing_requirements()
        if missing:
            if askConfirmation and not slicer.util.confirmOkCancelDisplay(
                    "SSL Anomaly needs these Python packages, which will be downloaded and installed now:\n"
                    + "\n".join(missing)):
                raise RuntimeError("SSL Anomaly cannot run without its Python packages: " + ", ".join(missing))
            packaging = getattr(slicer, "packaging", None)
            if packaging is not None and hasattr(packaging, "pip_ensure"):  # Slicer >= 5.11
                packaging.pip_ensure(packaging.load_requirements(str(REQUIREMENTS)), requester="SSLAnomaly",
                                     skip_packages=list(NEVER_PIP_INSTALLED))
            else:
                slicer.util.pip_install(missing)
            importlib.invalidate_caches()
        self._dependenciesReady = True

    @staticmethod
    def _installTorch(askConfirmation: bool) -> None:
        try:
            import PyTorchUtils
        except ImportError:
            raise RuntimeError("SSL Anomaly needs PyTorch: install the 'PyTorch' extension from the Extensions "
                               "Manager, restart Slicer and try again.") from None
        if PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=askConfirmation,
                                                         torchVersionRequirement=TORCH_REQUIREMENT) is None:
            raise RuntimeError("PyTorch was not installed; SSL Anomaly cannot run without it.")

    def _lib(self, name: str):
        """A module of SSLAnomalyLib, after the dependencies are in place."""
        self.ensureDependencies()
        return importlib.import_module(f"SSLAnomalyLib.{name}")

    # --- models and volumes -------------------------------------------------------------------
    def loadDetector(self, model: str = "default", device: str = "auto", falsePositiveRate: float | None = None):
        """The `AnomalyDetector` of a model folder ('default': the bundled model), cached; with
        `falsePositiveRate`, its thresholds re-chosen on the calibration normals at that rate."""
        key = (str(model), device, falsePositiveRate)
        if key not in self._detectors:
            detector = self._lib("detector").AnomalyDetector.load(model, device=device)
            detector.limit_cpu_threads()  # leaves a core to the GUI; one small image gains nothing from more
            if falsePositiveRate is not None:
                detector.calibration = detector.calibration.with_false_positive_rate(falsePositiveRate)
            self._detectors[key] = detector
        return self._detectors[key]

    def bundledModels(self) -> list:
        """(name, label) of each bundled model for the model selector, the default first."""
        registry = self._lib("registry")
        default = registry.default_name()
        return [(m.name, f"{m.name}{' (default)' if m.name == default else ''}: {m.population.label}")
                for m in registry.bundled_models()]

    def calibrate(self, normalsFolder, outputFolder, model: str = "default", falsePositiveRate: float = 0.05):
        """A new model folder with `model`'s thresholds, percentiles and score standardisation
        re-derived from a site's normals (encoder unchanged); returns its path."""
        return self._lib("site_calibration").calibrate_model(model, normalsFolder, outputFolder,
                                                             fpr=falsePositiveRate, progress=False)

    def describeModel(self, model) -> dict:
        """The verified manifest of a model folder (raises if the folder is not a valid model)."""
        manifest, _, _ = self._lib("model_folder").load(model)
        return manifest

    def loadVolume(self, path):
        """Read a radiograph file (DICOM, PNG, JPEG, NRRD, NIfTI) into a new volume node."""
        return self._lib("mrml_volumes").load_volume(path)

    def radiographFromVolume(self, volumeNode):
        """The core's `Radiograph` of a volume node (a copy, geometry kept)."""
        if volumeNode is None:
            raise ValueError("Select an input volume.")
        return self._lib("mrml_volumes").volume_node_to_radiograph(volumeNode)

    # --- detection ----------------------------------------------------------------------------
    def detect(self, volumeNode, model: str = "default", device: str = "auto", opacity: float = 0.5,
               falsePositiveRate: float | None = None):
        """Score `volumeNode`; its heatmap (same grid, own colour map, foreground in the slice views),
        finding ROIs and findings table appear in the scene. Returns the `DetectionResult`."""
        detector = self.loadDetector(model, device, falsePositiveRate)
        result = detector.detect(self.radiographFromVolume(volumeNode), lungs=True)
        self.showResult(volumeNode, result, opacity)
        return result

    def setLungFieldsVisible(self, volumeNode, visible: bool = True) -> None:
        """Show or hide the outline of the lung fields detection found on `volumeNode`."""
        self._lib("mrml_lungs").set_lung_fields_visible(volumeNode, visible)

    def showResult(self, volumeNode, result, opacity: float = 0.5):
        """Put a `DetectionResult` into the scene (detections from a worker thread end here)."""
        return self._lib("mrml_case").show_detection(volumeNode, result, opacity)

    def detectBatch(self, inputs, outputFolder, model: str = "default", device: str = "auto",
                    formats=None, overwrite: bool = False, progress=None,
                    falsePositiveRate: float | None = None) -> list[dict]:
        """Detect on each of `inputs` (files, folders, volume nodes, or None for every volume in
        the scene) and export each case into `outputFolder` (default formats: all but the scene
        bundle). `progress(done, total, name)` is called after each case; returning False stops
        the batch. A case that fails is reported in its row and the batch goes on. Cases read
        from files are removed from the scene once exported; the scene's own volumes stay.
        Returns one row per case: {"input", "files"} or {"input", "error"}."""
        export, drift = self._lib("mrml_export"), self._lib("drift")
        cases = self._batchCases(inputs)
        rows, percentiles = [], []
        for done, (name, getVolume, fromFile) in enumerate(cases, start=1):
            volume = None
            try:
                volume = getVolume()
                result = self.detect(volume, model, device, falsePositiveRate=falsePositiveRate)
                chosen = export.default_formats(volume, scene_bundle=False) if formats is None else formats
                written = self.exportCase(volume, outputFolder, formats=chosen, overwrite=overwrite)
                rows.append({"input": name, "files": {k: str(v) for k, v in written.items()}})
                percentiles.append((written.get("json"), result.percentile))
            except Exception as e:  # one bad case must not stop the batch
                logging.error(f"SSL Anomaly: {name}: {e}")
                rows.append({"input": name, "error": f"{type(e).__name__}: {e}"})
            finally:
                if fromFile and volume is not None:
                    self._lib("mrml_case").remove_case(volume)
            if progress is not None and progress(done, len(cases), name) is False:
                break
        warning = drift.warn_batch(percentiles)  # carried by every findings JSON of the batch
        if warning:  # and said once
            logging.warning(f"SSL Anomaly: {warning}")
            for row in rows:
                row["warning"] = warning
        return rows

    def _batchCases(self, inputs) -> list:
        """(name, function giving the volume node, read from a file?) per case; files are read only
        when their turn comes."""
        if inputs is None:  # the scene's images, not labelmaps or the module's own heatmaps
            isHeatmap = self._lib("mrml_heatmap").is_heatmap
            inputs = [n for n in slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode")
                      if n.GetClassName() != "vtkMRMLLabelMapVolumeNode" and not isHeatmap(n)]
        elif isinstance(inputs, (str, os.PathLike)) or hasattr(inputs, "GetID"):
            inputs = [inputs]
        nodes = [i for i in inputs if hasattr(i, "GetID")]
        paths = self._lib("io").list_inputs([i for i in inputs if not hasattr(i, "GetID")])
        return ([(n.GetName(), lambda n=n: n, False) for n in nodes]
                + [(str(p), lambda p=p: self.loadVolume(p), True) for p in paths])


    # --- display ------------------------------------------------------------------------------
    def caseResult(self, volumeNode):
        """Image-level result stored for `volumeNode` (None before detection)."""
        return self._lib("mrml_case").case_result(volumeNode)

    def resultText(self, volumeNode) -> str:
        """The score against the calibrated threshold, as the panel shows it."""
        result = self.caseResult(volumeNode)
        if result is None:
            return f"'{volumeNode.GetName()}': no detection yet."
        verdict = "ABNORMAL" if result["abnormal"] else "within the normal range"
        findings = len(self.findingNodes(volumeNode))
        parts = result["components"]
        detail = (f" (image-level {parts['pooled']:.3g}, patch-level {parts['patch']:.3g})"
                  if {"pooled", "patch"} <= set(parts) else "")
        return (f"Score {result['score']:.3g}{detail} vs threshold {result['threshold']:.3g} "
                f"({result['percentile']:.0f}th percentile of calibration normals): {verdict}; "
                f"{findings} finding(s). Model: {result['model']}."
                + "".join(f"\nWarning: {w}" for w in result["warnings"]))

    def sensitivityRange(self, volumeNode) -> tuple[float, float, float]:
        """(minimum, maximum, current) for the sensitivity slider."""
        result = self.caseResult(volumeNode)
        peak = float(self._lib("mrml_heatmap").heatmap_node(volumeNode).GetImageData().GetScalarRange()[1])
        return 0.0, max(peak, 2.0 * result["pixel_threshold"]), result["sensitivity"]

    def setSensitivity(self, volumeNode, threshold: float) -> None:
        """Hide heatmap pixels and unreviewed findings below `threshold`."""
        self._lib("mrml_case").set_sensitivity(volumeNode, threshold)

    def setOpacity(self, opacity: float) -> None:
        """Heatmap opacity in every slice view."""
        self._lib("mrml_heatmap").set_foreground_opacity(opacity)

    # --- findings and review ------------------------------------------------------------------
    def findingNodes(self, volumeNode) -> list:
        """The finding ROI nodes of `volumeNode`, in id order (rows of the findings table)."""
        return self._lib("mrml_findings").finding_nodes(volumeNode)

    def findings(self, volumeNode) -> list[dict]:
        """Each finding as exported: id, label, score, bbox_ijk, centroid_ras, area_mm2, review."""
        findings = self._lib("mrml_findings")
        return [findings.finding_record(node) for node in findings.finding_nodes(volumeNode)]

    def findingsTable(self, volumeNode):
        return self._lib("mrml_table").findings_table(volumeNode)

    def reviewFinding(self, findingNode, status: str | None = None, label: str | None = None,
                      note: str | None = None):
        """Confirm ('confirmed') or reject ('rejected') a finding, relabel it, or note on it."""
        node = self._lib("mrml_findings").review_finding(findingNode, status=status, label=label, note=note)
        self._afterReview(findingNode)
        return node

    def confirmFinding(self, findingNode):
        return self.reviewFinding(findingNode, status="confirmed")

    def rejectFinding(self, findingNode):
        return self.reviewFinding(findingNode, status="rejected")

    def addMissedFinding(self, volumeNode, bboxIJK=None, sliceIndex: int = 0, label: str | None = None,
                         note: str = ""):
        """A finding the model missed: box [i0, j0, i1, j1] in pixels (default: a small box in the
        image centre to drag onto the lesion)."""
        findings = self._lib("mrml_findings")
        node = findings.add_missed_finding(volumeNode, bboxIJK, sliceIndex, label or findings.MISSED_LABEL, note)
        self._afterReview(node)
        return node

    def _afterReview(self, findingNode) -> None:
        """After a review change: the table follows, and the review is autosaved (crash-safe)."""
        volume = findingNode.GetNodeReference(self._lib("mrml_findings").VOLUME_REFERENCE)
        self._lib("mrml_table").sync_findings_table(volume)
        if self.reviewFolder is not None:
            review = self._lib("review")
            review.save_review(review.review_path(self.reviewFolder, volume.GetName()),
                               self._lib("mrml_review").review_of(volume))

    def savedReview(self, volumeNode):
        """The autosaved review file of `volumeNode` in `reviewFolder`, or None."""
        if self.reviewFolder is None:
            return None
        path = self._lib("review").review_path(self.reviewFolder, volumeNode.GetName())
        return path if path.exists() else None

    def restoreReview(self, volumeNode, path=None) -> int:
        """Re-apply a saved review (default: the autosaved one) to the findings of `volumeNode`,
        e.g. after a crash and a new detection; returns how many saved findings were applied."""
        path = path or self.savedReview(volumeNode)
        if path is None:
            raise FileNotFoundError(f"no saved review of '{volumeNode.GetName()}'")
        applied = self._lib("mrml_review").apply_review(volumeNode, self._lib("review").load_review(path))
        self._lib("mrml_table").sync_findings_table(volumeNode)
        return applied

    # --- export, scenes, training -------------------------------------------------------------
    def exportCase(self, volumeNode, outputFolder, formats=None, overwrite: bool = False) -> dict:
        """Write the reviewed case (see SSLAnomalyLib.mrml_export.FORMATS); never replaces an
        existing file unless `overwrite`. Returns {kind: path}."""
        return self._lib("mrml_export").export_case(volumeNode, outputFolder, formats=formats, overwrite=overwrite)

    def saveScene(self, path):
        """The whole scene (review included) as a `.mrb`; refuses to replace an existing file."""
        if Path(path).exists():
            raise FileExistsError(f"not overwriting {path}")
        return self._lib("mrml_bundle").save_scene_bundle(path)

    def loadScene(self, path) -> None:
        """Replace the scene by a saved `.mrb`."""
        self._lib("mrml_bundle").load_scene_bundle(path)

    def trainCommand(self, normalsFolder, outputFolder, minutes: float = 30.0, valNormalsFolder=None,
                     device: str = "auto", startFrom=None) -> list[str]:
        """The command that trains a site model in a separate Python process (Slicer's own Python,
        with this module's folder on its path): `sslanomaly train`. `startFrom` (a model folder, or
        "default") starts from that model's encoder; with `minutes=0` it is only refitted on the normals."""
        command = [self._python(), "-m", "SSLAnomalyLib.cli", "train", "--normals", str(normalsFolder),
                   "--out", str(outputFolder), "--minutes", str(float(minutes)), "--device", device]
        if valNormalsFolder:
            command += ["--val-normals", str(valNormalsFolder)]
        if startFrom:
            command += ["--start-from", str(startFrom)]
        return command

    def train(self, normalsFolder, outputFolder, minutes: float = 30.0, valNormalsFolder=None,
              device: str = "auto", startFrom=None, log=print) -> Path:
        """Train from the console (blocking; each output line goes to `log`). Interrupted training
        resumes from its last checkpoint when started again with the same output folder."""
        self.ensureDependencies()
        command = self.trainCommand(normalsFolder, outputFolder, minutes, valNormalsFolder, device, startFrom)
        environment = dict(os.environ, PYTHONPATH=os.pathsep.join([str(MODULE_DIR), os.environ.get("PYTHONPATH", "")]))
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              env=environment) as process:
            for line in process.stdout:
                log(line.rstrip())
        if process.returncode != 0:
            raise RuntimeError(f"training failed (exit code {process.returncode}); see the log above")
        return Path(outputFolder)

    @staticmethod
    def _python() -> str:
        """Slicer's Python interpreter (PythonSlicer) inside Slicer, this interpreter elsewhere."""
        launcher = Path(sys.executable).with_name("PythonSlicer" + Path(sys.executable).suffix)  # .exe on Windows
        return str(launcher) if launcher.exists() else sys.executable


class SSLAnomalyTest(ScriptedLoadableModuleTest):
    """End to end on real MRML: load, detect, review, export, reload. Runs under `Slicer --testing`
    and in the project's pytest suite (headless harness)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_detect_review_export()

    def test_detect_review_export(self):
        import tempfile

        from SSLAnomalyLib.sample import sample_inputs

        self.delayDisplay("Detecting anomalies in a sample radiograph")
        folder = Path(tempfile.mkdtemp(prefix="SSLAnomalyTest-"))
        logic = SSLAnomalyLogic()
        volume = logic.loadVolume(sample_inputs(folder / "input")[0])
        result = logic.detect(volume)
        heatmap = slicer.mrmlScene.GetFirstNode(f"{volume.GetName()} anomaly heatmap", "vtkMRMLScalarVolumeNode")
        self.assertIsNotNone(heatmap)
        self.assertEqual(heatmap.GetImageData().GetDimensions(), volume.GetImageData().GetDimensions())
        self.assertEqual(len(logic.findingNodes(volume)), len(result.findings))

        self.delayDisplay("Reviewing")
        missed = logic.addMissedFinding(volume, label="nodule", note="added in test")
        logic.rejectFinding(missed)
        self.assertEqual(logic.findingsTable(volume).GetNumberOfRows(), len(result.findings) + 1)

        self.delayDisplay("Exporting and reloading")
        written = logic.exportCase(volume, folder / "export")
        self.assertTrue({"json", "csv", "heatmap", "mrk", "seg", "mrb"} <= set(written))
        with self.assertRaises(FileExistsError):
            logic.exportCase(volume, folder / "export")
        logic.loadScene(written["mrb"])
        reloaded = slicer.mrmlScene.GetFirstNode(volume.GetName(), "vtkMRMLScalarVolumeNode")
        statuses = [f["status"] for f in logic.findings(reloaded)]
        self.assertEqual(statuses[-1], "rejected")
        self.delayDisplay("Test passed")
