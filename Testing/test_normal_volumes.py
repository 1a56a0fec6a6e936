"""What is not one normal among the normals is left out, named with the reason: a 3D volume (a CT, a
stack) is no radiograph, never fitted on through its first slice; a copy of a normal (its pixels) is that
normal again, never counted twice."""

import json

import numpy as np
import SimpleITK as sitk

from SSLAnomalyLib.cli import main
from synthetic_inputs import normals_folder, radiograph


def test_a_volume_among_the_normals_is_left_out_and_named(tmp_path, capsys):
    normals = normals_folder(tmp_path / "normals", range(12))
    stack = np.stack([radiograph(s) for s in (50, 51, 52)]).astype(np.uint8)
    sitk.WriteImage(sitk.GetImageFromArray(stack), str(normals / "stack.nrrd"))
    out = tmp_path / "model"
    assert main(["train", "--normals", str(normals), "--out", str(out), "--minutes", "0", "--size", "64",
                 "--device", "cpu", "--quiet"]) == 0
    assert "stack.nrrd: a volume of 3 slices, not one radiograph; left out of the normals" in capsys.readouterr().err
    data = json.loads((out / "manifest.json").read_text())["data"]
    assert data["n_train"] == 12  # its first slice used to be fitted on as a 13th normal, unnamed
    assert [s for s in data["skipped"] if "stack.nrrd" in s]


def test_a_copy_of_a_normal_is_counted_once_and_named(tmp_path, capsys):
    import shutil

    normals = normals_folder(tmp_path / "normals", range(12))
    shutil.copy(normals / "normal_004.png", normals / "zz_export2_0004.png")
    out = tmp_path / "model"
    assert main(["train", "--normals", str(normals), "--out", str(out), "--minutes", "0", "--size", "64",
                 "--device", "cpu", "--quiet"]) == 0
    assert (f"zz_export2_0004.png: the same image as {normals / 'normal_004.png'}, counted once; left out of the normals"
            in capsys.readouterr().err)
    data = json.loads((out / "manifest.json").read_text())["data"]
    assert data["n_train"] == 12  # the copy used to be a 13th normal


def test_calibrate_leaves_out_a_volume_named_as_train_does(tmp_path, capsys):
    """A 3-slice NRRD among the normals entered the calibration as its first slice, unnamed, where
    train and reference-stats leave a volume out: it is not one radiograph."""
    from PIL import Image

    from conftest import data_dir, link_subset

    source = data_dir("nih", "train", "normal")
    folder = link_subset(source, tmp_path / "normals", 25)
    slices = [np.asarray(Image.open(f).convert("L").resize((256, 256))) for f in sorted(source.iterdir())[50:53]]
    sitk.WriteImage(sitk.GetImageFromArray(np.stack(slices)), str(folder / "stack.nrrd"))
    out = tmp_path / "m"
    assert main(["calibrate", "--model", "default", "--normals", str(folder), "--out", str(out), "--quiet"]) == 0
    site = json.loads((out / "manifest.json").read_text())["site_calibration"]
    assert site["n_normals"] == 25 and site["skipped"] == [f"{folder / 'stack.nrrd'}: a volume of 3 slices, not one radiograph"]
    assert "stack.nrrd: a volume of 3 slices" in capsys.readouterr().err
