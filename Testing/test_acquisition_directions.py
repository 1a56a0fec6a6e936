"""Acquisition directions (core/model/acquisition.py): what separates two sources' normals is projected
out of the patch features, a lesion's change is not, and `train` finds, stores, reloads and keeps them."""

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import data_dir, link_subset
from SSLAnomalyLib.core.anatomy.lung_network import bundled_segmenter
from SSLAnomalyLib.core.model.acquisition import ARRAY, AcquisitionDirections, lung_field_means
from SSLAnomalyLib.core.model.preprocess import to_model_input
from SSLAnomalyLib.core.reading.images import read_radiograph
from SSLAnomalyLib.training.spec import StartingEncoder, TrainingSpec, kept_acquisition


def test_the_first_direction_is_the_shift_between_the_sources_and_all_are_orthonormal():
    rng = np.random.default_rng(0)
    site = rng.normal(size=(60, 16))
    other = rng.normal(size=(50, 16)) + 3 * np.eye(16)[5] + rng.normal(size=(50, 1)) * np.eye(16)[9] * 2
    found = AcquisitionDirections.between(site, other, 3)
    u = found.directions
    assert u.shape == (16, 3) and found.k == 3
    np.testing.assert_allclose(u.T @ u, np.eye(3), atol=1e-5)
    shift = other.mean(0) - site.mean(0)
    assert abs(u[:, 0] @ shift) / np.linalg.norm(shift) > 0.999  # the mean shift, up to sign
    assert abs(u[9, 1]) > 0.9  # then the axis the other source spreads along


def test_projecting_removes_the_directions_and_keeps_what_is_orthogonal_to_them():
    u = np.linalg.qr(np.random.default_rng(1).normal(size=(8, 2)))[0].astype(np.float32)
    found = AcquisitionDirections(u)
    patches = torch.randn(3, 8, 4, 5)
    projected = found.apply(patches)
    assert projected.shape == patches.shape
    assert torch.einsum("nchw,ck->nkhw", projected, torch.from_numpy(u)).abs().max() < 1e-5
    orthogonal = patches - torch.einsum("nkhw,ck->nchw", torch.einsum("nchw,ck->nkhw", patches, torch.from_numpy(u)),
                                        torch.from_numpy(u))
    torch.testing.assert_close(found.apply(orthogonal), orthogonal, atol=1e-5, rtol=1e-5)
    again = AcquisitionDirections.from_arrays(found.to_arrays())
    np.testing.assert_array_equal(again.directions, u)
    assert AcquisitionDirections.from_arrays({"lung_prior": np.zeros(2)}) is None


@pytest.mark.parametrize("k", [0, 17])
def test_a_number_of_directions_outside_the_feature_size_is_refused(k):
    with pytest.raises(ValueError, match="must be 1 to 16"):
        AcquisitionDirections.between(np.zeros((4, 16)), np.ones((4, 16)), k)


def test_more_directions_than_other_normals_or_the_same_normals_twice_are_refused(tmp_path):
    """k directions from fewer than k other normals wrote fewer, the last one arbitrary (a zero singular
    value), and a copy of the site's normals as the other source projected out an arbitrary channel."""
    from SSLAnomalyLib.core.reading.images import ReadError
    from SSLAnomalyLib.training.acquisition_directions import check_other_sources

    site = np.random.default_rng(2).normal(size=(30, 16))
    with pytest.raises(ValueError, match="5 acquisition directions need at least 5 readable other-source normals"):
        AcquisitionDirections.between(site, site[:3] + 1.0, 5)
    with pytest.raises(ValueError, match="do not differ from the site's"):
        AcquisitionDirections.between(site, site.copy(), 2)
    outside = tmp_path / "outside"
    outside.mkdir()
    for f in sorted(data_dir("nih", "val", "normal").iterdir())[:3]:
        (outside / f.name).symlink_to(f)
    with pytest.raises(ReadError, match="3 image\\(s\\) cannot give 8 acquisition directions"):
        check_other_sources(outside, tmp_path / "site", 8)  # before any training step
    check_other_sources(outside, tmp_path / "site", 3)


def test_lung_field_means_average_inside_the_lung_fields_only():
    patches = torch.zeros(1, 2, 4, 4)
    patches[0, :, :2] = 1.0  # the top half
    lungs = np.zeros((1, 8, 8), bool)
    lungs[0, :4] = True
    np.testing.assert_allclose(lung_field_means(patches, lungs), [[1.0, 1.0]])
    np.testing.assert_allclose(lung_field_means(patches, np.zeros((1, 8, 8), bool)), [[0.5, 0.5]])  # no lung: all


def encoded(detector, folder: Path, n: int):
    x = np.stack([to_model_input(read_radiograph(f).pixels[0], detector.input_size) for f in sorted(folder.iterdir())[:n]])
    lungs = bundled_segmenter().masks(x)
    return x, lungs, lung_field_means(detector.scorer.features(x, lungs)[1], lungs)


