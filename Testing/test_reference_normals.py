"""`calibrate` on normals a model's reference was fitted on: they score lower than new normals, so
thresholds set on them are too low for the site's new normals. `train` records its reference
normals (marks of their images in model.safetensors); `calibrate` sets those among the site's aside,
naming each, and refuses when too few are left; a model without the record calibrates as before.
On generated radiographs and a model trained here for two steps."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image
from synthetic_inputs import normals_folder, radiograph

from SSLAnomalyLib.cli import main
from SSLAnomalyLib.core.model_files import reference_normals
from SSLAnomalyLib.core.model_files.model_folder import CARD, MANIFEST, load, save
from SSLAnomalyLib.core.reading.images import read_radiograph
from SSLAnomalyLib.training.fitting import train_model
from SSLAnomalyLib.training.spec import TrainingSpec

TRAIN, VAL, NEW = range(300, 316), range(316, 320), range(400, 420)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A model whose reference holds 16 generated normals (and 4 held-back ones, scored only)."""
    root = tmp_path_factory.mktemp("trained")
    train, val = normals_folder(root / "train", TRAIN), normals_folder(root / "val", VAL)
    return train_model(train, root / "model", val, TrainingSpec(minutes=10, max_steps=2, seed=0, device="cpu"),
                       progress=False)


def site_folder(folder, model, new=NEW):
    """New normals, two held-back normals of the model and three of its reference normals: a copy
    under another name, one re-encoded (other bytes, the same pixels) and one as it is."""
    folder = normals_folder(folder, new)
    train, val = model.parent / "train", model.parent / "val"
    for seed in VAL[:2]:
        shutil.copyfile(val / f"normal_{seed}.png", folder / f"held_back_{seed}.png")
    shutil.copyfile(train / "normal_300.png", folder / "copy_of_300.png")
    Image.fromarray(radiograph(301)).save(folder / "resaved_301.png", compress_level=0)
    assert (folder / "resaved_301.png").read_bytes() != (train / "normal_301.png").read_bytes()
    shutil.copyfile(train / "normal_302.png", folder / "normal_302.png")
    return folder, [folder / name for name in ("copy_of_300.png", "resaved_301.png", "normal_302.png")]


def without_record(model, folder):
    """The model written again without its record of the reference normals, as models before it are."""
    loaded = load(model)
    arrays = {k: v for k, v in loaded.arrays.items() if k != reference_normals.ARRAY}
    return save(folder, loaded.encoder_state, arrays, loaded.manifest.replaced(files=None, format_version=None),
                (model / CARD).read_text())


def calibrate(model, normals, out, capsys) -> tuple[int, str, dict]:
    code = main(["calibrate", "--model", str(model), "--normals", str(normals), "--out", str(out), "--quiet"])
    manifest = json.loads((out / MANIFEST).read_text()) if (out / MANIFEST).exists() else {}
    return code, capsys.readouterr().err, manifest


def test_train_records_each_reference_normal_and_no_held_back_one(model):
    recorded = reference_normals.recorded(load(model).arrays)
    marks = {seed: reference_normals.image_marks(read_radiograph(model.parent / sub / f"normal_{seed}.png"))
             for sub, seeds in (("train", TRAIN), ("val", VAL)) for seed in seeds}
    assert recorded == frozenset().union(*(marks[s] for s in TRAIN))
    assert not any(marks[s] & recorded for s in VAL)


def test_calibrate_names_and_sets_aside_the_reference_normals_it_is_given(model, tmp_path, capsys):
    normals, in_reference = site_folder(tmp_path / "site", model)
    code, err, manifest = calibrate(model, normals, tmp_path / "calibrated", capsys)
    assert code == 0, err
    site = manifest["site_calibration"]
    assert site["n_in_reference"] == 3 and site["n_normals"] == len(NEW) + 2  # the held-back normals are new to it
    for f in in_reference:
        assert f"warning: {f}: one of the normals the model's reference was fitted on" in err
        assert any(s.startswith(f"{f}: one of the normals") for s in site["skipped"])
    assert err.count("one of the normals the model's reference was fitted on") == 3
    assert "warning: 3 of the normals given are among those the reference of model" in err
    assert f"the thresholds are set on the other {len(NEW) + 2}" in err
    c = manifest["calibration"]
    assert c["n_normals"] + len(c["set_aside_files"]) == len(NEW) + 2  # scores of the new normals only
    assert "3 of those given were among the normals the reference was fitted on" in (tmp_path / "calibrated" / CARD).read_text()
    again = reference_normals.recorded(load(tmp_path / "calibrated").arrays)  # the reference is unchanged: so is its record
    assert again == reference_normals.recorded(load(model).arrays)


def test_too_few_normals_new_to_the_reference_are_refused(model, tmp_path, capsys):
    normals, _ = site_folder(tmp_path / "site", model, new=NEW[:17])  # 17 new, 2 held back, 3 of the reference
    code, err, manifest = calibrate(model, normals, tmp_path / "calibrated", capsys)
    assert code == 2 and not manifest
    assert "19 distinct readable normal radiograph(s) (3 in the model's normal reference left out)" in err, err


def test_a_model_without_the_record_calibrates_as_before_and_says_it_could_not_check(model, tmp_path, capsys):
    bare = without_record(model, tmp_path / "bare")
    assert reference_normals.recorded(load(bare).arrays) is None
    normals, _ = site_folder(tmp_path / "site", model)
    code, err, manifest = calibrate(bare, normals, tmp_path / "from_bare", capsys)
    assert code == 0, err
    assert manifest["site_calibration"]["n_in_reference"] is None
    assert manifest["site_calibration"]["n_normals"] == len(NEW) + 5  # nothing set aside: it cannot be told
    assert "keeps no record of the normals its reference was fitted on" in err
    assert "was not checked" in (tmp_path / "from_bare" / CARD).read_text()
    new = normals_folder(tmp_path / "new", NEW)  # on normals new to both, the record changes nothing
    calibrations = []
    for source, out in ((model, "with"), (bare, "without")):
        code, err, manifest = calibrate(source, new, tmp_path / out, capsys)
        assert code == 0, err
        calibrations.append(manifest["calibration"])
    assert calibrations[0] == calibrations[1]
    assert np.isfinite(calibrations[0]["threshold"])
