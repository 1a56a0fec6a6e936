"""A training run stopped mid-phase (Ctrl-C, or SIGTERM from `kill` or Slicer's *Stop*) keeps every
step it took: the next run resumes from there, not from the last periodic checkpoint; a command
stopped by SIGTERM cleans up after itself as on Ctrl-C; and a second run into the --out of a live one
is refused."""

import json
import os
import re
import shutil
import signal
from pathlib import Path

import pytest
from safetensors import safe_open

from conftest import link_subset
from SSLAnomalyLib.cli import main
from SSLAnomalyLib.training.fitting import work_dir
from SSLAnomalyLib.training.trainer import Trainer
from synthetic_inputs import normals_folder, radiograph, write_png


def checkpoint_step(out) -> int:
    with safe_open(str(work_dir(out) / "checkpoint.safetensors"), "pt") as f:
        return json.loads(f.metadata()["state"])["step"]


def stop_at(monkeypatch, step: int, stop) -> None:
    """Stop the run as it draws the batch of `step` (steps 0 to step-1 are taken)."""
    draw = Trainer.batches

    def batches(self, model, images, lungs, at):
        if at == step:
            stop()
        return draw(self, model, images, lungs, at)

    monkeypatch.setattr(Trainer, "batches", batches)


def test_a_stopped_training_keeps_its_steps_and_resumes_from_them(small_normals, tmp_path, monkeypatch, capsys):
    train = link_subset(small_normals[0], tmp_path / "n", 12)
    out = tmp_path / "model"
    run = ["train", "--normals", str(train), "--out", str(out), "--size", "64", "--minutes", "10",
           "--max-steps", "8", "--device", "cpu", "--quiet"]

    stop_at(monkeypatch, 3, lambda: os.kill(os.getpid(), signal.SIGTERM))
    unhandled = signal.signal(signal.SIGTERM, lambda *_: pytest.fail("train left SIGTERM to kill the process"))
    try:
        assert main(run) == 143  # SIGTERM used to kill the run outright, every step since step 0 lost
    finally:
        signal.signal(signal.SIGTERM, unhandled)
    assert "terminated (SIGTERM)" in capsys.readouterr().err and not out.exists()
    assert checkpoint_step(out) == 3

    def ctrl_c():
        raise KeyboardInterrupt

    monkeypatch.undo()
    stop_at(monkeypatch, 5, ctrl_c)
    assert main(run) == 130
    assert "from its checkpoint at step 3" in capsys.readouterr().err
    assert checkpoint_step(out) == 5  # Ctrl-C used to leave the checkpoint of step 0

    monkeypatch.undo()
    assert main(run) == 0
    assert "from its checkpoint at step 5" in capsys.readouterr().err
    assert json.loads((out / "manifest.json").read_text())["training"]["steps"] == 8


def test_a_stopped_run_is_not_resumed_by_other_normals_of_the_same_file_names(tmp_path, monkeypatch, capsys):
    first = normals_folder(tmp_path / "first", range(12))
    second = tmp_path / "second"  # another export numbered alike: the same names, other radiographs
    second.mkdir()
    for f in sorted(first.iterdir()):
        write_png(second / f.name, radiograph(100 + int(f.stem[-3:])))
    out = tmp_path / "model"
    run = ["--out", str(out), "--size", "64", "--minutes", "10", "--max-steps", "4", "--device", "cpu", "--quiet"]

    def ctrl_c():
        raise KeyboardInterrupt

    stop_at(monkeypatch, 2, ctrl_c)
    assert main(["train", "--normals", str(first)] + run) == 130
    monkeypatch.undo()
    assert main(["train", "--normals", str(second)] + run) == 2  # used to resume the first folder's run
    refusal = capsys.readouterr().err
    assert "pixels" in refusal and "--restart" in refusal and not out.exists()


