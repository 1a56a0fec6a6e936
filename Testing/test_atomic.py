"""Atomic writes leave the old file or the new one; leftovers of a killed run are removed, and
nothing else (another live run's temporary files, the user's own files) ever is."""

import subprocess
import sys
import time

import psutil
import pytest

from SSLAnomalyLib.core.files.atomic import atomic_path, atomic_write_text, remove_leftovers


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = atomic_write_text(tmp_path / "case.findings.json", "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["case.findings.json"]


def test_the_leftover_of_a_process_dead_but_not_yet_reaped_is_removed(tmp_path):
    """A Dask worker killed mid-write is a zombie until its nanny reaps it: the batch that ended in the
    meantime left its half-written overlay in the folder (an intermittent failure of test_dask_batch)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.time() + 30
        while psutil.Process(child.pid).status() != psutil.STATUS_ZOMBIE and time.time() < deadline:
            time.sleep(0.01)  # exited, and not waited for: a zombie
        half = tmp_path / f".poison.overlay.png.tmp{child.pid}-0123abcd"
        half.write_bytes(b"\x89PNG half")
        assert remove_leftovers(tmp_path) == [half] and not half.exists()
    finally:
        child.wait()


def test_only_leftovers_of_processes_that_are_gone_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    gone = tmp_path / f".a.heatmap.nrrd.tmp{dead}-0123abcd.nrrd"
    live = tmp_path / f".b.findings.json.tmp{1}-89abcdef.json"  # pid 1 is always running
    users = [tmp_path / ".notes.tmp", tmp_path / f".c.tmp{dead}", tmp_path / "a.findings.json"]
    for p in (gone, live, *users):
        p.write_text("x")
    assert remove_leftovers(tmp_path) == [gone]
    assert live.exists() and all(p.exists() for p in users)


def test_the_results_of_an_input_named_like_a_temporary_stay(tmp_path):
    """An input `.x.tmp<pid>-deadbeef.png` has results `.x.tmp<pid>-deadbeef.findings.json` and so on,
    which the next batch into the folder took for a killed run's leftovers and deleted. Only names made
    as temporaries are (`.<target>.tmp<pid>-<token>`, then nothing or the target's own extension)."""
    from SSLAnomalyLib.core.results.export_owner import EXPORT_SUFFIXES
    from SSLAnomalyLib.core.results.outputs import LUNGS_SUFFIX, SUFFIXES

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    case = f".x.tmp{dead}-deadbeef"
    results = [tmp_path / f"{case}{suffix}" for suffix in {*SUFFIXES, LUNGS_SUFFIX, *EXPORT_SUFFIXES.values()}]
    gone = [tmp_path / f".{case}.findings.json.tmp{dead}-0123abcd",
            tmp_path / f".{case}.heatmap.nrrd.tmp{dead}-0123abcd.nrrd",
            tmp_path / f".plain.nii.gz.tmp{dead}-0123abcd.nii.gz"]
    for p in (*results, *gone):
        p.write_text("x")
    assert sorted(remove_leftovers(tmp_path)) == sorted(gone)
    assert all(p.exists() for p in results)
