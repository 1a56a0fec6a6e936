"""A batch interrupted at any moment (SIGINT, SIGTERM, SIGKILL) leaves only complete results, and
`--resume` finishes exactly what is missing, with results identical to an uninterrupted run; it
keeps a result only while its input file is the same image and every promised file is there."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import SimpleITK as sitk
from PIL import Image

from conftest import REPO, data_dir, link_subset
from SSLAnomalyLib.core.batch.resume import BATCH_INDEX
from SSLAnomalyLib.core.results.outputs import LOCK, SUFFIXES
from SSLAnomalyLib.core.results.worklist import WORKLIST

SSLANOMALY = str(REPO / ".venv" / "bin" / "sslanomaly")


def detect(model, inputs, out, *extra):
    return [SSLANOMALY, "detect", "--model", str(model), "--out", str(out), "--quiet", *extra, str(inputs)]


def done_cases(out) -> set[str]:
    return {p.name[: -len(".findings.json")] for p in out.glob("*.findings.json")}


def interrupt_after(cmd, out, n_done: int, sig) -> subprocess.CompletedProcess:
    """Run `cmd`, send `sig` once `n_done` more cases are complete, and wait for the end."""
    before = len(done_cases(out)) if out.exists() else 0
    # a test run started in the background (nohup, CI without job control) inherits an ignored SIGINT:
    # give the batch the default handler, as an interactive user's shell would
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    while proc.poll() is None and (len(done_cases(out)) if out.exists() else 0) < before + n_done:
        time.sleep(0.01)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


def assert_only_complete_results(out):
    """Every visible file is a whole result; a case's three files exist once its JSON does."""
    for name in done_cases(out):
        json.loads((out / f"{name}.findings.json").read_text())
        sitk.ReadImage(str(out / f"{name}.heatmap.nrrd"))
        Image.open(out / f"{name}.overlay.png").load()
    for p in out.iterdir():
        assert p.name.startswith(".") or p.name.endswith(SUFFIXES) or p.name in (BATCH_INDEX, WORKLIST), p


def snapshot(out) -> dict:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in out.iterdir()
            if not p.name.startswith(".") and p.name not in (BATCH_INDEX, WORKLIST)}  # rewritten by every run