def test_sigterm_stops_reference_stats_without_leaving_its_feature_cache(tmp_path):
    """`reference-stats` (and calibrate, evaluate) encode normals into a feature cache in the temp folder,
    removed in a `finally`; SIGTERM killed the process outright, so a site's scheduler or `kill` left a
    cache of every normal's patch features behind (gigabytes for a few thousand normals)."""
    import subprocess
    import time

    from conftest import REPO

    normals = normals_folder(tmp_path / "normals", range(400))
    temp = tmp_path / "tmp"
    temp.mkdir()
    out = tmp_path / "site.stats"
    proc = subprocess.Popen([str(REPO / ".venv" / "bin" / "sslanomaly"), "reference-stats", "--model", "pediatric",
                             "--normals", str(normals), "--out", str(out), "--device", "cpu", "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "TMPDIR": str(temp)})
    deadline = time.time() + 120
    while proc.poll() is None and not any(temp.glob("sslanomaly-features-*/*")) and time.time() < deadline:
        time.sleep(0.05)  # until the cache holds features: encoding is under way
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143 and "terminated (SIGTERM)" in err and "Traceback" not in err, err
    assert not list(temp.iterdir()) and not out.exists()


def test_a_second_run_into_the_same_out_is_refused_while_the_first_trains(tmp_path, capsys):
    """The same train command started twice (a scheduler's retry, Slicer and a terminal): the second
    resumed the live run's checkpoint, trained beside it, and replaced its model without --overwrite
    (the work folder beside --out made it a rerun). It is refused, naming the live run."""
    import subprocess
    import time

    from conftest import REPO

    normals = normals_folder(tmp_path / "normals", range(12))
    out = tmp_path / "model"
    run = ["train", "--normals", str(normals), "--out", str(out), "--size", "64", "--device", "cpu", "--quiet"]
    first = subprocess.Popen([str(REPO / ".venv" / "bin" / "sslanomaly"), *run, "--minutes", "10"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while first.poll() is None and not (work_dir(out) / "checkpoint.safetensors").exists() and time.time() < deadline:
            time.sleep(0.1)  # until its first checkpoint is written: training is under way
        assert first.poll() is None, first.communicate()[1]
        assert main(run + ["--max-steps", "2"]) == 2
        assert re.search(f"another sslanomaly run \\(process {first.pid}: .*sslanomaly train", capsys.readouterr().err)
        assert not out.exists()
    finally:
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=120)
    assert first.returncode == 143 and "Traceback" not in err, err
    assert (work_dir(out) / "checkpoint.safetensors").is_file()  # the first run's, kept to resume
    assert not (tmp_path / ".model.work.lock").exists()


def test_a_run_stopped_before_its_first_checkpoint_does_not_say_it_is_kept(tmp_path, monkeypatch, capsys):
    """SIGTERM to a torchrun launcher while its ranks read the normals made both say 'the run is kept
    in MODEL.work: run the same command again to resume it', where nothing was kept (no MODEL.work)."""
    def terminated(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "fit", terminated)  # stopped after reading, before the first checkpoint
    out = tmp_path / "model"
    assert main(["train", "--normals", str(normals_folder(tmp_path / "n", range(12))), "--out", str(out),
                 "--size", "64", "--max-steps", "2", "--device", "cpu", "--quiet"]) == 130
    assert capsys.readouterr().err.splitlines()[-1] == ("interrupted before its first checkpoint: nothing was kept; "
                                                        "run the same command again to start it")
    assert not work_dir(out).exists() and not out.exists()


def test_a_stop_while_the_checkpoints_go_says_the_model_is_complete(tmp_path, monkeypatch, capsys):
    """Ctrl-C once the model folder is written, as its checkpoints are removed, said 'the run is kept in
    MODEL.work: run the same command again to resume it', which a rerun then refuses (the model exists)."""
    out = tmp_path / "model"
    remove = shutil.rmtree

    def stopped_removing(path, *args, **kwargs):
        if Path(path) == work_dir(out):
            raise KeyboardInterrupt
        return remove(path, *args, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", stopped_removing)
    assert main(["train", "--normals", str(normals_folder(tmp_path / "n", range(12))), "--out", str(out),
                 "--size", "64", "--max-steps", "2", "--device", "cpu", "--quiet"]) == 130
    assert capsys.readouterr().err.splitlines()[-1] == (f"interrupted after the model was written: {out} is complete; "
                                                        f"remove {work_dir(out)}, its checkpoints, left behind")
    assert (out / "manifest.json").exists()
