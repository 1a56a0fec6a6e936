"""A batch never writes where it reads, never shares its output folder with a live run, keeps on
--resume only results of this input, model and thresholds, and logs any file name safely."""

import json
import shutil
import subprocess

from conftest import REPO, data_dir
from SSLAnomalyLib.core.outputs import LOCK

SSLANOMALY = str(REPO / ".venv" / "bin" / "sslanomaly")


def detect(model, out, *inputs, extra=()):
    return subprocess.run([SSLANOMALY, "detect", "--model", str(model), "--out", str(out), "--quiet", *extra,
                           *map(str, inputs)], capture_output=True, text=True, cwd=REPO, timeout=600)


def two_radiographs(folder):
    folder.mkdir()
    for f in sorted(data_dir("kermany", "val", "pneumonia").iterdir())[:2]:
        shutil.copy(f, folder / f.name)
    return folder


def test_an_output_folder_inside_the_inputs_is_refused(small_model, tmp_path):
    inputs = two_radiographs(tmp_path / "in")
    for out in (inputs, inputs / "results"):
        r = detect(small_model, out, inputs)
        assert r.returncode == 2 and "inside the input folder" in r.stderr and str(out) in r.stderr
    assert not (inputs / "results").exists() and not list(inputs.glob("*.findings.json"))


def test_a_second_run_into_a_busy_folder_is_refused_and_a_stale_lock_taken_over(small_model, tmp_path):
    inputs, out = two_radiographs(tmp_path / "in"), tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen(["sleep", "60"])
    try:
        (out / LOCK).write_text(str(holder.pid))
        r = detect(small_model, out, inputs)
        assert r.returncode == 2 and f"process {holder.pid}" in r.stderr and not list(out.glob("*.findings.json"))
    finally:
        holder.kill()
        holder.wait()
    r = detect(small_model, out, inputs)  # the holder is gone: its lock is stale
    assert r.returncode == 0, r.stderr
    assert len(list(out.glob("*.findings.json"))) == 2 and not (out / LOCK).exists()


def test_resume_redoes_results_of_other_thresholds(small_model, tmp_path):
    inputs, out = two_radiographs(tmp_path / "in"), tmp_path / "out"
    assert detect(small_model, out, inputs, extra=("--fpr", "0.05")).returncode == 0
    before = {p.name: json.loads(p.read_text())["threshold"] for p in out.glob("*.findings.json")}
    again = detect(small_model, out, inputs, extra=("--fpr", "0.3", "--resume"))
    assert again.returncode == 0 and "already done" not in again.stdout
    after = {p.name: json.loads(p.read_text())["threshold"] for p in out.glob("*.findings.json")}
    assert before.keys() == after.keys() and all(after[k] != before[k] for k in after)
    same = detect(small_model, out, inputs, extra=("--fpr", "0.3", "--resume"))
    assert "2 already done" in same.stdout


def test_file_names_cannot_forge_log_lines_or_reach_the_terminal_raw(small_model, tmp_path):
    inputs = two_radiographs(tmp_path / "in")
    hostile = inputs / "bad\nerror: forged\x1b[31m.jpeg"
    hostile.write_bytes(b"\xff\xd8\xff not a jpeg")
    r = detect(small_model, tmp_path / "out", inputs)
    assert r.returncode == 1 and "\x1b" not in r.stderr and "\nerror: forged" not in r.stderr
    rows = [json.loads(line) for line in (tmp_path / "out" / "failures.log").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["input"].endswith("bad\\x0aerror: forged\\x1b[31m.jpeg")
    assert len(list((tmp_path / "out").glob("*.findings.json"))) == 2  # the rest of the batch went on


def test_training_on_too_few_normals_is_refused_before_any_work(tmp_path):
    """Nine files leave seven for training after the held-out and calibration shares: refused at once,
    counted the way training splits them, before the model, the images or the training."""
    normals = tmp_path / "normals"
    normals.mkdir()
    for f in sorted(data_dir("kermany", "val", "normal").iterdir())[:9]:
        shutil.copy(f, normals / f.name)
    r = subprocess.run([SSLANOMALY, "train", "--normals", str(normals), "--out", str(tmp_path / "m"), "--minutes", "5",
                        "--quiet"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert f"{normals}: 9 image file(s) leave at most 7 for training" in r.stderr and "at least 8" in r.stderr
    assert not (tmp_path / "m").exists()
    r = subprocess.run([SSLANOMALY, "train", "--normals", str(normals), "--val-normals", str(tmp_path / "empty"),
                        "--out", str(tmp_path / "m"), "--minutes", "0", "--quiet"], capture_output=True, text=True,
                       cwd=REPO, timeout=120)
    assert r.returncode != 0 and str(tmp_path / "empty") in r.stderr and not (tmp_path / "m").exists()
