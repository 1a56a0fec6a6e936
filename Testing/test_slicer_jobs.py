"""Long work started from Slicer (the Logic and the panel): the model and folders it is given as a
console user types them, and what a job's result lands on when it ends."""

import shutil
import sys
import time
import types

import pytest
from slicer_cases import empty_scene, logic

from SSLAnomalyLib.core.model_files.model_folder import ModelError


def test_model_and_job_folders_given_with_a_tilde_are_the_home_folders(tmp_path, monkeypatch, pediatric_model):
    """`~/models/site/` typed in the Python console named a folder '~' that is not there (the model was
    refused as 'no such directory'), and a training's output went to a folder named '~' in Slicer's
    current folder."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    shutil.copytree(pediatric_model, tmp_path / "home" / "models" / "site")
    empty_scene()
    lg = logic()
    for model in ("~/models/site", "~/models/site/"):
        assert lg.loadDetector(model, device="cpu").manifest.model_id == lg.describeModel(model).model_id
    with pytest.raises(ModelError, match="~no-such-user/site: is not a model folder"):  # not "no home directory"
        lg.describeModel("~no-such-user/site")
    command = lg.trainCommand("~/normals", "~/site-model", minutes=1)
    assert [command[command.index(o) + 1] for o in ("--normals", "--out")] == \
        [str(tmp_path / "home" / "normals"), str(tmp_path / "home" / "site-model")]
    job = lg.startCalibration("~/normals", "~/calibrated", model="~/models/site/")
    assert job.wait(timeout=120) != 0
    assert job.lines[-1].startswith(f"error: {tmp_path / 'home' / 'normals'}"), job.lines[-3:]  # the model was read
    assert not (tmp_path / "~").exists()


class Widgets:
    """Stands in for the panel's Qt widgets (the `ui` of `childWidgetVariables`, the timer): any
    attribute is another one, any call is kept (`calls`), so that the panel's own code runs as written."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        child = Widgets()
        object.__setattr__(self, name, child)
        return child

    def __call__(self, *args, **kwargs):
        self.calls.append(args)
        return Widgets()


def panel(monkeypatch):
    """The module's panel (SSLAnomalyWidget) on the scene, as `setup` leaves it, with stand-ins for its widgets."""
    import slicer
    from slicer_harness import load_module_file

    module = load_module_file()
    settings = {}
    monkeypatch.setattr(sys.modules["qt"], "QSettings", lambda: types.SimpleNamespace(
        value=settings.get, setValue=settings.__setitem__), raising=False)  # the added model folders
    monkeypatch.setattr(sys.modules["qt"], "Qt", types.SimpleNamespace(WaitCursor=None), raising=False)
    for name, value in (("setOverrideCursor", lambda cursor: None), ("restoreOverrideCursor", lambda: None),
                        ("testingEnabled", lambda: True)):  # what tryWithErrorDisplay asks of the application
        monkeypatch.setattr(slicer.app, name, value, raising=False)
    widget = module.SSLAnomalyWidget(types.SimpleNamespace(isEntered=True))
    widget.logic, widget.ui, widget._timer = module.SSLAnomalyLogic(), Widgets(), Widgets()
    widget.logic.reviewFolder = None
    widget.initializeParameterNode()
    return widget


def finish(widget, seconds=300):
    """The panel's timer, until its jobs have ended and been taken in."""
    deadline = time.time() + seconds
    while (widget._detection or widget._training) and time.time() < deadline:
        widget._poll()
        time.sleep(0.2)
    assert not (widget._detection or widget._training), "the job did not end"


def test_jobs_that_end_after_the_panel_was_left_land_where_they_were_started(tmp_path, monkeypatch, small_normals):
    """The panel read the parameter node when a job ended, not when it started: a calibration that ended after
    the reader had typed the next output folder selected that folder ('Not a usable model folder', the new
    model never offered), and one that ended after the reader had gone to another module (the panel's node
    is then None) raised AttributeError at every tick of the timer; so did a detection, whose result was lost."""
    from SSLAnomalyLib.core.reading.sample import sample_inputs

    empty_scene()
    widget = panel(monkeypatch)
    parameters = widget._parameterNode
    parameters.normalsFolder, parameters.model = small_normals[1], "pediatric"
    parameters.modelOutputFolder = tmp_path / "calibrated"
    widget.onCalibrate()
    parameters.modelOutputFolder = tmp_path / "next"  # typed while it runs
    widget.exit()  # and on to another module
    finish(widget)
    widget.enter()
    assert widget._parameterNode.model == str(tmp_path / "calibrated")
    assert f"Model ready: {tmp_path / 'calibrated'}" in str(widget.ui.trainingLog.appendPlainText.calls[-1])

    volume = widget.logic.loadVolume(sample_inputs(tmp_path / "input")[0])
    widget._parameterNode.inputVolume, widget._parameterNode.opacity = volume, 0.3
    widget.onDetect()
    widget.exit()
    finish(widget)
    assert widget.logic.caseResult(volume) is not None


