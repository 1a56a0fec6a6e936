"""MAE's reconstruction error as a score component: the kept decoder travels with the encoder
through train, refit, calibrate and evaluate, and the image score averages it in."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import data_dir, link_subset

from SSLAnomalyLib.cli import main
from SSLAnomalyLib.core.detection.detector import AnomalyDetector
from SSLAnomalyLib.core.model.reconstruction import RECONSTRUCTION, MaskedPatches, covering_masks
from SSLAnomalyLib.core.model.scoring import image_score
from SSLAnomalyLib.core.model_files.model_folder import ModelError, load, save
from SSLAnomalyLib.core.reading.images import read_radiograph
from SSLAnomalyLib.training.fitting import train_model
from SSLAnomalyLib.training.objectives import Pretext
from SSLAnomalyLib.training.spec import TrainingSpec


@pytest.mark.parametrize("ratio, sets", [(0.4, 3), (0.5, 2), (0.25, 4), (0.75, 2)])
def test_scoring_blanks_disjoint_patch_sets_that_cover_the_image_none_beside_another(ratio, sets):
    params = MaskedPatches(mask_ratio=ratio)
    masks = covering_masks(128, params)
    assert masks.shape == (sets, 128, 128) and params.sets == sets
    assert (masks.sum(0) == 1).all()  # every pixel blanked exactly once
    p = params.patch_side(128)
    cells = masks[:, ::p, ::p]  # one value per patch
    for m in cells:
        assert not (m[1:] & m[:-1]).any() and not (m[:, 1:] & m[:, :-1]).any()
        assert abs(m.mean() - 1 / sets) < 0.1


@pytest.fixture(scope="module")
def mae_model(small_normals, tmp_path_factory):
    train, val = small_normals
    out = tmp_path_factory.mktemp("mae") / "model"
    return train_model(train, out, val, TrainingSpec(minutes=5, max_steps=4, seed=0, device="cpu", input_size=64,
                                                     pretext=Pretext.parse("mae")), progress=False)


def test_a_model_trained_with_mae_keeps_its_decoder_and_scores_the_redrawing_error(mae_model):
    loaded = load(mae_model)
    manifest = json.loads((mae_model / "manifest.json").read_text())
    assert set(loaded.decoder_state) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    assert RECONSTRUCTION in manifest["scoring"]["components"]
    assert manifest["scoring"]["reconstruction"] == MaskedPatches().to_dict()
    assert "MAE's decoder redraws the lung fields" in (mae_model / "MODEL_CARD.md").read_text()

    detector = AnomalyDetector.load(mae_model, device="cpu")
    image = read_radiograph(sorted(data_dir("kermany_fullres", "pneumonia").iterdir())[0])
    result = detector.detect(image)
    z = result.components
    assert set(z) >= {"pooled", "patch", RECONSTRUCTION}
    expected = image_score({c: np.array([v]) for c, v in z.items()}, detector.scorer.sides)[0]
    texture = np.mean([z["pooled"], z["patch"], z[RECONSTRUCTION]])
    assert result.score == pytest.approx(expected, abs=1e-5) and result.score >= texture - 1e-5


def test_the_redrawing_error_is_larger_where_the_image_departs_from_what_the_decoder_draws(mae_model):
    detector = AnomalyDetector.load(mae_model, device="cpu")
    x = np.full((2, 64, 64), 0.4, np.float32)
    x[1, 20:40, 20:40] = 1.0  # a bright square no neighbour predicts
    errors = detector.scorer.reconstruction.error_maps(detector.scorer.net, x, "cpu")
    assert errors.shape == (2, 64, 64)
    assert errors[1, 20:40, 20:40].mean() > errors[0, 20:40, 20:40].mean()


def test_refit_and_calibrate_keep_the_decoder_and_a_fine_tune_without_mae_drops_it(mae_model, small_normals, tmp_path):
    train, val = small_normals
    base = load(mae_model)
    assert main(["train", "--normals", str(train), "--out", str(tmp_path / "refit"), "--minutes", "0",
                 "--start-from", str(mae_model), "--quiet"]) == 0
    assert main(["calibrate", "--model", str(mae_model), "--normals", str(val), "--out", str(tmp_path / "site"),
                 "--quiet"]) == 0
    for folder in ("refit", "site"):
        kept = load(tmp_path / folder)
        assert all(torch.equal(kept.decoder_state[k], v) for k, v in base.decoder_state.items())
        assert RECONSTRUCTION in kept.manifest.component_stats
    assert main(["train", "--normals", str(train), "--out", str(tmp_path / "tuned"), "--minutes", "5",
                 "--max-steps", "2", "--start-from", str(mae_model), "--pretext", "anatpaste", "--quiet"]) == 0
    tuned = load(tmp_path / "tuned")  # the encoder moved without the decoder: no reconstruction to score
    assert not tuned.decoder_state and RECONSTRUCTION not in tuned.manifest.component_stats


def test_evaluate_reports_the_component_and_a_folder_without_its_decoder_is_refused(mae_model, tmp_path):
    normal, abnormal = (link_subset(data_dir("kermany", "val", kind), tmp_path / kind, 6)
                        for kind in ("normal", "pneumonia"))
    scores = tmp_path / "scores.csv"
    assert main(["evaluate", "--model", str(mae_model), "--normal", str(normal), "--abnormal", str(abnormal),
                 "--json", str(tmp_path / "eval.json"), "--scores-csv", str(scores), "--quiet"]) == 0
    assert RECONSTRUCTION in json.loads((tmp_path / "eval.json").read_text())["components"]
    header, first = scores.read_text().splitlines()[:2]
    assert header.split(",")[-1] == RECONSTRUCTION and first.split(",")[-1] != ""

    loaded = load(mae_model)
    with pytest.raises(ModelError, match="inconsistent on the reconstruction component: decoder weights missing"):
        save(tmp_path / "broken", loaded.encoder_state, loaded.arrays, loaded.manifest.replaced(files=None),
             "card")


def test_a_frozen_encoder_gains_a_trained_decoder_and_keeps_everything_else(small_model, small_normals, tmp_path):
    """`train --start-from M --pretext mae --freeze-encoder`: M's encoder bit for bit, batch-norm
    statistics included, and the last step's decoder (nothing to choose between steps)."""
    train, val = small_normals
    out = tmp_path / "frozen"
    assert main(["train", "--normals", str(train), "--val-normals", str(val), "--out", str(out), "--minutes", "5",
                 "--max-steps", "3", "--start-from", str(small_model), "--pretext", "mae", "--freeze-encoder",
                 "--quiet"]) == 0
    base, frozen = load(small_model), load(out)
    assert all(torch.equal(base.encoder_state[k], v) for k, v in frozen.encoder_state.items())
    assert frozen.decoder_state and RECONSTRUCTION in frozen.manifest.component_stats
    training = frozen.manifest.section("training")
    assert training["encoder_frozen"] and training["steps"] == 3 and training["chosen_step"] is None
    assert "unchanged (frozen while MAE's decoder was trained on" in (out / "MODEL_CARD.md").read_text()
    for options, reason in [([], "name it with --start-from"),
                            (["--start-from", str(small_model)], "add --pretext mae")]:
        with pytest.raises(SystemExit, match=reason):
            main(["train", "--normals", str(train), "--out", str(tmp_path / "x"), "--freeze-encoder", *options])
        assert not (tmp_path / "x").exists()
