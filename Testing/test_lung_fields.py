"""The learned lung fields: right on a real radiograph with an expert mask, written on the input's
grid by `detect --lungs` (2D and 3D), a named fallback on a non-chest image, a verified model folder."""

import argparse
import json
import os
import shutil
import subprocess

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import REPO, data_dir

SSLANOMALY = str(REPO / ".venv" / "bin" / "sslanomaly")
DICE_BOUND = 0.90  # the bundled network's held-out mean is in its manifest (>= 0.93 on openist)
# One lung whited out (`whited_out`), Dice against the unaltered mask, measured with the bundled network
# trained with disease drawn in (`train-anatomy --disease-share 0.5 --minutes 30`): 0.960 on the test's openist
# image (0.955 mean, 0.915 minimum over the 55 held-out images), 0.915 on the generated radiograph; the network
# trained on normals only gave 0.814 and 0.710.
WHITE_OUT_DICE_BOUND = 0.90
GENERATED_WHITE_OUT_DICE_BOUND = 0.85


def held_out_pair():
    """An openist image the bundled lung network never trained on, and its expert mask."""
    from SSLAnomalyLib.core.anatomy.lung_network import BUNDLED_LUNGS

    name = json.loads((BUNDLED_LUNGS / "manifest.json").read_text())["data"]["held_out"][0]
    return data_dir("openist", "images") / name, data_dir("openist", "masks") / name


def test_a_real_radiograph_gets_two_lung_fields_close_to_its_expert_mask():
    from scipy import ndimage

    from SSLAnomalyLib.core.anatomy.lung_network import bundled_segmenter
    from SSLAnomalyLib.core.model.preprocess import to_model_input
    from SSLAnomalyLib.training.lung_training import dice, load_pair

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
    from scipy import ndimage

    from SSLAnomalyLib.core.anatomy.lung_network import bundled_segmenter

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
    from SSLAnomalyLib.core.anatomy.lung_network import BUNDLED_LUNGS, LungSegmenter
    from SSLAnomalyLib.core.model_files.model_folder import ModelError

    copy = tmp_path / "lungs"
    shutil.copytree(BUNDLED_LUNGS, copy)
    LungSegmenter.load(copy)  # the untouched copy loads
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="SHA-256"):
        LungSegmenter.load(copy)


def test_a_model_scored_with_another_lung_network_than_it_was_fitted_with_says_so(small_model, tmp_path):
    """A model records the lung network its reference was fitted with; SSLANOMALY_LUNGS draws the fields
    with another (here the bundled weights saved under another id), and the findings document then says
    that the model's thresholds do not hold."""
    from SSLAnomalyLib.core.anatomy.lung_network import BUNDLED_LUNGS, LUNGS_ENV, bundled_segmenter
    from SSLAnomalyLib.core.model_files.model_folder import load, save

    assert load(small_model).manifest.lungs == bundled_segmenter().model_id
    lungs = load(BUNDLED_LUNGS)
    other = save(tmp_path / "lungs", lungs.encoder_state, lungs.arrays,
                 lungs.manifest.replaced(files=None, format_version=None, model_id="sslanomaly-lungs-candidate"), "card")
    image = sorted(data_dir("kermany", "val", "normal").iterdir())[0]
    warnings = {}
    for name, env in (("same", {}), ("other", {LUNGS_ENV: str(other)})):
        r = subprocess.run([SSLANOMALY, "detect", "--model", str(small_model), "--out", str(tmp_path / name), "--quiet",
                            str(image)], capture_output=True, text=True, cwd=REPO, env={**os.environ, **env})
        assert r.returncode == 0, r.stderr
        warnings[name] = json.loads((tmp_path / name / f"{image.stem}.findings.json").read_text())["warnings"]
    assert not any("lung network" in w for w in warnings["same"])
    said = [w for w in warnings["other"] if "lung network" in w]
    assert len(said) == 1 and bundled_segmenter().model_id in said[0] and "sslanomaly-lungs-candidate" in said[0]


def test_an_encoder_model_folder_is_not_taken_for_a_lung_model(pediatric_model):
    from SSLAnomalyLib.core.anatomy.lung_network import LungSegmenter
    from SSLAnomalyLib.core.model_files.model_folder import ModelError

    with pytest.raises(ModelError, match=r"is an anomaly model \(made by train, calibrate or merge\), not a lung-field"):
        LungSegmenter.load(pediatric_model)