def test_real_sources_come_together_while_a_mass_still_moves_its_patches():
    """NIH and RSNA normals (one hospital, two export pipelines) through the bundled adult encoder: after
    the projection the two sources' mean lung-field features lie far closer (on images the directions
    were not found on), while a 30 mm mass drawn by the phantom generator keeps most of its change
    of the patch features where it lies (about 0.6 of its norm on NIH normals; the bundling check
    measures what that does to the share of phantoms flagged)."""
    from SSLAnomalyLib.core.detection.detector import AnomalyDetector
    from SSLAnomalyLib.evaluation.phantoms import draw_phantom

    detector = AnomalyDetector.load("adult", device="cpu")
    detector.scorer.acquisition = None
    _, _, nih = encoded(detector, data_dir("nih", "train", "normal"), 48)
    _, _, rsna = encoded(detector, data_dir("rsna", "train", "normal"), 48)
    found = AcquisitionDirections.between(nih[:32], rsna[:32], 8)
    projected = lambda m: m - (m @ found.directions) @ found.directions.T  # noqa: E731
    before = np.linalg.norm(rsna[32:].mean(0) - nih[32:].mean(0))
    after = np.linalg.norm(projected(rsna[32:]).mean(0) - projected(nih[32:]).mean(0))
    assert after < 0.5 * before
    x, lungs, _ = encoded(detector, data_dir("nih", "val", "normal"), 4)
    rng = np.random.default_rng(0)
    masses = [draw_phantom("mass", "30mm", image, lung, rng) for image, lung in zip(x, lungs)]
    change = (detector.scorer.features(np.stack([m.image for m in masses]).astype(np.float32), lungs)[1]
              - detector.scorer.features(x, lungs)[1])
    for k, mass in enumerate(masses):
        where = torch.nn.functional.interpolate(torch.from_numpy(mass.region_mask[None, None].astype(np.float32)),
                                                size=change.shape[-2:], mode="area")[0, 0] > 0.5
        assert found.apply(change[k:k + 1])[0][:, where].norm() > 0.4 * change[k][:, where].norm()


def test_a_run_keeps_the_starting_models_directions_only_while_its_encoder_stays_as_it_is():
    found = AcquisitionDirections(np.eye(4, 2, dtype=np.float32))
    start = StartingEncoder(config=None, state={}, model_id="m", folder="f", acquisition=found)
    assert kept_acquisition(TrainingSpec(minutes=0), start) is found
    assert kept_acquisition(TrainingSpec(minutes=5, freeze_encoder=True), start) is found  # only MAE's decoder trains
    assert kept_acquisition(TrainingSpec(minutes=5), start) is None  # the encoder changes: they no longer hold
    assert kept_acquisition(TrainingSpec(minutes=0, other_source_normals=("x",)), start) is None  # asked for anew
    assert kept_acquisition(TrainingSpec(minutes=0), None) is None


