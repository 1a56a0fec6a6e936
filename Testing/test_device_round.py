"""The GPU round in one device call (scripts/device_round.sh) runs end to end on the CPU with
--dry-run: packs keep the normals within one grey level with their lung fields and file names, and
the round brings back verified model folders in at most 8 files of 16 MiB beside its timings."""

import json
import os
import subprocess
import tarfile

import numpy as np
import pytest

from conftest import DATA, REPO, data_dir
from SSLAnomalyLib.core.files.errors import ReadError
from SSLAnomalyLib.core.model_files.model_folder import load
from SSLAnomalyLib.training import device_round
from SSLAnomalyLib.training.fitting import load_normals, read_normals
from SSLAnomalyLib.training.packs import NEAR, read_pack, write_pack

MiB = 1 << 20


def test_a_pack_keeps_the_normals_within_one_grey_level(tmp_path):
    files = sorted(data_dir("kermany", "val", "normal").iterdir())[:6]
    normals = load_normals([str(f) for f in files], 64, progress=False)
    path = write_pack(tmp_path / "normals.npz.xz", normals.images01, normals.lungs, normals.files)
    unpacked = read_normals(str(path), 64)
    assert np.abs(unpacked.images01 - normals.images01).max() <= (NEAR + 0.5) / 255 + 1e-6
    assert np.array_equal(unpacked.lungs, normals.lungs)
    assert unpacked.files == [f.name for f in files] and unpacked.digest() == normals.digest()  # the same file-list hash
    with pytest.raises(ReadError, match="64-px images"):
        read_pack(path, 128)


def test_a_dry_run_brings_back_verified_models_within_the_limits(tmp_path):
    data_dir("kermany", "train", "normal")
    packs, out, work = tmp_path / "packs", tmp_path / "out", tmp_path / "work"
    assert device_round.main(["pack", "--data", str(DATA), "--out", str(packs), "--size", "64", "--limit", "10",
                              "--populations", "pediatric"]) == 0
    env = dict(os.environ, OUT=str(out), PACKS=str(packs))
    done = subprocess.run([str(REPO / "scripts" / "device_round.sh"), "--dry-run",
                           "--recipes", "anatpaste;contrastive,anatpaste", "--work", str(work)],
                          capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    files = sorted(out.iterdir())
    assert len(files) <= 8 and all(f.stat().st_size <= 16 * MiB for f in files)
    results = json.loads((out / "results.json").read_text())
    runs = results["runs"]
    assert set(runs) == {"pediatric-anatpaste", "pediatric-contrastive-anatpaste"}
    assert all(r["status"] == "ok" and r["steps"] == 2 and r["steps_per_s"] > 0 for r in runs.values())
    assert results["training_speed"]["anatpaste"]["steps_per_s"] > 0
    assert results["detection_speed"]["pediatric"]["detect_images_per_s"] > 0 and not results["left_out"]
    back = tmp_path / "back"
    for name in results["files"]:
        with tarfile.open(out / name) as tar:
            tar.extractall(back, filter="data")
    for name, figures in runs.items():
        loaded = load(back / name)  # a complete, verified model folder
        assert loaded.manifest.model_id == figures["model_id"]
        assert loaded.manifest.section("training")["weights"] == "float16"
        assert loaded.encoder_state["conv1.weight"].dtype.itemsize == 2


@pytest.mark.parametrize("normals_packed", [False, True], ids=["folder", "pack"])
def test_held_back_normals_given_as_a_pack_set_the_thresholds(tmp_path, normals_packed):
    """`train --val-normals PACK` (as the device round gives it) was read as a folder: with folder normals it was
    refused as 'no such folder', and with a pack of normals it was left out as an 'unsupported file type', so the
    thresholds were set without the held-back normals. Both now count them."""
    from conftest import link_subset
    from SSLAnomalyLib.cli import main

    normals = link_subset(data_dir("kermany", "train", "normal"), tmp_path / "n", 25)
    val_files = sorted(data_dir("kermany", "val", "normal").iterdir())[:8]
    val = load_normals([str(f) for f in val_files], 64, progress=False)
    val_pack = write_pack(tmp_path / "val.npz.xz", val.images01, val.lungs, val.files)
    if normals_packed:
        packed = load_normals([str(normals)], 64, progress=False)
        normals = write_pack(tmp_path / "n.npz.xz", packed.images01, packed.lungs, packed.files)
    out = tmp_path / "model"
    assert main(["train", "--normals", str(normals), "--val-normals", str(val_pack), "--out", str(out), "--size", "64",
                 "--minutes", "0", "--device", "cpu", "--quiet"]) == 0
    calibration = load(out).manifest.section("calibration")
    assert calibration["n_normals"] + len(calibration["set_aside_scores"]) == 25 + 8


def test_copies_in_a_pack_are_one_normal(tmp_path):
    """A pack holding one image twice (or a held-back pack holding a training normal) counted it twice:
    the reference and the thresholds weighed it double and the count of normals was inflated. Each copy
    is left out, named, as a copy in a folder is."""
    from SSLAnomalyLib.cli import main

    files = sorted(data_dir("kermany", "train", "normal").iterdir())[:27]
    normals, val = (load_normals([str(f) for f in part], 64, progress=False) for part in (files[:22], files[22:]))
    normals_pack = write_pack(tmp_path / "n.npz.xz", np.concatenate([normals.images01, normals.images01[:2]]),
                              np.concatenate([normals.lungs, normals.lungs[:2]]), normals.files + ["a.png", "b.png"])
    val_pack = write_pack(tmp_path / "v.npz.xz", np.concatenate([val.images01, normals.images01[5:6]]),
                          np.concatenate([val.lungs, normals.lungs[5:6]]), val.files + ["again.png"])
    assert read_normals(str(normals_pack), 64).skipped == [f"a.png: the same image as {files[0].name}, counted once",
                                                           f"b.png: the same image as {files[1].name}, counted once"]
    out = tmp_path / "model"
    assert main(["train", "--normals", str(normals_pack), "--val-normals", str(val_pack), "--out", str(out),
                 "--size", "64", "--minutes", "0", "--device", "cpu", "--quiet"]) == 0
    data = load(out).manifest.section("data")
    assert (data["n_train"], data["n_calibration"]) == (22, 27)  # were 24 and 30
    assert f"again.png: the same image as {files[5].name}, counted once" in data["skipped"]
