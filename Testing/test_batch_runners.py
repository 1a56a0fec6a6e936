"""One batch runner behind all three front ends: the same batch through `sslanomaly detect`, the
Slicer Logic's `detectBatch` (headless slicer-core) and the Dask driver (two local worker processes)
gives the same files, the same failures log, index and worklist, and resumes alike."""

import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import data_dir
from slicer_cases import empty_scene, logic
from SSLAnomalyLib.core.results.outputs import LOCK

SHARED = ("failures.log", "worklist.csv", "batch_index.json")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    src = tmp_path_factory.mktemp("in")
    for f in sorted(data_dir("kermany_fullres", "pneumonia").iterdir())[:2] + \
            sorted(data_dir("kermany_fullres", "normal").iterdir())[:1]:
        (src / f.name).symlink_to(f)
    (src / "broken.png").write_bytes(b"not a png")
    (src / "zz-again.jpeg").symlink_to(sorted(data_dir("kermany_fullres", "pneumonia").iterdir())[0])  # scored once
    return src


def run_cli(model, src, out, *extra) -> int:
    from SSLAnomalyLib.cli import main

    return main(["detect", "--model", str(model), "--out", str(out), "--device", "cpu", "--lungs", "--quiet",
                 *extra, str(src)])


def run_logic(model, src, out, **options) -> list[dict]:
    empty_scene()
    return logic().detectBatch(src, out, model=str(model), device="cpu", **options)


def run_dask(model, src, out, **options):
    from distributed import Client, LocalCluster

    from SSLAnomalyLib.core.batch.dask_driver import detect_on_dask
    from SSLAnomalyLib.core.batch.options import BatchOptions

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        return detect_on_dask(client, [src], out, model=str(model), device="cpu",
                              options=BatchOptions(lungs=True, **options))


@pytest.fixture(scope="module")
def outputs(small_model, inputs, tmp_path_factory):
    pytest.importorskip("distributed", reason="dask.distributed is not installed (pip install -e '.[distributed]')")
    root = tmp_path_factory.mktemp("runners")
    assert run_cli(small_model, inputs, root / "cli") == 1
    rows = run_logic(small_model, inputs, root / "logic")
    report = run_dask(small_model, inputs, root / "dask")
    return root, rows, report


def test_the_three_runners_write_the_same_files(outputs):
    """... and each skips a file given twice (here a link beside its target's link), under its first name."""
    root, rows, report = outputs
    names = ["IM-0178-0001", *sorted(p.stem for p in data_dir("kermany_fullres", "pneumonia").iterdir())[:2]]
    for runner in ("cli", "logic", "dask"):
        assert {p.name[: -len(".findings.json")] for p in (root / runner).glob("*.findings.json")} == set(names)
        assert not (root / runner / LOCK).exists()
    for name in names:
        docs = [json.loads((root / r / f"{name}.findings.json").read_text()) for r in ("cli", "logic", "dask")]
        assert docs[0] == docs[1] == docs[2]
        for suffix in (".heatmap.nrrd", ".lungs.nrrd"):
            arrays = [sitk.GetArrayFromImage(sitk.ReadImage(str(root / r / f"{name}{suffix}")))
                      for r in ("cli", "logic", "dask")]
            assert np.array_equal(arrays[0], arrays[1]) and np.array_equal(arrays[0], arrays[2])
        assert all((root / r / f"{name}.overlay.png").stat().st_size > 0 for r in ("cli", "logic", "dask"))
        assert (root / "logic" / f"{name}.findings.mrk.json").exists()  # the Slicer export, beside
    for shared in SHARED:
        texts = [(root / r / shared).read_text() for r in ("cli", "logic", "dask")]
        assert texts[0] == texts[1] == texts[2], shared
    assert "broken.png" in (root / "cli" / "failures.log").read_text()
    assert [r["input"].rsplit("/", 1)[-1] for r in rows if "error" in r] == ["broken.png"]
    assert len(report.failures) == 1 and report.failures[0].input.endswith("broken.png")


def test_the_three_runners_resume_alike(small_model, inputs, outputs, capsys):
    root, _, _ = outputs
    capsys.readouterr()
    assert run_cli(small_model, inputs, root / "cli", "--resume") == 1  # broken.png is tried again
    assert "(3 already done)" in capsys.readouterr().out
    rows = run_logic(small_model, inputs, root / "logic", resume=True)
    assert [r["input"].rsplit("/", 1)[-1] for r in rows] == ["broken.png"]
    report = run_dask(small_model, inputs, root / "dask", resume=True)
    assert len(report.kept) == 3 and [r.input.rsplit("/", 1)[-1] for r in report.rows] == ["broken.png"]
    for runner in ("cli", "logic", "dask"):
        with open(root / runner / "worklist.csv") as f:
            assert len(list(csv.DictReader(f))) == 3  # the kept cases are listed


def test_every_runner_refuses_an_output_folder_inside_the_inputs(pediatric_model, tmp_path):
    """Only `sslanomaly detect` refused it: the Slicer Logic and the Dask driver wrote there, and
    their next batch scored their own overlays and heatmaps as radiographs (and listed them)."""
    pytest.importorskip("distributed", reason="dask.distributed is not installed (pip install -e '.[distributed]')")
    from distributed import Client, LocalCluster

    from SSLAnomalyLib.core.batch.dask_driver import detect_on_dask
    from SSLAnomalyLib.core.files.errors import PathError

    src = tmp_path / "in"
    src.mkdir()
    (src / "a.jpeg").symlink_to(sorted(data_dir("kermany", "val", "normal").iterdir())[0])
    with pytest.raises(PathError, match="inside the input folder"):
        run_logic(pediatric_model, src, src / "logic")
    with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster, Client(cluster) as client, \
            pytest.raises(PathError, match="inside the input folder"):
        detect_on_dask(client, [src], src / "dask", model=str(pediatric_model), device="cpu")
    assert sorted(p.name for p in src.iterdir()) == ["a.jpeg"]


def test_the_dask_driver_takes_one_folder_given_as_a_string(pediatric_model, tmp_path):
    """`detect_on_dask(client, "/data/cxr", ...)` took the string for its characters: '/' (the whole
    disk, now refused as an input holding the output folder), 'd', 'a', ... as inputs."""
    pytest.importorskip("distributed", reason="dask.distributed is not installed (pip install -e '.[distributed]')")
    from distributed import Client, LocalCluster

    from SSLAnomalyLib.core.batch.dask_driver import detect_on_dask

    src = tmp_path / "in"
    src.mkdir()
    (src / "a.jpeg").symlink_to(sorted(data_dir("kermany", "val", "normal").iterdir())[0])
    with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster, Client(cluster) as client:
        report = detect_on_dask(client, str(src), tmp_path / "out", model=str(pediatric_model), device="cpu")
    assert [(r.input, r.error) for r in report.rows] == [(str(src / "a.jpeg"), None)]
