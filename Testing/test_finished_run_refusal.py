"""A training run stopped in the moment between writing its model and removing its checkpoints
(MODEL.work) left both: the rerun of the same command was refused saying the unfinished run 'did not
write it: pass --overwrite', where it did and the model is complete. The refusal now says so where the
model's manifest records the checkpoint's steps and training seconds, and keeps its words for a model
another command put there (built on disk: a model folder's manifest and a leftover checkpoint)."""

import json

import pytest
import torch
from safetensors.torch import save_file

from SSLAnomalyLib.cli import main
from SSLAnomalyLib.training.fitting import work_dir
from SSLAnomalyLib.training.lung_checkpoint import CHECKPOINT
from SSLAnomalyLib.training.trainer import checkpoint_in
from synthetic_inputs import normals_folder

TRAIN = {"train": ("step_seconds", checkpoint_in), "train-anatomy": ("seconds", lambda work: work / CHECKPOINT)}


def command(tmp_path, which, out) -> list[str]:
    inputs = (["--normals", str(normals_folder(tmp_path / "n", range(12)))] if which == "train" else
              ["--images", str(tmp_path / "images"), "--masks", str(tmp_path / "masks")])
    return [which, *inputs, "--out", str(out), "--size", "64", "--minutes", "1", "--quiet"]


@pytest.mark.parametrize("which", TRAIN)
@pytest.mark.parametrize("kept_step", [40, 39])
def test_a_rerun_says_the_model_is_the_stopped_runs_own_only_where_it_is(tmp_path, capsys, which, kept_step):
    seconds, checkpoint = TRAIN[which]
    out = tmp_path / "model"
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps({"model_id": "m", "training": {"steps": 40, seconds: 61.3}}))
    path = checkpoint(work_dir(out))
    path.parent.mkdir()
    save_file({"model.w": torch.zeros(1)}, str(path),
              metadata={"identity": "{}", "state": json.dumps({"step": kept_step, "seconds": 61.2961})})
    assert main(command(tmp_path, which, out)) == 2
    err = capsys.readouterr().err
    if kept_step == 40:  # the run wrote it, and was stopped as it removed its checkpoints
        assert f"the model is complete; remove {work_dir(out)}, left behind" in err and "did not write" not in err
    else:  # a model of other training, with the run's unfinished checkpoint beside it
        assert f"the unfinished run kept in {work_dir(out)} did not write it" in err and "complete" not in err
    assert path.exists() and (out / "manifest.json").exists()