def test_train_finds_stores_and_reloads_the_directions_and_a_refit_keeps_them(tmp_path, capsys):
    """`train --other-source-normals` end to end on real adult normals: the model folder holds the
    directions, the manifest and card say where they came from (and which other-source file could not
    be read, named on stderr too), the reloaded detector projects with them, and a refit started from
    that model keeps them."""
    from SSLAnomalyLib.cli import main
    from SSLAnomalyLib.core.detection.detector import AnomalyDetector
    from SSLAnomalyLib.core.model_files import model_folder

    nih = link_subset(data_dir("nih", "train", "normal"), tmp_path / "nih", 30)
    rsna = link_subset(data_dir("rsna", "train", "normal"), tmp_path / "rsna", 12)
    (rsna / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "model"
    assert main(["train", "--normals", str(nih), "--out", str(out), "--minutes", "0", "--start-from", "adult",
                 "--other-source-normals", str(rsna), "--acquisition-directions", "4", "--quiet"]) == 0
    loaded = model_folder.load(out)
    assert loaded.arrays[ARRAY].shape[1] == 4
    record = loaded.manifest.section("reference")["acquisition_directions"]
    assert record["k"] == 4 and record["other_source_normals"] == str(rsna)
    assert [str(rsna / "broken.png") in entry for entry in record["skipped"]] == [True]
    assert f"warning: {rsna / 'broken.png'}" in capsys.readouterr().err
    assert "4 acquisition directions of the patch features" in (out / "MODEL_CARD.md").read_text()
    detector = AnomalyDetector.load(out, device="cpu")
    np.testing.assert_array_equal(detector.scorer.acquisition.directions, loaded.arrays[ARRAY])
    result = detector.detect(read_radiograph(sorted(data_dir("nih", "val", "pneumonia").iterdir())[0]))
    assert np.isfinite(result.score)

    refit = tmp_path / "refit"
    assert main(["train", "--normals", str(nih), "--out", str(refit), "--minutes", "0", "--start-from", str(out),
                 "--quiet"]) == 0
    kept = model_folder.load(refit)
    np.testing.assert_array_equal(kept.arrays[ARRAY], loaded.arrays[ARRAY])
    assert kept.manifest.section("reference")["acquisition_directions"] == {"k": 4, "kept_from": loaded.manifest.model_id}


def test_directions_without_other_source_normals_are_refused_before_any_work(tmp_path):
    from SSLAnomalyLib.cli import main

    with pytest.raises(SystemExit, match="--acquisition-directions needs --other-source-normals"):
        main(["train", "--normals", str(tmp_path), "--out", str(tmp_path / "m"), "--acquisition-directions", "4"])
    assert not (tmp_path / "m").exists()


def test_an_other_source_folder_without_images_is_named_before_any_training_step(small_normals, tmp_path, capsys):
    from SSLAnomalyLib.cli import main
    from SSLAnomalyLib.training.fitting import work_dir

    train, _ = small_normals
    empty = tmp_path / "outside"
    empty.mkdir()
    out = tmp_path / "model"
    code = main(["train", "--normals", str(train), "--out", str(out), "--minutes", "5", "--max-steps", "2", "--size", "64",
                 "--other-source-normals", str(empty), "--quiet"])
    assert code != 0
    assert f"{empty}: no images found in the folder" in capsys.readouterr().err
    assert not work_dir(out).exists() and not out.exists()


@pytest.mark.parametrize("bad", [np.ones((95, 8), np.float32), np.ones(96, np.float32)],
                         ids=["other-channels", "not-a-matrix"])
def test_a_model_folder_with_unusable_directions_is_refused_when_loaded(tmp_path, bad):
    """A model folder (verified, signed as written; non-finite values the folder itself refuses) whose
    directions do not fit its patch features is named at load, not when the first image is scored."""
    from SSLAnomalyLib.core.detection.detector import AnomalyDetector
    from SSLAnomalyLib.core.model_files import model_folder
    from SSLAnomalyLib.core.model_files.model_card import model_card

    adult = model_folder.load("adult")
    out = model_folder.save(tmp_path / "model", adult.encoder_state, dict(adult.arrays, **{ARRAY: bad}),
                            adult.manifest.replaced(files=None, manifest_sha256=None), model_card(adult.manifest))
    with pytest.raises(model_folder.ModelError, match="acquisition directions") as refused:
        AnomalyDetector.load(out, device="cpu")
    assert str(out) in str(refused.value)
    with pytest.raises(model_folder.ModelError, match="acquisition directions"):
        StartingEncoder.load(out)


def test_the_sites_own_normals_as_other_source_normals_are_refused_before_any_training_step(small_normals, tmp_path,
                                                                                             capsys):
    from SSLAnomalyLib.cli import main

    train, _ = small_normals
    out = tmp_path / "model"
    assert main(["train", "--normals", str(train), "--out", str(out), "--minutes", "5", "--max-steps", "2",
                 "--size", "64", "--other-source-normals", str(train), "--quiet"]) != 0
    assert "is one of the site's --normals folders" in capsys.readouterr().err
    assert not out.exists()


def test_a_federated_site_sums_through_the_directions_and_the_merge_keeps_them(tmp_path):
    """`reference-stats` of a model with directions takes its sums of projected features (nothing
    along the directions), and `merge` carries the directions into the merged model."""
    from PIL import Image

    from SSLAnomalyLib.core.model_files import model_folder
    from SSLAnomalyLib.core.model_files.model_card import model_card
    from SSLAnomalyLib.core.reading.sample import synthetic_radiograph
    from SSLAnomalyLib.training.federated import merge, site_stats

    adult = model_folder.load("adult")
    channels = adult.arrays["patch_means"].shape[0]
    u = np.linalg.qr(np.random.default_rng(2).normal(size=(channels, 2)))[0].astype(np.float32)
    model = model_folder.save(tmp_path / "model", adult.encoder_state, dict(adult.arrays, **{ARRAY: u}),
                              adult.manifest.replaced(files=None, manifest_sha256=None), model_card(adult.manifest))
    site = tmp_path / "site"
    site.mkdir()
    for i in range(20):
        Image.fromarray(synthetic_radiograph(256, 224, seed=i)).save(site / f"{i}.png")
    stats = site_stats(model, site)
    assert np.abs(np.einsum("chw,ck->khw", stats.stats.patch_sum, u)).max() < 1e-3 * np.abs(stats.stats.patch_sum).max()
    stats_file = stats.save(tmp_path / "site.stats")
    merged = model_folder.load(merge(model, [stats_file], tmp_path / "merged"))
    np.testing.assert_array_equal(merged.arrays[ARRAY], u)
