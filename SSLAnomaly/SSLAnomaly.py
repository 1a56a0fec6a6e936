"""SSL Anomaly: finds anomalies in chest radiographs with a self-supervised encoder trained on
normal radiographs only, shows a heatmap and findings over the image, lets the radiologist review
them, and exports the result (Slicer files, CSV/JSON, DICOM SEG + SR).

This file is the template's shape (module, parameter node, panel, logic, test); the panel only collects parameters
and calls the logic (`SSLAnomalyLib.mrml.logic.AnomalyLogic`, the Python console's too); long work runs as jobs.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import qt
import slicer
import vtk
from slicer import vtkMRMLScalarVolumeNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper
from slicer.ScriptedLoadableModule import (ScriptedLoadableModule, ScriptedLoadableModuleLogic,
                                           ScriptedLoadableModuleTest, ScriptedLoadableModuleWidget)
from slicer.util import VTKObservationMixin

from SSLAnomalyLib.mrml.logic import AnomalyLogic
from SSLAnomalyLib.mrml.sample_data import register_on_startup as registerSampleDataOnStartup
from SSLAnomalyLib.mrml.settings import remember_model_folder, saved_model_folders

DEVICES = ("auto", "cpu", "cuda")


class SSLAnomaly(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("SSL Anomaly")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Quantification")]
        self.parent.dependencies = []  # PyTorch (extension) is asked for on first use, not at load
        self.parent.contributors = ["SSLAnomaly maintainers (SSLAnomaly project)"]
        self.parent.helpText = _("""
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
""")
        self.parent.acknowledgementText = _("""
