"""Every self-supervised objective builds what it names and learns on real normals; combinations are
weighted sums whose weights the model folder records."""

import json

import numpy as np
import pytest

from SSLAnomalyLib.core.model.encoder import EncoderConfig, to_batch
from SSLAnomalyLib.training.fitting import load_normals
from SSLAnomalyLib.training.objectives import (NEIGHBOURS, OBJECTIVES, JigsawParams, MaeParams, Pretext, RelposParams,
                                               jigsaw_permutations, jigsaw_tiles, mae_mask, relpos_pair)
from SSLAnomalyLib.training.trainer import TrainConfig, Trainer

ENCODER = EncoderConfig(input_size=64)
SAME = lambda image, rng: image  # noqa: E731  no augmentation, so positions can be checked exactly


@pytest.fixture(scope="module")
def normals(small_normals):
    return load_normals(small_normals[0], 64, progress=False)


def where(patch: np.ndarray, image: np.ndarray) -> set[tuple[int, int]]:
    """Every top-left corner at which `patch` is exactly a window of `image`."""
    h, w = patch.shape
    windows = np.lib.stride_tricks.sliding_window_view(image, (h, w))
    return {tuple(int(v) for v in p) for p in np.argwhere((windows == patch).all(axis=(-2, -1)))}


def test_jigsaw_tiles_follow_the_permutation_of_their_label(normals):
    params = JigsawParams()
    perms = jigsaw_permutations(params)
    assert (perms[0] == np.arange(9)).all() and len({tuple(p) for p in perms}) == params.permutations
    image = normals.images01[0]
    for label in (3, 17):
        unshuffled = jigsaw_tiles(image, perms[0], params, np.random.default_rng(1))
        shuffled = jigsaw_tiles(image, perms[label], params, np.random.default_rng(1))
        for j in range(9):
            assert np.array_equal(shuffled[j], unshuffled[perms[label][j]])
    batch = OBJECTIVES["jigsaw"](ENCODER).batch(normals.images01[:4], normals.lungs[:4], np.random.default_rng(2), SAME)
    cell = 64 // 3
    tiles, images = batch["tiles"].numpy()[:, 0], to_batch(normals.images01[:4]).numpy()[:, 0]
    for b, label in enumerate(batch["label"].tolist()):
        for j, source in enumerate(perms[label]):
            r, c = divmod(int(source), 3)
            found = where(tiles[9 * b + j], images[b])
            assert any(r * cell <= y < (r + 1) * cell and c * cell <= x < (c + 1) * cell for y, x in found)


def test_relpos_neighbour_sits_where_its_label_says(normals):
    params = RelposParams()
    rng = np.random.default_rng(3)
    for image in normals.images01[:6]:
        centre, neighbour, label = relpos_pair(image, params, rng)
        (cy, cx), = where(centre, image)
        (ny, nx), = where(neighbour, image)
        jitter, step = round(params.jitter_fraction * 64), centre.shape[0] + round(params.gap_fraction * 64)
        for moved, expected in zip((ny - cy, nx - cx), NEIGHBOURS[label]):
            if expected == 0:
                assert abs(moved) <= jitter
            else:  # beyond the patch's own side: a gap, so no shared edge to follow
                assert np.sign(moved) == expected and abs(moved) >= step - jitter > centre.shape[0]


def test_mae_masks_the_stated_ratio_and_keeps_the_rest(normals):
    params = MaeParams()
    grid = 64 // round(params.patch_fraction * 64)
    mask = mae_mask(64, params, np.random.default_rng(4))
    assert mask.mean() == pytest.approx(round(params.mask_ratio * grid * grid) / grid ** 2)
    batch = OBJECTIVES["mae"](ENCODER).batch(normals.images01[:3], normals.lungs[:3], np.random.default_rng(5), SAME)
    masked, target, m = batch["masked"].numpy(), batch["target"].numpy(), batch["mask"].numpy()
    assert (masked[m] == 0).all() and np.array_equal(masked[~m], target[~m])
    assert m.mean() == pytest.approx(mask.mean())


def test_contrastive_views_are_two_acquisitions_of_the_same_normal(normals):
    from SSLAnomalyLib.training.trainer import augment

    images, seen = normals.images01[:6], []

    def recorded(image, rng):
        seen.append(next(i for i in range(len(images)) if np.shares_memory(image, images[i])))
        return augment(image, rng)

    batch = OBJECTIVES["contrastive"](ENCODER).batch(images, normals.lungs[:6], np.random.default_rng(6), recorded)
    assert seen == [0, 1, 2, 3, 4, 5] * 2  # view1[i] and view2[i] both come from normal i
    assert batch["view1"].shape == batch["view2"].shape == (6, 1, 64, 64)
    assert not np.allclose(batch["view1"].numpy(), batch["view2"].numpy())  # two different acquisitions


