"""Jobs the panel and the Logic run: a real training process started through a launcher (as
PythonSlicer starts the real Python) reports its progress and is really stopped, children and all;
detection stops between images."""

import sys
import threading
import time

import psutil

from SSLAnomalyLib.jobs import DetectionJob, TrainingJob

LAUNCHER = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"  # stands in for PythonSlicer


def test_cancel_stops_a_real_training_and_everything_it_started(small_normals, tmp_path):
    command = [sys.executable, "-c", LAUNCHER, sys.executable, "-m", "SSLAnomalyLib.cli", "train",
               "--normals", str(small_normals[0]), "--out", str(tmp_path / "model"), "--minutes", "10",
               "--size", "64", "--device", "cpu"]
    job = TrainingJob(command).start()
    deadline = time.time() + 300
    while job.phase != "training" and job.running and time.time() < deadline:
        time.sleep(0.5)
    assert job.running and job.total == 600, job.lines[-5:]  # the trainer's own progress, in seconds
    assert not [line for line in job.lines if "progress" in line]  # reports are read, not logged
    tree = psutil.Process(job.pid).children(recursive=True)
    assert any("SSLAnomalyLib.cli" in " ".join(p.cmdline()) for p in tree)  # the real training, under the launcher
    job.cancel()
    assert not job.running and job.cancelled
    assert not [p for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert (tmp_path / "model.work" / "checkpoint.safetensors").exists()  # what resume starts from


def test_a_finished_process_is_running_until_its_last_line_is_read():
    """The panel shows a job's lines while it runs and then reads the exit code: the last lines (the
    reason a training failed) must be in `lines` by then, however slowly a log callback takes them."""
    script = "import sys\nfor i in range(300): print('line', i)\nprint('error: the reason'); sys.exit(3)"
    job = TrainingJob([sys.executable, "-c", script], on_line=lambda line: time.sleep(0.002)).start()
    while job.running:
        time.sleep(0.01)
    assert job.lines[-1] == "error: the reason" and len(job.lines) == 301
    assert job.wait() == 3


def test_a_killed_process_is_not_running_and_keeps_its_log():
    job = TrainingJob([sys.executable, "-c", "import time; print('started', flush=True); time.sleep(60)"]).start()
    while not job.lines:
        time.sleep(0.05)
    psutil.Process(job.pid).kill()
    assert job.wait(10) == -9 and not job.running and job.lines == ["started"] and not job.cancelled


def test_a_cancelled_process_never_reads_as_a_success():
    """psutil reaped the cancelled process itself, so that its exit code read 0 and the panel said
    'Model ready' for a model that was never written."""
    for command in ([sys.executable, "-c", "import time; print('up', flush=True); time.sleep(60)"],
                    [sys.executable, "-c", LAUNCHER, sys.executable, "-c", "import time; print('up', flush=True); "
                     "time.sleep(60)"]):
        job = TrainingJob(command).start()
        while not job.lines:
            time.sleep(0.05)
        job.cancel()
        assert not job.running and job.wait() != 0


def test_detection_job_reports_each_image_and_stops_between_images():
    started = threading.Event()

    def work(item):
        started.set()
        time.sleep(0.3)
        if item == "bad":
            raise ValueError("unreadable")
        return item.upper()

    job = DetectionJob(work, ["a", "bad", "c", "d", "e"]).start()
    started.wait(5)
    while job.done < 2:
        time.sleep(0.05)
    job.cancel()
    job.wait(5)
    assert not job.running and 2 <= job.done < job.total
    assert job.results[0] == ("a", "A", None)
    assert job.results[1][0] == "bad" and isinstance(job.results[1][2], ValueError)  # reported, the batch went on


def test_progress_is_json_lines_for_a_program_and_a_bar_for_a_person(monkeypatch, capsys):
    from SSLAnomalyLib.training.progress import ENV, Progress, parse_progress, progress_over

    monkeypatch.setenv(ENV, "json")
    assert list(progress_over(["a", "b", "c"], "reading", "img")) == ["a", "b", "c"]
    bar = Progress("training", 10, "s", initial=4)
    bar.update(4)  # no change, no line
    bar.update(99, step=3)  # never beyond the total
    bar.close()
    out, err = capsys.readouterr()
    reports = [parse_progress(line) for line in out.splitlines()]
    assert [(r["phase"], r["done"], r["total"]) for r in reports] == [
        ("reading", 0, 3), ("reading", 1, 3), ("reading", 2, 3), ("reading", 3, 3), ("training", 4, 10),
        ("training", 10, 10)]
    assert err == "" and parse_progress("training: 40%|####  | 4/10s") is None
    list(progress_over(["a"], "reading", "img", show=False))
    monkeypatch.delenv(ENV)
    list(progress_over(["a"], "reading", "img"))
    assert capsys.readouterr().out == ""  # quiet, or a bar on stderr: nothing on stdout