def test_the_lung_model_given_for_an_anomaly_model_is_named_as_such(tmp_path, capsys):
    """`train --start-from <the lung model>` used to say "manifest has no usable encoder ('NoneType' ...)"."""
    from SSLAnomalyLib.cli import main
    from SSLAnomalyLib.core.anatomy.lung_network import BUNDLED_LUNGS

    (tmp_path / "normals").mkdir()
    for command in (["train", "--normals", str(tmp_path / "normals"), "--out", str(tmp_path / "m"), "--minutes", "0",
                     "--start-from", str(BUNDLED_LUNGS), "--quiet"],
                    ["detect", "--model", str(BUNDLED_LUNGS), "--out", str(tmp_path / "out"), str(tmp_path / "normals")]):
        assert main(command) == 2
        assert (f"error: model {BUNDLED_LUNGS}: is a lung-field model (made by train-anatomy), not an anomaly model"
                in capsys.readouterr().err)


def whited_out(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """`image` with its image-left lung field filled with the brightness of the body around the lungs
    (a white-out drawn here, neither training's drawing nor lung_check.py's)."""
    from scipy import ndimage

    image = image.astype(np.float32)
    left = mask.astype(bool).copy()
    left[:, mask.shape[1] // 2:] = False
    body = ~ndimage.binary_dilation(mask, iterations=mask.shape[0] // 50) & (image > image[mask.astype(bool)].mean())
    return np.where(ndimage.binary_dilation(left, iterations=2), np.median(image[body]), image)


def white_out_dice(image: np.ndarray, mask: np.ndarray) -> tuple:
    """Dice of the bundled network's lung fields on `image` with one side whited out against `mask`."""
    from SSLAnomalyLib.core.anatomy.lung_network import bundled_segmenter
    from SSLAnomalyLib.core.model.preprocess import to_model_input
    from SSLAnomalyLib.training.lung_training import dice

    fields, = bundled_segmenter().fields(to_model_input(whited_out(image, mask), 128)[None])
    return dice(fields.on_grid(*mask.shape), mask), fields


def test_a_whited_out_lung_of_a_real_radiograph_is_still_a_lung():
    from SSLAnomalyLib.training.lung_training import load_pair

    image, mask = load_pair(*held_out_pair())
    score, fields = white_out_dice(image, mask)
    assert score > WHITE_OUT_DICE_BOUND, score
    assert fields.source == "network" and fields.network_side_ratio > 0.8  # 0.97 (normals only: 0.55)


def test_a_whited_out_lung_of_a_generated_radiograph_is_still_a_lung():
    from SSLAnomalyLib.core.anatomy.lung_network import bundled_segmenter
    from SSLAnomalyLib.core.model.preprocess import to_model_input
    from SSLAnomalyLib.core.reading.sample import synthetic_radiograph

    image = synthetic_radiograph().astype(np.float32)
    clean, = bundled_segmenter().fields(to_model_input(image, 128)[None])  # the reference: its clean lungs
    assert clean.source == "network"
    score, _ = white_out_dice(image, clean.on_grid(*image.shape).astype(bool))
    assert score > GENERATED_WHITE_OUT_DICE_BOUND, score


def test_lung_fields_report_each_sides_area():
    from SSLAnomalyLib.core.anatomy.lung_network import fields_from_probability

    probability = np.zeros((100, 100), np.float32)
    probability[20:80, 10:40] = 1  # image-left lung: 18 % of the image
    probability[20:30, 60:70] = 1  # image-right "lung": 1 %, under the 2 % of a lung field
    fields = fields_from_probability(probability, probability, None)
    assert fields.source != "network" and fields.reason == "one lung field missing"
    assert fields.network_side_fractions == pytest.approx((0.18, 0.01))  # the network's own, kept after the fallback
    assert fields.network_side_ratio == pytest.approx(0.01 / 0.18)
    assert sum(fields.side_fractions) == pytest.approx(fields.mask.mean())  # the final (fallback) mask's


def test_a_field_drawn_away_from_where_lungs_lie_is_replaced_by_the_other_mirrored():
    from SSLAnomalyLib.core.anatomy.lung_network import fields_from_probability

    prior = np.zeros((100, 100), np.float32)
    prior[20:80, 10:45] = prior[20:80, 55:90] = 0.9  # where the training normals' lungs lie
    probability = np.zeros((100, 100), np.float32)
    probability[22:78, 12:42] = 1                  # image-left lung, where lungs lie
    probability[22:78, 58:88] = 1                  # image-right lung, where lungs lie
    assert fields_from_probability(probability, probability, prior).source == "network"

    probability[22:78, 58:88] = 0
    probability[0:20, 60:95] = 1                   # image-right "lung" on the shoulder: 7 % of the image
    fields = fields_from_probability(probability, probability, prior)
    assert fields.source == "mirrored" and "image-right lung field" in fields.warning and "0 %" in fields.warning
    assert np.array_equal(fields.mask[:, 50:], fields.mask[:, :50][:, ::-1])  # the left field, mirrored
    assert fields.on_grid(100, 100)[:, 50:].sum() > 0  # the mirrored field is drawn on the input's grid too
    assert fields.network_side_fractions == pytest.approx((0.168, 0.07))  # what the network drew, kept
    assert fields_from_probability(probability, probability, None).source == "network"  # no prior: training
    assert fields_from_probability(probability, probability, np.zeros_like(prior)).source == "network"  # no lung in it

    probability[0:20, 60:95] = 0
    probability[60:99, 46:62] = 1                  # image-right "lung" over the mediastinum, across the midline
    fields = fields_from_probability(probability, probability, prior)
    left = np.zeros_like(fields.mask)
    left[22:78, 12:42] = True
    assert fields.source == "mirrored" and np.array_equal(fields.mask, left | left[:, ::-1])  # none of it is kept

    probability[:] = 0
    probability[0:20, 5:40] = probability[0:20, 60:95] = 1  # both drawn away: implausible, a named fallback
    fields = fields_from_probability(probability, probability, prior)
    assert fields.source in ("unsupervised", "prior") and fields.reason == "both lung fields drawn away from where lungs lie"


def test_disease_augmentation_is_seeded_and_stays_inside_the_lung_field():
    from scipy import ndimage

    from SSLAnomalyLib.core.model.preprocess import to_model_input
    from SSLAnomalyLib.core.reading.sample import synthetic_radiograph
    from SSLAnomalyLib.training.lung_disease import GROW, draw_disease

    x = to_model_input(synthetic_radiograph(), 128)
    mask = np.zeros(x.shape, bool)
    mask[30:100, 20:55] = mask[30:100, 73:108] = True
    kept = mask.copy()
    drawn = [draw_disease(x, mask, np.random.default_rng(s)) for s in range(12)]
    assert np.array_equal(draw_disease(x, mask, np.random.default_rng(3)), drawn[3])  # seeded
    assert np.array_equal(mask, kept)  # the label is never touched
    reach = ndimage.binary_dilation(mask, iterations=GROW)
    for d in drawn:
        assert d.shape == x.shape and d.dtype == np.float32 and 0 <= d.min() and d.max() <= 1
        changed = np.abs(d - x) > 1e-6
        assert changed.any() and not (changed & ~reach).any()  # only inside the (rim-grown) lung field
        assert d[changed].mean() > x[changed].mean()  # an opacity: brighter
        left, right = changed[:, :64].any(), changed[:, 64:].any()
        assert left != right  # one side


def test_hemithorax_disease_whitens_one_whole_side_beyond_the_lung_field_and_is_opt_in():
    from SSLAnomalyLib.cli.train import disease_kinds
    from SSLAnomalyLib.core.model.preprocess import to_model_input
    from SSLAnomalyLib.core.reading.sample import synthetic_radiograph
    from SSLAnomalyLib.training.lung_disease import ALL_KINDS, KINDS, draw_disease

    x = to_model_input(synthetic_radiograph(), 128)
    mask = np.zeros(x.shape, bool)
    mask[30:100, 20:55] = mask[30:100, 73:108] = True
    kept = mask.copy()
    drawn = [draw_disease(x, mask, np.random.default_rng(s), ("hemithorax",)) for s in range(8)]
    assert np.array_equal(draw_disease(x, mask, np.random.default_rng(5), ("hemithorax",)), drawn[5])  # seeded
    assert np.array_equal(mask, kept)  # the label is never touched
    for d in drawn:
        assert d.shape == x.shape and d.dtype == np.float32 and 0 <= d.min() and d.max() <= 1
        changed = d - x > 0.02
        assert (d >= x - 1e-6).all()  # an opacity: nothing darker
        assert (changed & ~mask).sum() > (changed & mask).sum() / 2  # chest wall and shoulder too, not the field only
        side = changed[:, :64].sum() > changed[:, 64:].sum()
        field = mask[:, :64] if side else mask[:, 64:]
        assert (changed[:, :64] if side else changed[:, 64:])[field].mean() > 0.9  # the whole field on that side
        assert not (changed[:, 74:] if side else changed[:, :54]).any()  # one side: past the midline by its edge only
    # opt-in: the default kinds (the bundled network's recipe) draw exactly what they drew before
    assert KINDS == ("whiteout", "effusion", "consolidation") and ALL_KINDS == (*KINDS, "hemithorax")
    assert np.array_equal(draw_disease(x, mask, np.random.default_rng(3)), draw_disease(x, mask, np.random.default_rng(3), KINDS))
    assert disease_kinds("all") == ALL_KINDS and disease_kinds("whiteout,hemithorax") == ("whiteout", "hemithorax")
    with pytest.raises(argparse.ArgumentTypeError, match="unknown disease kind"):
        disease_kinds("pneumothorax")
