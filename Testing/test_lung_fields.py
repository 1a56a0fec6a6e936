"""The learned lung fields: right on a real radiograph with an expert mask, written on the input's
grid by `detect --lungs` (2D and 3D), a named fallback on a non-chest image, a verified model folder."""

import json
import shutil
import subprocess

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import REPO, data_dir

SSLANOMALY = str(REPO / ".venv" / "bin" / "sslanomaly")
DICE_BOUND = 0.90  # the bundled network's held-out mean is in its manifest (>= 0.93 on openist)


def held_out_pair():
    """An openist image the bundled lung network never trained on, and its expert mask."""
    from SSLAnomalyLib.core.lung_model import BUNDLED_LUNGS

    name = json.loads((BUNDLED_LUNGS / "manifest.json").read_text())["data"]["held_out"][0]
    return data_dir("openist", "images") / name, data_dir("openist", "masks") / name


def test_a_real_radiograph_gets_two_lung_fields_close_to_its_expert_mask():
    from scipy import ndimage

    from SSLAnomalyLib.core.lung_model import bundled_segmenter
    from SSLAnomalyLib.training.lung_training import dice, load_pair
    from SSLAnomalyLib.core.preprocess import to_model_input

    image, mask = load_pair(*held_out_pair())
    x = to_model_input(image, 128)
    fields, = bundled_segmenter().fields(x[None])
    assert fields.source == "network" and fields.warning is None
    assert ndimage.label(fields.mask)[1] == 2  # one field per side, no islands
    assert 0.15 < fields.mask.mean() < 0.5
    full = fields.on_grid(*mask.shape)
    assert full.shape == mask.shape and full.dtype == np.uint8
    assert dice(full, mask) > DICE_BOUND


def test_a_non_chest_image_takes_the_named_fallback():
    from SSLAnomalyLib.core.lung_model import bundled_segmenter

    from scipy import ndimage

    rng = np.random.default_rng(0)
    blobs = ndimage.gaussian_filter(rng.random((128, 128)), 8).astype(np.float32)  # no chest in it
    blobs = (blobs - blobs.min()) / np.ptp(blobs)
    fields, = bundled_segmenter().fields(blobs[None])
    assert fields.source in ("unsupervised", "prior")
    assert fields.reason and fields.reason in fields.warning  # the warning names why the network was not used


def run(*args):
    return subprocess.run([SSLANOMALY, *map(str, args)], capture_output=True, text=True, cwd=REPO)


def test_detect_lungs_writes_a_mask_on_the_inputs_grid_2d_and_3d(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    jpeg = sorted(data_dir("kermany_fullres", "normal").iterdir())[0]
    shutil.copy(jpeg, src / jpeg.name)
    plane = sitk.GetArrayFromImage(sitk.ReadImage(str(jpeg), sitk.sitkFloat32))
    plane = plane if plane.ndim == 2 else plane[..., 0]
    volume = sitk.GetImageFromArray(np.stack([plane[::4, ::4]] * 3))
    volume.SetSpacing((0.6, 0.5, 2.0))
    volume.SetOrigin((10.0, -20.0, 5.0))
    sitk.WriteImage(volume, str(src / "volume.nrrd"))
    out = tmp_path / "out"
    r = run("detect", "--model", "pediatric", "--lungs", "--quiet", "--out", out, src)
    assert r.returncode == 0, r.stderr
    for name in (jpeg.stem, "volume"):
        lungs = sitk.ReadImage(str(out / f"{name}.lungs.nrrd"))
        heat = sitk.ReadImage(str(out / f"{name}.heatmap.nrrd"))
        assert lungs.GetPixelID() == sitk.sitkUInt8
        assert lungs.GetSize() == heat.GetSize()
        assert np.allclose(lungs.GetSpacing(), heat.GetSpacing()) and np.allclose(lungs.GetOrigin(), heat.GetOrigin())
        values = sitk.GetArrayFromImage(lungs)
        assert set(np.unique(values)) == {0, 1}
        assert 0.1 < values.mean() < 0.6
    assert sitk.ReadImage(str(out / "volume.lungs.nrrd")).GetDimension() == 3


def test_a_tampered_lung_model_is_refused(tmp_path):
    from SSLAnomalyLib.core.lung_model import BUNDLED_LUNGS, LungSegmenter
    from SSLAnomalyLib.core.model_folder import ModelError

    copy = tmp_path / "lungs"
    shutil.copytree(BUNDLED_LUNGS, copy)
    LungSegmenter.load(copy)  # the untouched copy loads
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="SHA-256"):
        LungSegmenter.load(copy)


def test_an_encoder_model_folder_is_not_taken_for_a_lung_model(pediatric_model):
    from SSLAnomalyLib.core.lung_model import LungSegmenter
    from SSLAnomalyLib.core.model_folder import ModelError

    with pytest.raises(ModelError, match="not a lung-segmentation model"):
        LungSegmenter.load(pediatric_model)