@pytest.mark.parametrize("kind", ["anatpaste", "opacity"])
def test_synthetic_batches_alter_only_the_lungs_of_their_half(normals, kind):
    batch = OBJECTIVES[kind](ENCODER).batch(normals.images01[:8], normals.lungs[:8], np.random.default_rng(7), SAME)
    altered = batch["altered"].numpy()[:, 0]
    assert batch["label"].tolist() == [0, 1] * 4
    assert (altered[0::2] == 0).all() and (altered[1::2].max(axis=(1, 2)) > 0).all()
    assert (altered[1::2][~normals.lungs[1:8:2]] == 0).all()


# steps, batch and normals per objective. The synthetic tasks need more steps to move; contrastive
# learns on 8 normals that make the whole batch, because on 40 drawn in batches of 16 its 40-step
# fall varied with the seed and the CPU from 3 to 9 % (this test with seeds 0-2, and CI), and on
# these 8 it falls 21-27 % with each of seeds 0-2.
LEARNING = {"anatpaste": (100, 16, 40), "opacity": (100, 16, 40), "contrastive": (40, 8, 8), "mae": (40, 8, 40),
            "relpos": (80, 16, 40), "jigsaw": (40, 8, 40)}


@pytest.mark.parametrize("name", list(OBJECTIVES))
def test_each_objective_loss_falls_on_real_normals(normals, tmp_path, name):
    steps, batch, n = LEARNING[name]
    cfg = TrainConfig(minutes=10, batch_size=batch, max_steps=steps, eval_every=10**6, seed=0)
    trainer = Trainer(ENCODER, Pretext.parse(name), cfg, tmp_path, device="cpu")
    trainer.fit(normals.images01[:n], normals.lungs[:n], progress=False)
    state = trainer.state()
    assert state["history_columns"] == ["step", name]
    losses = np.array([h[1] for h in state["history"]])
    k = steps // 5
    assert losses[-k:].mean() < 0.95 * losses[:k].mean()


@pytest.mark.parametrize("name", ["contrastive", "mae", "relpos", "jigsaw"])
def test_each_objective_resumes_where_it_stopped(normals, tmp_path, name):
    for steps in (3, 5):
        cfg = TrainConfig(minutes=10, batch_size=4, max_steps=steps, eval_every=10**6)
        trainer = Trainer(ENCODER, Pretext.parse(name), cfg, tmp_path, device="cpu")
        trainer.fit(normals.images01, normals.lungs, progress=False)
    assert [h[0] for h in trainer.state()["history"]] == [1, 2, 3, 4, 5]


def test_pretext_parsing_names_what_is_wrong():
    assert Pretext.parse("contrastive:0.5,anatpaste").terms == (("contrastive", 0.5), ("anatpaste", 1.0))
    for text, reason in [("dino", "unknown objective"), ("mae:x", "not a number"), ("mae:0", "positive"),
                         ("mae:nan", "positive"), ("mae,mae", "twice")]:
        with pytest.raises(ValueError, match=reason):
            Pretext.parse(text)


def test_combined_pretext_from_a_start_model_states_its_weights(small_model, small_normals, tmp_path):
    from SSLAnomalyLib.cli import main

    out = tmp_path / "combined"
    assert main(["train", "--normals", str(small_normals[0]), "--val-normals", str(small_normals[1]), "--out", str(out),
                 "--start-from", str(small_model), "--minutes", "5", "--max-steps", "2", "--pretext",
                 "relpos:0.5,anatpaste", "--foreign-objects", "0.25", "--quiet"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert [(o["name"], o["weight"]) for o in manifest["pretext"]["objectives"]] == [("relpos", 0.5), ("anatpaste", 1.0)]
    assert manifest["pretext"]["objectives"][0]["params"] == {"patch_fraction": 0.25, "gap_fraction": 0.05,
                                                               "jitter_fraction": 0.02}
    assert manifest["training"]["started_from"]["folder"] == str(small_model)
    assert manifest["training"]["foreign_objects"] == 0.25
    assert manifest["training"]["steps"] == manifest["training"]["max_steps"] == 2
    card = (out / "MODEL_CARD.md").read_text()
    assert "relpos (weight 0.5), anatpaste (weight 1)" in card and "drawn on 25 % of" in card
    with pytest.raises(SystemExit) as refused:
        main(["train", "--normals", str(small_normals[0]), "--out", str(tmp_path / "x"), "--pretext", "dino"])
    assert refused.value.code == 2 and not (tmp_path / "x").exists()
