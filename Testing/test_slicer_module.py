"""The module file under the headless harness: it loads with its metadata, its Logic works from a
console, and its own in-Slicer tests (SSLAnomalyTest and Testing/Python) pass on real MRML."""

import subprocess
import sys
import types

import pytest

from slicer_harness import load_module_file

from conftest import REPO
from slicer_cases import empty_scene, logic


def test_module_loads_with_its_metadata_and_help():
    module = load_module_file()
    parent = types.SimpleNamespace()
    module.SSLAnomaly(parent)
    assert parent.title == "SSL Anomaly" and parent.categories == ["Quantification"]
    assert "Not for diagnosis" in parent.helpText and "Detect anomalies" in parent.helpText
    assert "Sato" in parent.acknowledgementText and "iScience" in parent.acknowledgementText


def test_parameter_node_is_the_modules_scene_singleton():
    empty_scene()
    parameters = logic().getParameterNode()
    assert parameters.parameterNode.GetSingletonTag() == "SSLAnomaly"
    assert (parameters.model, parameters.device, parameters.opacity, parameters.overwrite) == ("default", "auto", 0.5, False)
    assert logic().getParameterNode().parameterNode is parameters.parameterNode


def test_dependency_check_names_what_is_missing_or_too_old(tmp_path):
    from SSLAnomalyLib.mrml.dependencies import missing_requirements

    assert missing_requirements() == [] and logic().dependenciesInstalled()
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# comment\nnumpy>=1.0\nsurely-not-an-installed-package>=1.0  # needed\nnumpy>=999\n")
    assert missing_requirements(requirements) == ["surely-not-an-installed-package>=1.0", "numpy>=999"]


def test_training_runs_the_cli_in_a_separate_python(tmp_path):
    command = logic().trainCommand(tmp_path / "normals", tmp_path / "model", minutes=2,
                                   valNormalsFolder=tmp_path / "held-back", device="cpu", startFrom="default",
                                   otherSourceNormalsFolder=tmp_path / "outside")
    assert command[1:4] == ["-m", "SSLAnomalyLib.cli", "train"]
    assert command[command.index("--start-from") + 1] == "default"
    assert command[command.index("--val-normals") + 1] == str(tmp_path / "held-back")
    assert command[command.index("--other-source-normals") + 1] == str(tmp_path / "outside")
    assert command[command.index("--minutes") + 1] == "2.0"
    assert "--other-source-normals" not in logic().trainCommand(tmp_path / "normals", tmp_path / "model")
    r = subprocess.run([*command[:4], "--help"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 0 and all(option in r.stdout for option in ("--normals", "--start-from",
                                                                       "--other-source-normals"))


def test_folders_with_a_leading_dash_reach_the_process_as_folders(tmp_path, monkeypatch):
    """A relative folder named like an option ('-site normals', '-x') is passed whole and absolute, never
    read by the command line's parser as an option."""
    monkeypatch.chdir(tmp_path)
    command = logic().trainCommand("-x", "-site model", minutes=1, valNormalsFolder="-v")
    assert [command[command.index(o) + 1] for o in ("--normals", "--out", "--val-normals")] == \
        [str(tmp_path / "-x"), str(tmp_path / "-site model"), str(tmp_path / "-v")]
    job = logic().startCalibration("-x", "-out", model="pediatric")
    assert job.wait(timeout=120) == 2 and "expected" not in " ".join(job.lines), job.lines[-3:]
    assert job.lines[-1].startswith(f"error: {tmp_path / '-x'}"), job.lines[-3:]


def test_training_without_a_starting_model_or_minutes_is_refused(tmp_path):
    with pytest.raises(ValueError, match="random, untrained encoder"):
        logic().trainCommand(tmp_path / "normals", tmp_path / "model", minutes=0)
    refit = logic().trainCommand(tmp_path / "normals", tmp_path / "model", minutes=0, startFrom="adult")
    assert refit[refit.index("--minutes") + 1] == "0.0" and refit[refit.index("--start-from") + 1] == "adult"


def test_modules_own_test_runs_under_the_harness(default_model):
    load_module_file().SSLAnomalyTest("runTest").runTest()


def test_in_slicer_batch_test_runs_under_the_harness(default_model):
    load_module_file()
    batch = load_module_file(REPO / "SSLAnomaly" / "Testing" / "Python" / "SSLAnomalyBatchTest.py")
    batch.SSLAnomalyBatchTest("runTest").runTest()


def test_console_gets_the_modules_logic_as_in_desktop_slicer():
    import slicer

    module = load_module_file()
    console = slicer.util.getModuleLogic("SSLAnomaly")
    assert isinstance(console, module.SSLAnomalyLogic)
    assert slicer.util.getModuleLogic("SSLAnomaly") is console  # one logic, shared as the panel's is


def test_reviews_are_autosaved_in_the_app_data_folder_by_default(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert logic().reviewFolder == tmp_path / "SSLAnomaly" / "reviews"


LIST_MODELS_BEFORE_INSTALL = """
import sys
sys.path[:0] = [sys.argv[1]]
from SSLAnomalyLib.mrml import dependencies
from slicer_harness import load_module_file

def refuse(*args):
    raise AssertionError("the model list asked for the dependencies")

dependencies.ensure = dependencies.install_torch = refuse
dependencies.installed = lambda: False  # as in a Slicer that has none of them yet
logic = load_module_file().SSLAnomalyLogic()
print(logic.modelChoices())
assert "torch" not in sys.modules, "listing the models imported torch"
"""


def test_model_list_needs_no_dependencies(tmp_path):
    r = subprocess.run([sys.executable, "-c", LIST_MODELS_BEFORE_INSTALL, str(REPO / "Testing")],
                       capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "'adult'" in r.stdout and "'pediatric'" in r.stdout


def test_model_choice_is_kept_in_the_scene_and_shown_after_reload(tmp_path):
    empty_scene()
    lg = logic()
    choices, index = lg.modelChoices(["/sites/a/model-a"], "default")
    assert [model for _, model in choices][:2] == ["adult", "pediatric"] and index == 0
    assert choices[2] == ("model-a", "/sites/a/model-a")
    lg.getParameterNode().model = "pediatric"
    lg.saveScene(tmp_path / "scene.mrb")
    empty_scene()
    assert lg.getParameterNode().model == "default"
    lg.loadScene(tmp_path / "scene.mrb")
    kept = lg.getParameterNode().model
    assert kept == "pediatric"
    choices, index = lg.modelChoices([], kept)
    assert choices[index][1] == "pediatric"
    choices, index = lg.modelChoices([], "/elsewhere/site-model")  # a scene from another machine: shown, chosen
    assert choices[index] == ("site-model", "/elsewhere/site-model")


def test_calibration_runs_as_a_process_job_with_progress(small_normals, tmp_path):
    from SSLAnomalyLib.core.model_files.model_folder import MANIFEST
    from SSLAnomalyLib.jobs import TrainingJob

    _, normals = small_normals
    job = logic().startCalibration(normals, tmp_path / "calibrated", model="pediatric")
    assert isinstance(job, TrainingJob) and job.running and job.command[3] == "calibrate"
    assert job.wait(timeout=300) == 0, job.lines[-10:]
    assert job.phase == "calibrating" and job.fraction == 1.0 and job.total == 20  # normals scored of all
    assert (tmp_path / "calibrated" / MANIFEST).exists()
    assert any("calibrated model" in line for line in job.lines)