def test_a_batch_whose_output_folder_is_removed_stops_and_says_so(tmp_path, small_normals, pediatric_model):
    """The output folder deleted while a batch ran (by hand, or a clean-up): the batch made it again and went
    on, and returned, indexed and listed in worklist.csv every case as written, the first ones' files gone
    with the folder and its lock (another run could then write there too)."""
    from SSLAnomalyLib.core.files.errors import PathError

    empty_scene()
    lg, out = logic(), tmp_path / "batch"
    lg.reviewFolder = None
    inputs = sorted(small_normals[1].iterdir())[:3]

    def remove(done, total, name):
        if done == 1:
            shutil.rmtree(out)

    with pytest.raises(PathError, match=f"{out}: was removed while the batch ran"):
        lg.detectBatch(inputs, out, model=pediatric_model, device="cpu", progress=remove)
    assert not (out / "worklist.csv").exists() and not (out / "batch_index.json").exists()
    rows = lg.detectBatch(inputs, out, model=pediatric_model, device="cpu", resume=True)  # finishes it
    assert rows and all("files" in row for row in rows)
    assert all((out / f"{p.stem}.findings.json").exists() for p in inputs) and (out / "worklist.csv").exists()


def test_a_batch_shows_each_cases_warnings_in_slicers_log(tmp_path, pediatric_model, caplog):
    """The Slicer batch logged failures only: a case redone whose earlier files were moved to OUT/set_aside (and a
    score far beyond every normal) warned in its row alone, which the Logic does not return, so the reader was never
    told; the command line prints them on stderr."""
    from slicer_cases import tb_radiograph

    empty_scene()
    lg, out = logic(), tmp_path / "batch"
    lg.detectBatch(str(tb_radiograph()), out, model=pediatric_model, device="cpu")
    caplog.clear()
    lg.detectBatch(str(tb_radiograph()), out, model=pediatric_model, device="cpu", formats=["json"], overwrite=True)
    [moved] = (out / "set_aside").iterdir()
    assert any(record.levelname == "WARNING" and str(tb_radiograph()) in record.message
               and "tb0003.findings.csv" in record.message and str(moved) in record.message
               for record in caplog.records), caplog.text


def test_a_calibration_that_fails_does_not_promise_to_resume(tmp_path, monkeypatch):
    """A calibration that ended in an error (here: its normals folder is gone) closed the log with 'a training
    started again resumes', which is true of neither: the log now points at the reason above it and says what
    starting again does for each kind of job."""
    empty_scene()
    widget = panel(monkeypatch)
    parameters = widget._parameterNode
    parameters.normalsFolder, parameters.model = tmp_path / "gone", "pediatric"
    parameters.modelOutputFolder = tmp_path / "calibrated"
    widget.onCalibrate()
    finish(widget)
    last = str(widget.ui.trainingLog.appendPlainText.calls[-1])
    assert "the log above says why" in last and "a calibration starts afresh" in last
    assert not (tmp_path / "calibrated").exists()


def test_the_logic_detects_on_the_threads_the_command_line_uses_as_the_benchmark_says(pediatric_model):
    """docs/benchmarks.md (its Slicer Logic section) said the Logic 'leaves torch's default: all cores',
    while loading a detector sets every core but one, as `sslanomaly detect` does."""
    import os

    import torch
    from sslanomaly_bench.report import NOTES

    from SSLAnomalyLib.core.detection.detector import detection_threads

    empty_scene()
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(os.cpu_count() or 2)
        logic().loadDetector(str(pediatric_model), "cpu")
        assert torch.get_num_threads() == detection_threads()
    finally:
        torch.set_num_threads(before)
    assert "all cores" not in NOTES["slicer_logic"] and "limit_cpu_threads" in NOTES["slicer_logic"]
