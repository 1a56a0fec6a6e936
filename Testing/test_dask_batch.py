"""Batch detection on a Dask LocalCluster of two worker processes gives the same files as
`sslanomaly detect`, and a bad input is a row with its reason (and a line of failures.log), not a
failed batch (test_batch_runners.py compares all three runners, resume included)."""

import json
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import data_dir

pytest.importorskip("distributed", reason="dask.distributed is not installed (pip install -e '.[distributed]')")


def test_two_local_workers_match_the_cli(small_model, tmp_path):
    from distributed import Client, LocalCluster

    from SSLAnomalyLib.cli import main
    from SSLAnomalyLib.core.batch.dask_driver import detect_on_dask

    src = tmp_path / "in"
    src.mkdir()
    for f in sorted(data_dir("kermany_fullres", "pneumonia").iterdir())[:3]:
        (src / f.name).symlink_to(f)
    (src / "broken.png").write_bytes(b"not a png")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        report = detect_on_dask(client, [src], tmp_path / "dask", model=str(small_model), device="cpu")
    assert main(["detect", "--model", str(small_model), "--out", str(tmp_path / "cli"), "--quiet", str(src)]) == 1

    rows = sorted(report.rows, key=lambda r: r.name)
    assert [r.name for r in rows] == ["broken"] + sorted(f.stem for f in src.glob("*.jpeg"))
    assert rows[0].error and all(r.error is None for r in rows[1:])
    assert json.loads((tmp_path / "dask" / "failures.log").read_text())["input"] == str(src / "broken.png")
    for r in rows[1:]:
        ours = json.loads((tmp_path / "dask" / f"{r.name}.findings.json").read_text())
        theirs = json.loads((tmp_path / "cli" / f"{r.name}.findings.json").read_text())
        assert ours == theirs == r.document
        heat = [sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / d / f"{r.name}.heatmap.nrrd")))
                for d in ("dask", "cli")]
        np.testing.assert_array_equal(heat[0], heat[1])
        assert (tmp_path / "dask" / f"{r.name}.overlay.png").stat().st_size > 0


def test_a_model_folder_written_again_is_loaded_again(small_model, pediatric_model, tmp_path):
    """A second batch in the same session, after the model folder was replaced (trained or calibrated
    again with --overwrite), was scored by the first model, cached by the folder's path."""
    import shutil

    from distributed import Client, LocalCluster

    from SSLAnomalyLib.core.batch.dask_driver import detect_on_dask
    from SSLAnomalyLib.core.model_files.model_folder import load

    model = tmp_path / "site-model"
    shutil.copytree(small_model, model)
    image = sorted(data_dir("kermany", "val", "normal").iterdir())[0]
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        first = detect_on_dask(client, [image], tmp_path / "one", model=str(model), device="cpu")
        shutil.copytree(pediatric_model, tmp_path / "new")
        shutil.rmtree(model)
        (tmp_path / "new").rename(model)
        second = detect_on_dask(client, [image], tmp_path / "two", model=str(model), device="cpu")
    assert first.rows[0].document["model"] == load(small_model).manifest.model_id
    assert second.rows[0].document["model"] == load(pediatric_model).manifest.model_id


def test_a_case_that_kills_its_workers_is_its_failure_and_resume_redoes_only_it(pediatric_model, tmp_path, capsys):
    """A case whose every worker died (KilledWorker) ended the whole batch in a traceback, with no
    line in failures.log and the cases not yet started never run; and the half-written file of a
    worker that died stayed in the folder after the batch, until the next one."""
    import dask
    from distributed import Client, LocalCluster

    from dask_faults import KillOn
    from SSLAnomalyLib.cli import main
    from SSLAnomalyLib.core.batch.dask_driver import detect_on_dask
    from SSLAnomalyLib.core.results.outputs import LOCK

    src = tmp_path / "in"
    src.mkdir()
    for f in sorted(data_dir("kermany", "val", "normal").iterdir())[:4]:
        (src / f.name).symlink_to(f)
    (src / "poison.jpeg").symlink_to(sorted(data_dir("kermany", "val", "normal").iterdir())[4])
    out = tmp_path / "out"
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        client.register_plugin(KillOn("poison"))
        report = detect_on_dask(client, [src], out, model=str(pediatric_model), device="cpu", in_flight=1)
    assert [r.name for r in report.failures] == ["poison"] and "worker" in report.failures[0].error
    assert len(report.rows) == 5 and len(list(out.glob("*.findings.json"))) == 4
    logged = [json.loads(line) for line in (out / "failures.log").read_text().splitlines()]
    assert [line["input"] for line in logged] == [str(src / "poison.jpeg")]
    assert not (out / LOCK).exists() and not [p.name for p in out.iterdir() if p.name.startswith(".")]
    capsys.readouterr()
    assert main(["detect", "--model", str(pediatric_model), "--out", str(out), "--resume", str(src)]) == 0
    summary = capsys.readouterr().out
    assert "1 of 1 input(s) written" in summary and "(4 already done)" in summary
    assert not (out / "failures.log").exists() or not (out / "failures.log").read_text()