def test_interrupted_batch_resumes_to_the_uninterrupted_results(small_model, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for f in sorted(data_dir("kermany_fullres", "pneumonia").iterdir()) + sorted(data_dir("kermany_fullres", "normal").iterdir()):
        (inputs / f.name).symlink_to(f)  # 24 cases: a busy machine must not finish the batch before the signal
    names = {f.stem for f in inputs.iterdir()}
    reference = tmp_path / "reference"
    r = subprocess.run(detect(small_model, inputs, reference), capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr

    out = tmp_path / "out"
    r = interrupt_after(detect(small_model, inputs, out), out, 2, signal.SIGINT)
    assert r.returncode == 130 and "--resume" in r.stderr and "Traceback" not in r.stderr
    assert_only_complete_results(out)
    r = interrupt_after(detect(small_model, inputs, out, "--resume"), out, 2, signal.SIGKILL)
    assert r.returncode == -signal.SIGKILL
    assert_only_complete_results(out)
    finished = done_cases(out)
    assert 4 <= len(finished) < len(names), "the batch was not interrupted mid-run"
    kept = snapshot(out)

    r = subprocess.run(detect(small_model, inputs, out, "--resume"), capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert f"({len(finished)} already done)" in r.stdout
    assert done_cases(out) == names
    assert not list(out.glob(".*")), "temporary files were left behind"
    now = snapshot(out)
    # finished cases' heatmaps and overlays are kept as they were; their findings JSON may only gain
    # the batch's drift warning, and must equal the uninterrupted run's (below)
    assert all(now[f] == kept[f] for f in kept if f.split(".")[0] in finished and not f.endswith(".findings.json")), \
        "finished cases were redone"
    for name in names:
        assert json.loads((out / f"{name}.findings.json").read_text()) == \
            json.loads((reference / f"{name}.findings.json").read_text())
        heat, ref = (sitk.ReadImage(str(d / f"{name}.heatmap.nrrd")) for d in (out, reference))
        assert np.array_equal(sitk.GetArrayFromImage(heat), sitk.GetArrayFromImage(ref))
        assert heat.GetSpacing() == ref.GetSpacing() and heat.GetOrigin() == ref.GetOrigin()
        assert np.array_equal(*(np.asarray(Image.open(d / f"{name}.overlay.png")) for d in (out, reference)))


def test_sigterm_ends_the_batch_cleanly(small_model, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for kind in ("pneumonia", "normal"):
        for f in sorted(data_dir("kermany_fullres", kind).iterdir()):
            (inputs / f.name).symlink_to(f)
    out = tmp_path / "out"
    r = interrupt_after(detect(small_model, inputs, out), out, 2, signal.SIGTERM)
    assert r.returncode == 143 and "terminated" in r.stderr and "--resume" in r.stderr and "Traceback" not in r.stderr
    assert not (out / LOCK).exists() and not list(out.glob(".*")), "the lock or temporary files were left behind"
    assert_only_complete_results(out)
    assert len(done_cases(out)) < len(list(inputs.iterdir())), "the batch was not interrupted mid-run"
    r = subprocess.run(detect(small_model, inputs, out, "--resume"), capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0 and done_cases(out) == {f.stem for f in inputs.iterdir()}


def two_inputs(folder):
    folder.mkdir()
    pneumonia, normal = (sorted(data_dir("kermany_fullres", k).iterdir())[0] for k in ("pneumonia", "normal"))
    shutil.copy(pneumonia, folder / "a.jpeg")
    shutil.copy(normal, folder / "b.jpeg")
    return folder, normal


def image_ids(out) -> dict[str, str]:
    return {p.name.split(".")[0]: json.loads(p.read_text())["image_id"] for p in out.glob("*.findings.json")}


def test_resume_redoes_a_case_whose_input_file_was_replaced(small_model, tmp_path):
    inputs, normal = two_inputs(tmp_path / "in")
    out = tmp_path / "out"
    assert subprocess.run(detect(small_model, inputs, out), capture_output=True, cwd=REPO).returncode == 0
    before = image_ids(out)
    os.utime(inputs / "b.jpeg")  # touched, the same bytes: kept
    r = subprocess.run(detect(small_model, inputs, out, "--resume"), capture_output=True, text=True, cwd=REPO)
    assert "(2 already done)" in r.stdout
    shutil.copy(normal, inputs / "a.jpeg")  # another image under the same name: done again
    r = subprocess.run(detect(small_model, inputs, out, "--resume"), capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0 and "(1 already done)" in r.stdout
    after = image_ids(out)
    assert after["a"] != before["a"] and after["a"] == after["b"] == before["b"]


def test_resume_redoes_another_image_of_the_same_size_and_time(small_model, tmp_path):
    """An export unzipped again over the same names: another patient's file, as long and as old to
    the nanosecond. Only its bytes tell it apart, and its results are done again."""
    inputs, normal = two_inputs(tmp_path / "in")
    a = inputs / "a.jpeg"
    length = max(a.stat().st_size, normal.stat().st_size)
    a.write_bytes(a.read_bytes().ljust(length, b"\0"))  # a JPEG reader stops at its end-of-image marker
    out = tmp_path / "out"
    assert subprocess.run(detect(small_model, inputs, out), capture_output=True, cwd=REPO).returncode == 0
    before, stat = image_ids(out), a.stat()
    a.write_bytes(normal.read_bytes().ljust(length, b"\0"))
    os.utime(a, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert (a.stat().st_size, a.stat().st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)
    r = subprocess.run(detect(small_model, inputs, out, "--resume"), capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0 and "(1 already done)" in r.stdout
    assert image_ids(out)["a"] != before["a"] and image_ids(out)["a"] == image_ids(out)["b"]


def test_resume_keeps_the_results_of_inputs_given_relative_then_absolute(small_model, tmp_path):
    inputs, _ = two_inputs(tmp_path / "in")
    out = tmp_path / "out"
    first = detect(small_model, "in", out)
    assert subprocess.run(first, capture_output=True, cwd=tmp_path).returncode == 0
    before = snapshot(out)
    r = subprocess.run(detect(small_model, inputs.resolve(), out, "--resume"), capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0 and "(2 already done)" in r.stdout, r.stdout + r.stderr
    assert snapshot(out) == before


def test_resume_without_an_index_record_compares_the_image_itself(small_model, tmp_path):
    """A run killed before it saved the index: the results are judged by the input's pixels."""
    inputs, normal = two_inputs(tmp_path / "in")
    out = tmp_path / "out"
    assert subprocess.run(detect(small_model, inputs, out), capture_output=True, cwd=REPO).returncode == 0
    index = json.loads((out / BATCH_INDEX).read_text())
    (out / BATCH_INDEX).write_text(json.dumps([{"name": r["name"], "input": r["input"]} for r in index]))
    shutil.copy(normal, inputs / "a.jpeg")
    r = subprocess.run(detect(small_model, inputs, out, "--resume"), capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0 and "(1 already done)" in r.stdout
    assert image_ids(out)["a"] == image_ids(out)["b"]
    assert all("sha256" in row for row in json.loads((out / BATCH_INDEX).read_text()))  # recorded again


def test_resume_requires_every_file_the_options_promise_and_clears_killed_staging(small_model, tmp_path):
    inputs, _ = two_inputs(tmp_path / "in")
    out = tmp_path / "out"
    assert subprocess.run(detect(small_model, inputs, out), capture_output=True, cwd=REPO).returncode == 0
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    staging = out / f".sslanomaly-staging-{dead}-x1y2z3"  # what a run killed while writing a bundle leaves
    staging.mkdir()
    (staging / "a.mrb").write_bytes(b"PK half a bundle")
    r = subprocess.run(detect(small_model, inputs, out, "--resume", "--mrb"), capture_output=True, text=True,
                       cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert "already done" not in r.stdout and (out / "a.mrb").is_file() and (out / "b.mrb").is_file()
    assert not staging.exists()


def test_resume_redoes_results_measured_at_another_pixel_spacing(small_model, tmp_path):
    """`--resume --spacing 0.14` kept the areas, centroids and heatmap geometry of a run at
    `--spacing 0.5` (or at the assumed 1.0 mm): results of other options, kept as done."""
    inputs, _ = two_inputs(tmp_path / "in")
    out = tmp_path / "out"
    assert subprocess.run(detect(small_model, inputs, out, "--spacing", "0.5"), capture_output=True,
                          cwd=REPO).returncode == 0
    for spacing, redone in ((["--spacing", "0.5"], 0), (["--spacing", "0.14"], 2), ([], 2), ([], 0)):
        r = subprocess.run(detect(small_model, inputs, out, "--resume", *spacing), capture_output=True, text=True, cwd=REPO)
        assert r.returncode == 0 and f"{redone} of {redone} input(s) written" in r.stdout, (spacing, r.stdout)
    heat = sitk.ReadImage(str(out / "a.heatmap.nrrd"))
    assert heat.GetSpacing()[:2] == (1.0, 1.0)


def test_resume_redoes_a_result_whose_findings_json_was_cut_short(pediatric_model, tmp_path):
    """A kept findings JSON without its percentile (edited by hand, or cut short) ended the resumed batch,
    after all its work, in a KeyError traceback from the drift check, and no worklist was written."""
    inputs, out = tmp_path / "in", tmp_path / "out"
    link_subset(data_dir("kermany", "val", "normal"), inputs, 3)
    assert subprocess.run(detect(pediatric_model, inputs, out), capture_output=True, cwd=REPO).returncode == 0
    cut, bent = sorted(out.glob("*.findings.json"))[:2]
    cut.write_text(json.dumps({k: v for k, v in json.loads(cut.read_text()).items() if k != "percentile"}))
    bent.write_text(json.dumps({**json.loads(bent.read_text()), "score": "high"}))
    r = subprocess.run(detect(pediatric_model, inputs, out, "--resume"), capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0 and "2 of 2 input(s) written" in r.stdout and "(1 already done)" in r.stdout, r.stderr
    assert "percentile" in json.loads(cut.read_text()) and isinstance(json.loads(bent.read_text())["score"], float)
    assert len((out / WORKLIST).read_text().splitlines()) == 4


def test_sigterm_while_detect_mrb_imports_slicer_core_ends_cleanly(pediatric_model, tmp_path):
    """`detect --mrb` imports slicer-core on its way; a SIGTERM (or Ctrl-C) in the middle of its VTK
    modules ended the run in 'ImportError: Failed to load vtkRemoteIO: No module named
    slicer_core.MRMLCore' (exit 1, a traceback), or in a segmentation fault, not 'terminated'. The
    signal here comes as that import starts to load MRMLCore."""
    image = sorted(data_dir("kermany", "val", "pneumonia").iterdir())[0]
    script = f"""
import importlib.abc, os, signal, sys
class SignalOnImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "slicer_core.MRMLCore":
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGTERM)
sys.meta_path.insert(0, SignalOnImport())
from SSLAnomalyLib.cli import main
sys.exit(main(["detect", "--model", {str(pediatric_model)!r}, "--mrb", "--quiet", "--out", {str(tmp_path / 'out')!r},
               {str(image)!r}]))
"""
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 143 and "terminated (SIGTERM)" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not list((tmp_path / "out").glob("*.findings.json"))


def test_a_batch_stopped_by_its_front_end_runs_no_drift_check_until_it_is_whole(pediatric_model, tmp_path):
    """Slicer's Stop (the progress callback returning False) ended the batch as if it were whole: the
    drift check ran over the cases done, wrote 'this batch of 21 radiographs ...' into their findings
    JSONs, and once resumed they carried the whole batch's warning beside it."""
    from SSLAnomalyLib.core.batch.options import BatchOptions
    from SSLAnomalyLib.core.batch.runner import BatchEvents, file_cases, run_batch
    from SSLAnomalyLib.core.detection.detector import AnomalyDetector

    class StopAt20(BatchEvents):
        def case_done(self, row, done, todo):
            return done < 20

    detector, out = AnomalyDetector.load(pediatric_model), tmp_path / "out"
    cases = file_cases(sorted(data_dir("kermany", "val", "pneumonia").iterdir())[:24])
    stopped = run_batch(cases, out, detector, BatchOptions(), StopAt20())
    assert 20 <= len(stopped.rows) < 24 and stopped.drift is None
    assert not any("this batch of" in w for p in out.glob("*.findings.json") for w in json.loads(p.read_text())["warnings"])
    whole = run_batch(cases, out, detector, BatchOptions(resume=True))
    assert whole.drift and whole.drift.startswith("this batch of 24 ")
    assert all([w for w in json.loads(p.read_text())["warnings"] if "this batch of" in w] == [whole.drift]
               for p in out.glob("*.findings.json"))