The method builds on anatomy-aware self-supervised anomaly detection: Sato J. et al., "Anatomy-aware
self-supervised learning for anomaly detection in chest radiographs", iScience 26(7):107086, 2023,
with patch-level heatmaps in the manner of PaDiM/PatchCore. The bundled pediatric model was trained on
normal pediatric radiographs of Kermany et al. (doi:10.17632/rscbjbr9sj.2, CC BY 4.0); the adult model
on adult normals of the NIH Clinical Center (RSNA Pneumonia Detection Challenge); the lung-field network
on the lung masks of the OpenIST chest X-ray set.
""")
        registerSampleDataOnStartup()  # a synthetic radiograph in Sample Data, once Slicer has started


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
    trainMinutes: Annotated[float, WithinRange(0.0, 10000.0)] = 0.0
    trainFromSelectedModel: bool = True
    showLungs: bool = True


class SSLAnomalyWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: parameters in, logic calls out. Detection and training run as jobs (a worker
    thread, a separate process) polled by a timer, so the GUI stays responsive and both stop on cancel."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = self._parameterNode = self._parameterNodeGuiTag = None
        self._detection = self._detectionVolume = None  # DetectionJob, and the volume it scores
        self._training, self._trainingShown = None, 0   # TrainingJob (training or calibration), its log lines shown
        self._timer = self._sliderVolume = None  # the slider shows a volume's sensitivity (it lives on its heatmap)

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/SSLAnomaly.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)
        self.logic = SSLAnomalyLogic()
        self._timer = qt.QTimer()
        self._timer.setInterval(200)
        self._timer.timeout.connect(self._poll)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        for signal, slot in ((self.ui.modelSelector.currentIndexChanged, self.onModelChanged),
                             (self.ui.addModelButton.clicked, self.onAddModelFolder),
                             (self.ui.detectButton.clicked, self.onDetect), (self.ui.cancelButton.clicked, self.onCancel),
                             (self.ui.sensitivitySlider.valueChanged, self.onSensitivityChanged),
                             (self.ui.opacitySlider.valueChanged, self.logic.setOpacity),
                             (self.ui.confirmButton.clicked, lambda: self._review(status="confirmed")),
                             (self.ui.rejectButton.clicked, lambda: self._review(status="rejected")),
                             (self.ui.relabelButton.clicked, lambda: self._review(label=self.ui.labelLineEdit.text)),
                             (self.ui.noteButton.clicked, lambda: self._review(note=self.ui.noteLineEdit.text)),
                             (self.ui.addFindingButton.clicked, self.onAddFinding),
                             (self.ui.exportButton.clicked, self.onExport), (self.ui.trainButton.clicked, self.onTrain),
                             (self.ui.calibrateButton.clicked, self.onCalibrate),
                             (self.ui.showLungsCheckBox.toggled, self.onShowLungs),
                             (self.ui.cancelTrainingButton.clicked, self.onCancelTraining)):
            signal.connect(slot)
        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.onCancel()
        self.onCancelTraining()
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        self.setParameterNode(None)

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
            self._populateModels()
            self._updateGui()

    def _updateGui(self, caller=None, event=None) -> None:
        """Buttons, result text and table follow the selected volume and whether work is running."""
        volume = self._parameterNode.inputVolume if self._parameterNode else None
        busy = self._detection is not None
        ready = self.logic.dependenciesInstalled()  # until then nothing is imported (or installed)
        result = self.logic.caseResult(volume) if volume and ready else None
        self.ui.detectButton.enabled = volume is not None and not busy
        self.ui.cancelButton.enabled = busy
        self.ui.exportButton.enabled = result is not None and not busy
        for button in (self.ui.confirmButton, self.ui.rejectButton, self.ui.relabelButton, self.ui.noteButton,
                       self.ui.addFindingButton):
            button.enabled = result is not None
        if not busy:
            self.ui.resultLabel.text = (self.logic.resultText(volume) if volume and ready else _("Select a radiograph.")
                                        if ready else _("Python packages are installed on the first detection."))
        self.ui.findingsTableView.setMRMLTableNode(self.logic.findingsTable(volume) if result else None)
        if result and volume is not self._sliderVolume:
            self._resetSensitivitySlider(volume)
        self.ui.trainButton.enabled = self.ui.calibrateButton.enabled = self._training is None
        self.ui.cancelTrainingButton.enabled = self._training is not None

    # --- models -------------------------------------------------------------------------------
    def _populateModels(self) -> None:
        """The model list (nothing imported or installed for it), showing the parameter node's model."""
        choices, index = self.logic.modelChoices(saved_model_folders(), self._parameterNode.model)
        self.ui.modelSelector.blockSignals(True)
        self.ui.modelSelector.clear()
        for label, model in choices:
            self.ui.modelSelector.addItem(label, model)
        self.ui.modelSelector.setCurrentIndex(index)
        self.ui.modelSelector.blockSignals(False)

    def onModelChanged(self, index) -> None:
        if self._parameterNode and index >= 0:
            self._parameterNode.model = self.ui.modelSelector.itemData(index)

    def onAddModelFolder(self) -> None:
        folder = qt.QFileDialog.getExistingDirectory(slicer.util.mainWindow(), _("Select a model folder"))
        if folder:
            with slicer.util.tryWithErrorDisplay(_("Not a usable model folder."), waitCursor=True):
                self._addModelFolder(folder)

    def _addModelFolder(self, folder: str) -> None:
        """Verify a model folder, remember it and select it."""
        self.logic.describeModel(folder)  # verifies manifest and hashes before offering it
        remember_model_folder(folder)
        self.logic.getParameterNode().model = str(folder)  # the scene's: a job may end after the panel was left
        if self._parameterNode:  # else the list is filled when the panel is entered again
            self._populateModels()

    # --- detection ----------------------------------------------------------------------------
    def onDetect(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Detection could not start."), waitCursor=True):
            p = self._parameterNode
            self._detection = self.logic.startDetection(p.inputVolume, p.model, p.device)
            self._detectionVolume = p.inputVolume
            self.ui.progressBar.setRange(0, self._detection.total)
            self.ui.progressBar.value = 0
            self.ui.resultLabel.text = _("Detecting anomalies in '{name}'...").format(name=p.inputVolume.GetName())
            self._timer.start()
            self._updateGui()

    def _poll(self) -> None:
        if self._detection is not None:
            self.ui.progressBar.value = self._detection.done
            if not self._detection.running:
                self._detectionFinished()
        if self._training is not None:
            self._showTrainingProgress()
        if self._detection is None and self._training is None:
            self._timer.stop()

    def _detectionFinished(self) -> None:
        job, volume = self._detection, self._detectionVolume
        self._detection = self._detectionVolume = None
        if job.results and not job.cancelled:
            _image, result, error = job.results[0]
            if error is not None:
                slicer.util.errorDisplay(_("Detection failed on '{name}': {error}").format(name=volume.GetName(), error=error))
            else:
                with slicer.util.tryWithErrorDisplay(_("Could not show the result."), waitCursor=True):
                    self.logic.showResult(volume, result, opacity=self.logic.getParameterNode().opacity)
                    self._resetSensitivitySlider(volume)
                    self._offerSavedReview(volume)
        self._updateGui()

    def _offerSavedReview(self, volume) -> None:
        saved = self.logic.savedReview(volume)  # of this image only: reviews are keyed by the image
        if saved and slicer.util.confirmYesNoDisplay(
                _("A review of '{name}' was saved earlier ({path}). Restore its decisions?").format(
                    name=volume.GetName(), path=saved)):
            self.logic.restoreReview(volume, saved)

    def onCancel(self) -> None:
        """No further image is started; the one being scored ends and its result is discarded."""
        if self._detection is not None:
            self._detection.cancel()
            self._detection = self._detectionVolume = None
            self.ui.progressBar.value = 0
            self._updateGui()
            self.ui.resultLabel.text = _("Detection cancelled.")

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

    # --- review -------------------------------------------------------------------------------
    def _selectedFinding(self):
        rows = {index.row() for index in self.ui.findingsTableView.selectionModel().selectedIndexes()}
        if len(rows) != 1:
            raise ValueError(_("Select one finding in the table first."))
        return self.logic.findingAtRow(self._parameterNode.inputVolume, min(rows))

    def _review(self, **change) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not review the finding.")):
            self.logic.reviewFinding(self._selectedFinding(), **change)

    def onAddFinding(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Could not add a finding.")):
            self.logic.addMissedFinding(self._parameterNode.inputVolume, label=self.ui.labelLineEdit.text.strip() or None,
                                        note=self.ui.noteLineEdit.text)

    # --- export, calibration, training --------------------------------------------------------
    def onExport(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Export failed."), waitCursor=True):
            p = self._parameterNode
            written = self.logic.exportCase(p.inputVolume, p.exportFolder, overwrite=p.overwrite)
            left_out = self.logic.exportLeftOut(p.inputVolume)  # e.g. no DICOM: its source file is gone
            slicer.util.infoDisplay("\n".join([_("Written:"), *map(str, written.values()), *left_out]))

    def onCalibrate(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Calibration could not start.")):
            p = self._parameterNode
            self._startProcessJob(self.logic.startCalibration(p.normalsFolder, p.modelOutputFolder, model=p.model))

    def onShowLungs(self, visible) -> None:
        if self._parameterNode and self._parameterNode.inputVolume is not None:
            self.logic.setLungFieldsVisible(self._parameterNode.inputVolume, visible)

    def onTrain(self) -> None:
        with slicer.util.tryWithErrorDisplay(_("Training could not start.")):
            p = self._parameterNode
            self._startProcessJob(self.logic.startTraining(
                p.normalsFolder, p.modelOutputFolder, minutes=p.trainMinutes,
                valNormalsFolder=self.ui.valNormalsFolderSelector.currentPath, device=p.device,
                startFrom=p.model if p.trainFromSelectedModel else None,
                otherSourceNormalsFolder=self.ui.otherSourceNormalsFolderSelector.currentPath))

    def _startProcessJob(self, job) -> None:
        """Training or calibration: its log shown, polled by the timer; its model is selected when done."""
        self._training, self._trainingShown = job, 0
        self.ui.trainingLog.clear()
        self.ui.trainingLog.appendPlainText(" ".join(job.command))
        self._timer.start()
        self._updateGui()

    def _showTrainingProgress(self) -> None:
        job = self._training
        for line in job.lines[self._trainingShown:]:
            self.ui.trainingLog.appendPlainText(line)
        self._trainingShown = len(job.lines)
        if job.fraction is not None:
            self.ui.trainingProgressBar.setFormat(f"{job.phase}: %p%")
            self.ui.trainingProgressBar.value = int(100 * job.fraction)
        if not job.running:
            self._trainingFinished(job.wait(), job.output)  # the folder it was started on

    def onCancelTraining(self) -> None:
        """Stops the training (or calibration) process tree; training resumes from its last checkpoint."""
        if self._training is not None:
            self._training.cancel()

    def _trainingFinished(self, exitCode, folder) -> None:
        self._training = None
        self._updateGui()
        if exitCode == 0:
            self._addModelFolder(str(folder))
        self.ui.trainingLog.appendPlainText(
            _("Model ready: {folder} (selected in the model list)").format(folder=folder) if exitCode == 0
            else _("Stopped (exit code {code}; the log above says why): a training started again resumes from its "
                   "checkpoint, a calibration starts afresh.").format(code=exitCode))


class SSLAnomalyLogic(ScriptedLoadableModuleLogic, AnomalyLogic):
    """The module's logic: `AnomalyLogic` (everything the module does) with Slicer's parameter node."""

    def __init__(self) -> None:
        ScriptedLoadableModuleLogic.__init__(self)
        AnomalyLogic.__init__(self)

    def getParameterNode(self):
        return SSLAnomalyParameterNode(super().getParameterNode())


class SSLAnomalyTest(ScriptedLoadableModuleTest):
    """End to end on real MRML: load, detect, review, export, reload. Runs under `Slicer --testing`
    and in the project's pytest suite (headless harness)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_detect_review_export()

    def test_detect_review_export(self):
        from SSLAnomalyLib.core.reading.sample import sample_inputs

        self.delayDisplay("Detecting anomalies in a sample radiograph")
        logic, folder = SSLAnomalyLogic(), Path(tempfile.mkdtemp(prefix="SSLAnomalyTest-"))
        logic.reviewFolder = folder / "reviews"  # not the user's: each run would keep the last one's review aside
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