def test_a_stopped_batch_keeps_its_lock_until_the_cases_running_are_written(pediatric_model, tmp_path):
    """Stopped (a front end's case_done returning False, or Ctrl-C), the driver cancelled the cases in
    flight and released the lock at once, while the ones already running on workers (a task cannot be
    stopped midway) went on writing into the folder, where another run may then be writing."""
    import dask
    from distributed import Client, LocalCluster

    from dask_faults import SlowOn
    from SSLAnomalyLib.core.batch.dask_driver import detect_on_dask
    from SSLAnomalyLib.core.batch.runner import BatchEvents

    class StopAtFirst(BatchEvents):
        def case_done(self, row, done, todo):
            return False

    src = tmp_path / "in"
    src.mkdir()
    for name, f in zip(("a-slow", "b", "c"), sorted(data_dir("kermany", "val", "normal").iterdir())):
        (src / f"{name}.jpeg").symlink_to(f)
    out = tmp_path / "out"
    with dask.config.set({"distributed.scheduler.worker-saturation": 1.0}), \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:  # one case per worker: a-slow is running on one when b ends the batch
        client.register_plugin(SlowOn("a-slow"))
        report = detect_on_dask(client, [src], out, model=str(pediatric_model), device="cpu", in_flight=2,
                                events=StopAtFirst())
        written = sorted(p.name for p in out.glob("*.findings.json"))
        time.sleep(8)
        assert sorted(p.name for p in out.glob("*.findings.json")) == written  # nothing after the lock went
    assert [r.name for r in report.rows] == ["b"] and written == ["a-slow.findings.json", "b.findings.json"]


def test_relative_paths_name_the_drivers_files_on_every_worker(pediatric_model, tmp_path, monkeypatch):
    """Inputs and --out given relative to the driver's folder travelled as they were: a worker started
    in another folder (another host's) read its own in/IM-0122-0001.jpeg, a pneumonia, and wrote
    the results into its own out/, while the driver's worklist listed them as the driver's normals."""
    from distributed import Client, LocalCluster

    from dask_faults import WorkIn
    from SSLAnomalyLib.core.batch.dask_driver import detect_on_dask
    from SSLAnomalyLib.core.reading.images import read_radiograph

    normal = sorted(data_dir("kermany", "val", "normal").iterdir())[0]
    pneumonia = sorted(data_dir("kermany", "val", "pneumonia").iterdir())[0]
    for folder, image in (("driver", normal), ("worker", pneumonia)):
        (tmp_path / folder / "in").mkdir(parents=True)
        (tmp_path / folder / "in" / "IM-0122-0001.jpeg").symlink_to(image)
    monkeypatch.chdir(tmp_path / "driver")
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        client.register_plugin(WorkIn(tmp_path / "worker"))
        report = detect_on_dask(client, ["in"], "out", model=str(pediatric_model), device="cpu")
    assert report.rows[0].document["image_id"] == read_radiograph(normal).identity
    written = json.loads((tmp_path / "driver" / "out" / "IM-0122-0001.findings.json").read_text())
    assert written == report.rows[0].document
    assert not (tmp_path / "worker" / "out").exists()


def test_a_bundled_name_is_the_bundled_model_where_a_folder_of_that_name_is_at_hand(small_model, tmp_path,
                                                                                    monkeypatch):
    """`--model pediatric` is the bundled model on the command line even beside a ./pediatric folder (it says
    so); the Dask driver took the folder instead, because it made any existing path of that name absolute."""
    import shutil

    from distributed import Client, LocalCluster

    from SSLAnomalyLib.core.batch.dask_driver import detect_on_dask
    from SSLAnomalyLib.core.model_files.model_folder import load

    shutil.copytree(small_model, tmp_path / "pediatric")
    image = sorted(data_dir("kermany", "val", "normal").iterdir())[0]
    monkeypatch.chdir(tmp_path)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        report = detect_on_dask(client, [str(image)], "out", model="pediatric", device="cpu")
    assert report.rows[0].document["model"] == load("pediatric").manifest.model_id
    assert report.rows[0].document["model"] != load(tmp_path / "pediatric").manifest.model_id


