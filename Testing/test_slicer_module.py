"""The module file under the headless harness: it loads with its metadata, its Logic works from a
console, and its own in-Slicer tests (SSLAnomalyTest and Testing/Python) pass on real MRML."""

import subprocess
import types

from conftest import REPO
from slicer_cases import empty_scene, logic
from slicer_harness import load_module_file


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
                                   valNormalsFolder=tmp_path / "held-back", device="cpu", startFrom="default")
    assert command[1:4] == ["-m", "SSLAnomalyLib.cli", "train"]
    assert command[command.index("--start-from") + 1] == "default"
    assert command[command.index("--val-normals") + 1] == str(tmp_path / "held-back")
    assert command[command.index("--minutes") + 1] == "2.0"
    r = subprocess.run([*command[:4], "--help"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 0 and "--normals" in r.stdout and "--start-from" in r.stdout


def test_modules_own_test_runs_under_the_harness(default_model):
    load_module_file().SSLAnomalyTest("runTest").runTest()


def test_in_slicer_batch_test_runs_under_the_harness(default_model):
    load_module_file()
    batch = load_module_file(REPO / "SSLAnomaly" / "Testing" / "Python" / "SSLAnomalyBatchTest.py")
    batch.SSLAnomalyBatchTest("runTest").runTest()
