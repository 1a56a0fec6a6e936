"""A batch never writes where it reads, never shares its output folder with a live run (and never
mistakes a stale lock for one), keeps on --resume only results of this input, model and thresholds,
logs any file name safely and cheaply, and ends cleanly on a full disk."""

import errno
import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest

from conftest import REPO, data_dir
from tampered import resealed
from SSLAnomalyLib.cli import main
from SSLAnomalyLib.core.results.outputs import LOCK

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


def hold_lock(folder):
    """A live process holding the folder's lock, as a run writing there would (its pid)."""
    code = ("import sys, time\nfrom SSLAnomalyLib.core.results.outputs import output_lock\n"
            "with output_lock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(120)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_an_output_folder_that_is_a_file_or_under_one_is_named_as_such(tmp_path):
    """It used to be '[Errno 17] File exists', or a temporary lock file named instead of the folder."""
    (tmp_path / "results").write_text("a file")
    for out, reason in ((tmp_path / "results", "is a file, not a folder"),
                        (tmp_path / "results" / "sub", "output folder cannot be made (Not a directory)")):
        r = detect("default", out, tmp_path / "absent.png")
        assert r.returncode == 2 and "Traceback" not in r.stderr
        assert f"error: {out}: {reason}" in r.stderr
    assert (tmp_path / "results").read_text() == "a file"


def test_a_users_worklist_log_or_index_in_the_output_folder_is_never_replaced(tmp_path, capsys):
    """--out naming a folder of the user's own files: its worklist.csv (a RIS export) was written over, its
    failures.log deleted and its batch_index.json replaced by the first batch, without a word. The batch's own
    files are replaced as before."""
    inputs, out = two_radiographs(tmp_path / "in"), tmp_path / "out"
    (inputs / "empty.png").write_bytes(b"")  # a failure, so that the batch writes its failures.log

    def detect_into_out() -> int:
        return main(["detect", "--model", "pediatric", "--out", str(out), "--quiet", str(inputs)])

    out.mkdir()
    for name, theirs in (("worklist.csv", "patient,ward\nDoe,3\n"), ("failures.log", "printer jammed\n"),
                         ("batch_index.json", '[{"patient": "Doe", "ward": 3}]\n')):
        (out / name).write_text(theirs)
        capsys.readouterr()
        assert detect_into_out() == 2
        assert f"error: {out / name}: was not written by a batch" in capsys.readouterr().err
        assert (out / name).read_text() == theirs and not list(out.glob("*.findings.json"))
        (out / name).unlink()
    assert detect_into_out() == 1 and detect_into_out() == 1  # its own worklist and log: replaced
    assert "empty.png" in (out / "failures.log").read_text() and "input,name,score" in (out / "worklist.csv").read_text()
    assert {row["input"] for row in json.loads((out / "batch_index.json").read_text())} == \
        {str(p) for p in inputs.iterdir()}


def test_a_second_run_into_a_busy_folder_is_refused_naming_the_lock_file(small_model, tmp_path):
    inputs, out = two_radiographs(tmp_path / "in"), tmp_path / "out"
    out.mkdir()
    holder = hold_lock(out)
    try:
        held = json.loads((out / LOCK).read_text())  # written whole: never an empty lock to misread
        assert held["pid"] == holder.pid
        r = detect(small_model, out, inputs)
        assert r.returncode == 2 and f"process {holder.pid}" in r.stderr and str(out / LOCK) in r.stderr
        assert not list(out.glob("*.findings.json"))
    finally:
        holder.kill()
        holder.wait()
    r = detect(small_model, out, inputs)  # the holder was killed: its lock is stale, taken over and said
    assert r.returncode == 0, r.stderr
    assert f"the lock {out / LOCK} was left by a run that no longer runs" in r.stderr and "taken over" in r.stderr
    assert len(list(out.glob("*.findings.json"))) == 2 and not (out / LOCK).exists()


def test_a_lock_whose_pid_now_names_another_process_or_that_is_empty_and_old_is_stale(small_model, tmp_path):
    inputs, out = two_radiographs(tmp_path / "in"), tmp_path / "out"
    out.mkdir()
    unrelated = subprocess.Popen(["sleep", "120"])  # alive, but started after the run that took the lock
    try:
        (out / LOCK).write_text(json.dumps({"pid": unrelated.pid, "started": time.time() - 3600, "command": "x"}))
        assert detect(small_model, out, inputs).returncode == 0 and not (out / LOCK).exists()
    finally:
        unrelated.kill()
        unrelated.wait()
    (out / LOCK).write_text("")  # created but not yet written: another run is taking it (dated ahead, so that
    os.utime(out / LOCK, (time.time() + 300, time.time() + 300))  # it is still young when a slow start reads it)
    r = detect(small_model, out, inputs, extra=("--resume",))
    assert r.returncode == 2 and str(out / LOCK) in r.stderr
    os.utime(out / LOCK, (time.time() - 60, time.time() - 60))  # and a minute later it is a leftover
    r = detect(small_model, out, inputs, extra=("--resume",))
    assert r.returncode == 0 and "2 already done" in r.stdout and not (out / LOCK).exists()


def test_a_lock_taken_on_another_host_is_held_and_named(small_model, tmp_path):
    """An output folder on shared storage (a Dask site's): a run on another host took over the lock of a
    live run there as stale, since its process id names no process here, and both wrote the folder."""
    inputs, out = two_radiographs(tmp_path / "in"), tmp_path / "out"
    out.mkdir()
    gone = subprocess.Popen(["true"])
    gone.wait()  # a process id that names no process here
    (out / LOCK).write_text(json.dumps({"pid": gone.pid, "started": time.time(), "command": "sslanomaly detect",
                                        "host": "node-07.cluster"}))
    r = detect(small_model, out, inputs)
    assert r.returncode == 2 and f"process {gone.pid} on host node-07.cluster" in r.stderr
    assert str(out / LOCK) in r.stderr and not list(out.glob("*.findings.json"))
    (out / LOCK).unlink()  # as the message says, once no run there is alive
    assert detect(small_model, out, inputs).returncode == 0


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


def test_resume_redoes_results_of_another_model_folder_under_the_same_id(tmp_path, capsys):
    """--resume kept a result whenever its model_id and image threshold matched: a model folder
    recalibrated (the pixel threshold, which decides the findings) or whose weights were changed,
    resealed under the same id, left the earlier findings. A result records the folder's seal; one
    that records none (written before it was recorded) is redone."""
    def halve_peaks(manifest):
        calibration = manifest["calibration"]
        calibration["normal_peaks"] = [p / 2 for p in calibration["normal_peaks"]]
        calibration["pixel_threshold"] /= 2

    def scale_weights(tensors):
        name = next(k for k, v in tensors.items() if k.startswith("encoder.") and v.ndim > 1)
        tensors[name] = tensors[name] * 1.5

    models = [resealed("pediatric", tmp_path / "m0"), resealed("pediatric", tmp_path / "m1", halve_peaks),
              resealed("pediatric", tmp_path / "m2", edit_tensors=scale_weights)]
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    shutil.copy(sorted(data_dir("kermany", "val", "pneumonia").iterdir())[0], inputs / "IM.jpeg")

    def resume(model) -> tuple[str, dict]:
        assert main(["detect", "--model", str(model), "--out", str(out), "--quiet", "--resume", str(inputs)]) == 0
        return capsys.readouterr().out, json.loads((out / "IM.findings.json").read_text())

    _, first = resume(models[0])
    said, recalibrated = resume(models[1])
    assert "already done" not in said and recalibrated["model"] == first["model"]
    assert recalibrated["pixel_threshold"] == pytest.approx(first["pixel_threshold"] / 2, rel=1e-5)
    said, reweighted = resume(models[2])
    assert "already done" not in said and reweighted["score"] != first["score"]
    assert len({first["model_sha256"], recalibrated["model_sha256"], reweighted["model_sha256"]}) == 3
    assert "1 already done" in resume(models[2])[0]
    (out / "IM.findings.json").write_text(json.dumps({k: v for k, v in reweighted.items() if k != "model_sha256"}))
    said, redone = resume(models[2])
    assert "already done" not in said and redone["model_sha256"] == reweighted["model_sha256"]


def test_resume_redoes_results_of_another_lung_network(tmp_path, capsys, monkeypatch):
    """--resume kept a result whose lung fields another lung network drew (SSLANOMALY_LUNGS naming another, or the
    bundled one upgraded under its id), though the fields decide where the score and findings are computed. A
    result records the network's id and seal; one that records no seal (written before it was recorded) is redone."""
    from SSLAnomalyLib.core.anatomy.lung_network import LUNGS_ENV, bundled_segmenter

    def scale_weights(tensors):
        name = next(k for k, v in tensors.items() if v.ndim > 1)
        tensors[name] = tensors[name] * 1.5

    upgraded = resealed("lungs", tmp_path / "lungs", edit_tensors=scale_weights)
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    shutil.copy(sorted(data_dir("kermany", "val", "pneumonia").iterdir())[0], inputs / "IM.jpeg")

    def resume(lungs=None) -> tuple[str, dict]:
        monkeypatch.setenv(LUNGS_ENV, str(lungs or ""))
        bundled_segmenter.cache_clear()  # loaded once per process: here once per run
        assert main(["detect", "--model", "pediatric", "--out", str(out), "--quiet", "--resume", str(inputs)]) == 0
        return capsys.readouterr().out, json.loads((out / "IM.findings.json").read_text())

    try:
        _, first = resume()
        assert first["lung_network"] == bundled_segmenter().model_id
        assert first["lung_network_sha256"] == bundled_segmenter().model_sha256
        said, other = resume(upgraded)
        assert "already done" not in said and other["lung_network"] == first["lung_network"]
        assert other["lung_network_sha256"] != first["lung_network_sha256"]
        assert "1 already done" in resume(upgraded)[0]
        unsealed = {k: v for k, v in other.items() if k != "lung_network_sha256"}
        (out / "IM.findings.json").write_text(json.dumps(unsealed))
        said, redone = resume(upgraded)
        assert "already done" not in said and redone["lung_network_sha256"] == other["lung_network_sha256"]
    finally:
        monkeypatch.delenv(LUNGS_ENV)
        bundled_segmenter.cache_clear()


def test_an_input_replaced_by_an_unreadable_file_keeps_no_earlier_result_under_its_name(tmp_path, capsys):
    """IM.jpeg replaced by an unreadable file of the same name failed, with and without --resume, and the
    earlier image's findings JSON, heatmap and overlay stayed as OUT/IM.*, naming that input: a reader
    or a link to them took another image's result for this input's. They are moved, whole and never
    deleted, to OUT/set_aside/, and the failure says where."""
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    shutil.copy(sorted(data_dir("kermany", "val", "pneumonia").iterdir())[0], inputs / "IM.jpeg")

    def detect_again(*extra) -> int:
        return main(["detect", "--model", "pediatric", "--out", str(out), "--quiet", *extra, str(inputs)])

    assert detect_again() == 0
    earlier = {p.name: p.read_bytes() for p in out.glob("IM.*")}
    (inputs / "IM.jpeg").write_bytes(b"not an image")
    capsys.readouterr()
    for extra in (("--resume",), ()):  # the second run finds nothing more to move
        assert detect_again(*extra) == 1
        assert not list(out.glob("IM.*")) and "IM" not in (out / "worklist.csv").read_text()
        moved = list((out / "set_aside").iterdir())
        assert len(moved) == 1 and moved[0].name.startswith("IM.")
        assert {p.name: p.read_bytes() for p in moved[0].iterdir()} == earlier
        if extra:
            reason = json.loads((out / "failures.log").read_text())["reason"]
            assert reason.startswith("cannot decode") and f"moved to {moved[0]}" in reason
            assert f"moved to {moved[0]}" in capsys.readouterr().err


def test_resume_sets_aside_a_review_exported_before_results_named_their_seal(tmp_path, capsys):
    """A reader's review exported from a Slicer scene saved before results named their model's seal names
    none: --resume cannot keep it, and refused the whole folder ('holds a reader's reviewed findings'), so
    the batch could not be finished there without moving the review by hand. It is moved, with the files
    under its name, to OUT/set_aside/ (a warning says where) and the case detected again; an unsealed review
    of other thresholds is still refused."""
    inputs, out = two_radiographs(tmp_path / "in"), tmp_path / "out"
    assert main(["detect", "--model", "pediatric", "--out", str(out), "--quiet", str(inputs)]) == 0
    reviewed, other = sorted(out.glob("*.findings.json"))
    review = {k: v for k, v in json.loads(reviewed.read_text()).items() if not k.endswith("_sha256")}
    review["review"] = {"sensitivity": review["pixel_threshold"]}
    review["findings"].append({"id": "R1", "label": "nodule", "status": "added", "note": "the reader's own"})
    reviewed.write_text(json.dumps(review))
    for p in out.glob(f"{other.name.split('.')[0]}.*"):
        p.unlink()  # the batch was stopped before it
    earlier = {p.name: p.read_bytes() for p in out.glob(f"{reviewed.name.split('.')[0]}.*")}
    resume = ["detect", "--model", "pediatric", "--out", str(out), "--quiet", "--resume", str(inputs)]
    assert main([*resume, "--fpr", "0.2"]) == 2 and "reader's reviewed findings" in capsys.readouterr().err
    assert main(resume) == 0
    [moved] = (out / "set_aside").iterdir()
    assert {p.name: p.read_bytes() for p in moved.iterdir()} == earlier
    said = capsys.readouterr()
    assert f"moved, with the files under its name, to {moved}" in said.err and "2 of 2 input(s) written" in said.out
    assert "review" not in json.loads(reviewed.read_text()) and other.exists()


def test_an_input_redone_keeps_no_file_of_the_earlier_image_it_did_not_write_again(tmp_path, capsys):
    """IM.jpeg detected with --lungs, replaced by another radiograph and detected again without: the first
    image's IM.lungs.nrrd (and its Slicer export's files, record included) stayed beside the new image's
    results, where a reader or a script paired it with them. What the batch writes under a case's name and
    this run did not write again is moved to OUT/set_aside/, and a warning says where; a user's own file of
    another name stays."""
    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    first, second = sorted(data_dir("kermany", "val", "pneumonia").iterdir())[:2]
    shutil.copy(first, inputs / "IM.jpeg")
    assert main(["detect", "--model", "pediatric", "--out", str(out), "--quiet", "--lungs", str(inputs)]) == 0
    for export in ("IM.findings.csv", "IM.export.json"):  # as the Slicer export of the first image left them
        (out / export).write_text(export)
    earlier = {p.name: p.read_bytes() for p in out.glob("IM.*") if p.name.endswith((".lungs.nrrd", ".csv", ".export.json"))}
    (out / "IM.notes.txt").write_text("the reader's own")
    shutil.copy(second, inputs / "IM.jpeg")
    capsys.readouterr()
    assert main(["detect", "--model", "pediatric", "--out", str(out), "--quiet", str(inputs)]) == 0
    [moved] = (out / "set_aside").iterdir()
    assert {p.name: p.read_bytes() for p in moved.iterdir()} == earlier
    assert sorted(p.name for p in out.glob("IM.*")) == ["IM.findings.json", "IM.heatmap.nrrd", "IM.notes.txt",
                                                        "IM.overlay.png"]
    document = json.loads((out / "IM.findings.json").read_text())
    assert document["input"] == str(inputs / "IM.jpeg")
    said = capsys.readouterr().err
    assert "IM.lungs.nrrd, IM.findings.csv, IM.export.json, left under its name by an earlier run" in said
    assert f"moved to {moved}" in said
    assert any(w.startswith("IM.lungs.nrrd, IM.findings.csv, IM.export.json, left") and w.endswith(f"moved to {moved}")
               for w in document["warnings"])  # for whoever opens it later
    assert main(["detect", "--model", "pediatric", "--out", str(out), "--quiet", str(inputs)]) == 0
    assert len(list((out / "set_aside").iterdir())) == 1  # nothing more to move


@pytest.mark.parametrize("code", [errno.EACCES, errno.ENOSPC])
def test_a_redo_whose_own_files_then_fail_names_every_folder_its_earlier_files_went_to(tmp_path, capsys,
                                                                                      monkeypatch, code):
    """A redone case sets aside the earlier image's IM.lungs.nrrd, then cannot write its findings JSON: the
    failure named only the folder the runner set the rest aside in next (a full disk, which ends the batch, none),
    so nobody could tell where the lung fields went. It names every folder used."""
    from SSLAnomalyLib.core.results import outputs

    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    first, second = sorted(data_dir("kermany", "val", "pneumonia").iterdir())[:2]
    shutil.copy(first, inputs / "IM.jpeg")
    assert main(["detect", "--model", "pediatric", "--out", str(out), "--quiet", "--lungs", str(inputs)]) == 0
    shutil.copy(second, inputs / "IM.jpeg")

    def refused(path, text):
        raise OSError(code, os.strerror(code), str(path))

    monkeypatch.setattr(outputs, "atomic_write_text", refused)
    capsys.readouterr()
    assert main(["detect", "--model", "pediatric", "--out", str(out), "--quiet", str(inputs)]) == (
        1 if code == errno.EACCES else 2)
    folders = sorted((out / "set_aside").iterdir())
    assert (folders[0] / "IM.lungs.nrrd").exists() and len(folders) == (2 if code == errno.EACCES else 1)
    named = re.compile(r"moved to (\S+?)(?=[;)]|$)", re.M)  # IM.<time> is a prefix of IM.<time>-2
    assert set(named.findall(capsys.readouterr().err)) == {str(folder) for folder in folders}
    if code == errno.EACCES:
        reason = json.loads((out / "failures.log").read_text())["reason"]
        assert set(named.findall(reason)) == {str(folder) for folder in folders}


def test_a_redo_killed_as_it_sets_aside_the_earlier_files_leaves_no_kept_result_beside_them(tmp_path, capsys,
                                                                                            monkeypatch):
    """A run killed between writing a redone case's findings JSON and setting aside what an earlier run left under
    its name (the first image's IM.lungs.nrrd) left that file for good: --resume kept the case, every promised file
    being there. The files are now set aside before the case's own, whose findings JSON marks it done: killed
    there, the case is not done, and --resume redoes it and sets them aside."""
    from SSLAnomalyLib.core.results import set_aside

    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    first, second = sorted(data_dir("kermany", "val", "pneumonia").iterdir())[:2]
    shutil.copy(first, inputs / "IM.jpeg")
    assert main(["detect", "--model", "pediatric", "--out", str(out), "--quiet", "--lungs", str(inputs)]) == 0
    earlier = (out / "IM.lungs.nrrd").read_bytes()
    shutil.copy(second, inputs / "IM.jpeg")

    def killed(*args):
        raise KeyboardInterrupt  # as Ctrl-C, or a kill, at the moment the earlier files are moved

    with monkeypatch.context() as m:
        m.setattr(set_aside, "_new_folder", killed)
        assert main(["detect", "--model", "pediatric", "--out", str(out), "--quiet", str(inputs)]) == 130
    capsys.readouterr()
    assert main(["detect", "--model", "pediatric", "--out", str(out), "--quiet", "--resume", str(inputs)]) == 0
    assert "already done" not in capsys.readouterr().out
    assert not (out / "IM.lungs.nrrd").exists()
    [moved] = (out / "set_aside").iterdir()
    assert (moved / "IM.lungs.nrrd").read_bytes() == earlier
    assert json.loads((out / "IM.findings.json").read_text())["input"] == str(inputs / "IM.jpeg")


def test_a_batch_never_replaces_another_images_results_of_the_same_name(small_model, tmp_path):
    """day2/IM.jpeg into the folder holding day1/IM.jpeg's results silently replaced them: a reader, the
    worklist or a PACS link to them then looked at another patient. The same bytes moved are no other image."""
    day1, day2, moved, out = tmp_path / "day1", tmp_path / "day2", tmp_path / "moved", tmp_path / "out"
    sources = sorted(data_dir("kermany", "val", "pneumonia").iterdir())[:2]
    for folder, source in ((day1, sources[0]), (day2, sources[1]), (moved, sources[0])):
        folder.mkdir()
        shutil.copy(source, folder / "IM.jpeg")
    assert detect(small_model, out, day1).returncode == 0
    before = (out / "IM.findings.json").read_text()
    refused = detect(small_model, out, day2)
    assert refused.returncode == 2 and str(day1 / "IM.jpeg") in refused.stderr and str(day2 / "IM.jpeg") in refused.stderr
    assert (out / "IM.findings.json").read_text() == before
    assert detect(small_model, out, day1).returncode == 0  # the same input again: its results are redone
    assert detect(small_model, out, moved).returncode == 0  # the same bytes elsewhere: the same image
    assert json.loads((out / "IM.findings.json").read_text())["input"] == str(moved / "IM.jpeg")


def test_results_without_an_index_record_are_not_replaced_by_another_image_of_the_same_name(small_model, tmp_path):
    """A run redoing day1/IM.jpeg killed before it reached it (the index then had no record of the file the
    results came from), or an index lost: day2/IM.jpeg then silently replaced day1's results."""
    day1, day2, out = tmp_path / "day1", tmp_path / "day2", tmp_path / "out"
    for folder, source in zip((day1, day2), sorted(data_dir("kermany", "val", "pneumonia").iterdir())[:2]):
        folder.mkdir()
        shutil.copy(source, folder / "IM.jpeg")
    assert detect(small_model, out, day1).returncode == 0
    before = (out / "IM.findings.json").read_text()
    index = out / "batch_index.json"
    for lost in (lambda: index.write_text(json.dumps([{"name": "IM", "input": str(day1 / "IM.jpeg")}])),
                 index.unlink):
        lost()
        refused = detect(small_model, out, day2)
        assert refused.returncode == 2 and str(day1 / "IM.jpeg") in refused.stderr, refused.stderr
        assert (out / "IM.findings.json").read_text() == before
    assert detect(small_model, out, day1).returncode == 0  # the same input again: its results are redone


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
    (normals / "again.jpeg").symlink_to(next(normals.iterdir()))  # the same folder twice, and a link beside its file
    r = subprocess.run([SSLANOMALY, "train", "--normals", str(normals), str(normals), "--out", str(tmp_path / "m"),
                        "--minutes", "5", "--quiet"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert f"{normals}, {normals}: 9 image file(s) leave at most 7" in r.stderr  # each normal counted once
    (normals / "again.jpeg").unlink()
    r = subprocess.run([SSLANOMALY, "train", "--normals", str(normals), "--val-normals", str(tmp_path / "empty"),
                        "--out", str(tmp_path / "m"), "--minutes", "0", "--quiet"], capture_output=True, text=True,
                       cwd=REPO, timeout=120)
    assert r.returncode != 0 and str(tmp_path / "empty") in r.stderr and not (tmp_path / "m").exists()
    assert "random, untrained encoder" in r.stderr and "--start-from MODEL" in r.stderr  # 0 minutes, no start


def test_train_and_calibrate_name_each_normal_they_could_not_read(tmp_path):
    """Unreadable normals used to be left out in silence (only the manifest listed them): a site
    must see which of its normals were not used, and why."""
    normals = tmp_path / "normals"
    normals.mkdir()
    for f in sorted(data_dir("kermany", "val", "normal").iterdir())[:24]:
        (normals / f.name).symlink_to(f)
    (normals / "empty.png").write_bytes(b"")
    (normals / "cut.jpeg").write_bytes(next(normals.glob("*.jpeg")).read_bytes()[:3000])
    for command in (["calibrate", "--model", "pediatric"], ["train", "--start-from", "pediatric", "--minutes", "0"]):
        out = tmp_path / command[0]
        r = subprocess.run([SSLANOMALY, *command, "--normals", str(normals), "--out", str(out), "--quiet"],
                           capture_output=True, text=True, cwd=REPO, timeout=300)
        assert r.returncode == 0 and (out / "manifest.json").exists(), r.stderr
        assert f"warning: {normals / 'empty.png'}: file is empty; left out of the normals" in r.stderr
        assert f"warning: {normals / 'cut.jpeg'}: " in r.stderr and "truncated" in r.stderr


def test_a_full_disk_ends_the_batch_naming_the_folder_and_leaves_no_lock_or_temporary(small_model, tmp_path,
                                                                                      monkeypatch, capsys):
    """The disk fills while heatmaps are written (ENOSPC from fsync, where a full disk shows)."""
    inputs, out = two_radiographs(tmp_path / "in"), tmp_path / "out"
    real_fsync = os.fsync

    def full(fd):
        if ".heatmap.nrrd.tmp" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full)
    code = main(["detect", "--model", str(small_model), "--out", str(out), "--quiet", str(inputs)])
    err = capsys.readouterr().err
    assert code == 2 and "No space left on device" in err and str(out) in err and "--resume" in err
    assert not (out / LOCK).exists() and not [p.name for p in out.iterdir() if p.name.startswith(".")]


def test_a_real_disk_too_full_for_any_heatmap_ends_the_batch_as_a_full_disk(tmp_path):
    """SimpleITK says a full disk in its own words (a RuntimeError): every input used to be logged as
    failed, exit 1, where the README promises "No space left on device" and exit 2."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=120k", "tmpfs", str(disk)],
                                           capture_output=True).returncode:
        pytest.skip("a real full disk needs a small tmpfs, which only root may mount here")
    try:
        r = detect("pediatric", disk / "out", *sorted(data_dir("kermany_fullres", "normal").iterdir())[:2])
        assert r.returncode == 2 and "No space left on device" in r.stderr and "--resume" in r.stderr, r.stderr
        assert "RuntimeError" not in r.stderr and not (disk / "out" / "failures.log").exists()
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_thousands_of_unreadable_files_cost_no_more_per_file_at_the_end(small_model, tmp_path, monkeypatch):
    """Each failure is appended to failures.log, never the whole log rewritten and synced again."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(600):
        (inputs / f"{i:04d}.png").write_bytes(b"")
    syncs = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: syncs.append(fd) or real_fsync(fd))
    assert main(["detect", "--model", str(small_model), "--out", str(tmp_path / "out"), "--quiet", str(inputs)]) == 1
    rows = [json.loads(line) for line in (tmp_path / "out" / "failures.log").read_text().splitlines()]
    assert len(rows) == 600 and all(r["reason"] == "file is empty" for r in rows)
    assert len(syncs) < 10, f"{len(syncs)} fsyncs for 600 failures"


def test_the_same_file_given_twice_or_through_a_link_is_scored_once_and_said(small_model, tmp_path, capsys):
    """It used to get two results (`in_a` and `in_a-2`) and two worklist rows without a word."""
    inputs = two_radiographs(tmp_path / "in")
    first = sorted(inputs.iterdir())[0]
    (tmp_path / "link.jpeg").symlink_to(first)
    out = tmp_path / "out"
    assert main(["detect", "--model", str(small_model), "--out", str(out), "--quiet",
                 str(first), str(inputs), str(tmp_path / "link.jpeg")]) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if "more than once" in line]
    assert warned == [f"warning: the same file is given more than once, scored once under its first name: {first} "
                      f"(also as {first}, {tmp_path / 'link.jpeg'})"]
    assert sorted(p.name for p in out.glob("*.findings.json")) == sorted(f"{f.stem}.findings.json"
                                                                         for f in inputs.iterdir())
    assert len((out / "worklist.csv").read_text().splitlines()) == 1 + 2