@pytest.mark.skipif(not Path("/proc/self/cwd").is_dir(), reason="needs Linux's /proc/self/cwd")
def test_a_path_only_the_driver_sees_is_refused_not_written_elsewhere(pediatric_model, tmp_path, monkeypatch):
    """Workers that did not share the driver's storage: an output folder missing on the worker was
    made there and the results written to its own disk, while the driver reported them written (and
    listed them in its worklist); an input it could not see was 'file does not exist', though the
    driver had just listed it. `/proc/self/cwd/...` is a path each process sees in its own folder."""
    import shutil

    from distributed import Client, LocalCluster

    from dask_faults import WorkIn
    from SSLAnomalyLib.core.batch.case import Case
    from SSLAnomalyLib.core.batch.dask_driver import NotShared, detect_on_dask, detect_one
    from SSLAnomalyLib.core.batch.options import BatchOptions

    image = sorted(data_dir("kermany", "val", "normal").iterdir())[0]
    (tmp_path / "driver" / "in").mkdir(parents=True)
    (tmp_path / "driver" / "in" / image.name).symlink_to(image)
    shutil.copytree(pediatric_model, tmp_path / "driver" / "model")
    (tmp_path / "worker" / "out").mkdir(parents=True)  # a folder of that name on the worker's own disk
    monkeypatch.chdir(tmp_path / "driver")
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        client.register_plugin(WorkIn(tmp_path / "worker"))
        for out, model in (("/proc/self/cwd/out", str(pediatric_model)), (tmp_path / "shared", "/proc/self/cwd/model")):
            with pytest.raises(NotShared, match="Dask worker on host .* does not") as refused:
                detect_on_dask(client, [tmp_path / "driver" / "in"], out, model=model, device="cpu")
            assert refused.value.path in (out, model)
        report = detect_on_dask(client, ["/proc/self/cwd/in"], tmp_path / "shared", model=str(pediatric_model),
                                device="cpu")
    assert not list((tmp_path / "worker" / "out").iterdir())
    assert report.rows[0].error.startswith(f"NotShared: /proc/self/cwd/in/{image.name}: the driver sees it but the "
                                           "Dask worker on host")
    logged = json.loads((tmp_path / "shared" / "failures.log").read_text())
    assert logged["input"] == f"/proc/self/cwd/in/{image.name}" and "does not" in logged["reason"]
    # a worker that joins later is given cases: each fails where it does not see the output folder's lock
    row = detect_one(Case(str(image), "a", image), str(tmp_path / "shared"), str(pediatric_model), "cpu",
                     BatchOptions(), lock="another run's lock", seen=True)
    assert row.error.startswith(f"NotShared: {tmp_path / 'shared'}: the driver sees it but")


def test_a_lock_an_nfs_worker_sees_only_after_listing_its_folder_is_seen(tmp_path, monkeypatch):
    """On NFS a worker that looked the lock file up while it was absent may see it absent for up to a
    minute (cached negative lookups): the start check refused a shared output folder. It now asks again
    after listing the folder (which revalidates it), a few times over 2.5 s, before it refuses."""
    from SSLAnomalyLib.core.batch import dask_driver
    from SSLAnomalyLib.core.results.outputs import LOCK

    (tmp_path / LOCK).write_text("our lock", encoding="utf-8")
    read_text, reads = Path.read_text, []

    def stale_once(path, *args, **kwargs):
        reads.append(path)
        if path.name == LOCK and len(reads) == 1:
            raise FileNotFoundError(2, "No such file or directory", str(path))
        return read_text(path, *args, **kwargs)

    slept = []
    monkeypatch.setattr(Path, "read_text", stale_once)
    monkeypatch.setattr(dask_driver.time, "sleep", slept.append)
    assert dask_driver.unseen(tmp_path, "our lock") is None and len(reads) == 2 and slept == [0.0]
    refused = dask_driver.unseen(tmp_path, "another run's lock")
    assert isinstance(refused, dask_driver.NotShared) and sum(slept) <= 3
