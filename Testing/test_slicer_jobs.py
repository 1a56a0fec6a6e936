"""Long work started from Slicer (the Logic and the panel): the model and folders it is given as a
console user types them, and what a job's result lands on when it ends."""

import shutil

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
