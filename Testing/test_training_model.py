"""Training really learns, model folders round-trip exactly and refuse tampering."""

import json
import shutil
import time

import numpy as np
import pytest
import torch

from conftest import data_dir
from SSLAnomalyLib.cli import main
from SSLAnomalyLib.core.detection.detector import AnomalyDetector
from SSLAnomalyLib.core.model.encoder import EncoderConfig
from SSLAnomalyLib.core.model_files.model_card import steps_note
from SSLAnomalyLib.core.model_files.model_folder import MANIFEST, WEIGHTS, ModelError, load
from SSLAnomalyLib.core.reading.images import read_radiograph
from SSLAnomalyLib.training.fitting import load_normals, model_digest
from SSLAnomalyLib.training.objectives import Pretext
from SSLAnomalyLib.training.trainer import TrainConfig, Trainer


def test_training_resumes_from_its_checkpoint_and_says_so(small_normals, tmp_path, capsys):
    normals = load_normals(small_normals[0], 64, progress=False)
    enc = EncoderConfig(input_size=64)
    for steps in (5, 9):
        cfg = TrainConfig(minutes=10, batch_size=8, max_steps=steps, eval_every=1000)
        trainer = Trainer(enc, Pretext(), cfg, tmp_path, device="cpu")
        trainer.fit(normals.images01, normals.lungs, progress=False)
        said = [line for line in capsys.readouterr().err.splitlines() if line.startswith("resuming")]
        assert len(said) == (steps == 9)  # a rerun used to continue the old run without a word
        assert all(f"in {tmp_path} from its checkpoint at step 5 (" in line for line in said)
    assert trainer.state()["step"] == 9
    assert [h[0] for h in trainer.state()["history"]] == list(range(1, 10))


def test_the_card_of_a_resumed_run_counts_its_steps_time_over_every_process():
    training = {"device": "cpu", "seed": 0, "steps": 12846, "batch_size": 32, "chosen_step": 9100,
                "seconds": 776.2, "step_seconds": 24689.2, "selection": "a normal-only signal"}
    note = steps_note(training)
    assert "24689 s of training steps (over every resumed process)" in note
    assert "776 s in all in the last process" in note and "step 9100" in note


def test_keep_last_step_keeps_the_trained_encoder_not_the_signals_choice(small_model, small_normals, tmp_path):
    """The normal-only signal ranks encoders of different runs backwards (docs/model.md, round 18) and
    kept step 0, the starting encoder, of a fine-tune whose last step the bundling rule had to judge."""
    out = tmp_path / "last"
    assert main(["train", "--normals", str(small_normals[0]), "--out", str(out), "--minutes", "5", "--max-steps", "2",
                 "--start-from", str(small_model), "--keep-last-step", "--device", "cpu", "--quiet"]) == 0
    training = json.loads((out / MANIFEST).read_text())["training"]
    assert training["steps"] == 2 and training["chosen_step"] is None and not training["selection_signals"]
    assert "--keep-last-step" in training["selection"]
    start, kept = load(small_model).encoder_state, load(out).encoder_state
    assert any(not torch.equal(start[k], v) for k, v in kept.items() if v.is_floating_point())
    assert "no checkpoint chosen: the last step's encoder kept" in (out / "MODEL_CARD.md").read_text()


def test_the_card_of_an_untrained_random_encoder_says_it_is_a_baseline():
    training = {"device": "cpu", "seed": 0, "steps": 0, "seconds": 9.0, "started_from": None}
    assert "random and untrained, a baseline" in steps_note(training)
    assert "the starting encoder as it is" in steps_note(dict(training, started_from="adult (sslanomaly-x)"))


def test_saved_model_reloads_to_identical_scores(small_model):
    image = read_radiograph(sorted(data_dir("kermany_fullres", "pneumonia").iterdir())[0])
    a = AnomalyDetector.load(small_model, device="cpu").detect(image)
    b = AnomalyDetector.load(small_model, device="cpu").detect(image)
    assert a.score == b.score and a.percentile == b.percentile
    assert np.array_equal(a.heatmap.pixels, b.heatmap.pixels)
    manifest = json.loads((small_model / MANIFEST).read_text())
    c = manifest["calibration"]  # out-of-fold scores of the 40 normals and 20 calibration ones, counted or set aside
    assert c["n_normals"] + len(c["set_aside_scores"]) == 60
    assert len(c["set_aside_files"]) == len(c["set_aside_scores"])
    assert manifest["data"]["n_train"] + manifest["data"]["n_held_out"] == 40
    loaded = load(small_model)
    decisions = {"scoring": manifest["scoring"], "calibration": manifest["calibration"]}
    assert manifest["model_id"].endswith("-w" + model_digest(loaded.encoder_state, loaded.arrays, decisions))  # weights, reference and how it decides


def test_tampered_weights_are_refused(small_model, tmp_path):
    bad = shutil.copytree(small_model, tmp_path / "tampered", ignore=shutil.ignore_patterns("work"))
    data = bytearray((bad / WEIGHTS).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bad / WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(ModelError, match="SHA-256"):
        AnomalyDetector.load(bad)


def test_future_format_version_is_refused(small_model, tmp_path):
    bad = shutil.copytree(small_model, tmp_path / "future", ignore=shutil.ignore_patterns("work"))
    m = json.loads((bad / MANIFEST).read_text())
    m["format_version"] = 99
    (bad / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(ModelError, match="newer"):
        AnomalyDetector.load(bad)


def test_install_records_population_and_measured_figures_and_keeps_the_weights(small_model, tmp_path):
    import runpy

    from conftest import REPO

    run = shutil.copytree(small_model, tmp_path / "run", ignore=shutil.ignore_patterns("work"))
    dev = {"auroc": 0.9123, "ap": 0.9456, "n_normal": 200, "n_abnormal": 300, "command": "sslanomaly evaluate A",
           "fpr_at_threshold": 0.05, "tpr_at_threshold": 0.8,
           "components": {"pooled": {"auroc": 0.81, "ap": 0.8}, "patch": {"auroc": 0.9, "ap": 0.9}}}
    loc = {"pointing_game": 0.2367, "box_auroc": 0.7, "n_images": 150, "random_pointing_baseline": 0.1,
           "command": "sslanomaly evaluate B"}
    (run / "dev.json").write_text(json.dumps(dev))
    (run / "localisation.json").write_text(json.dumps(loc))
    install = runpy.run_path(str(REPO / "scripts" / "install_bundled_model.py"))["install"]
    folder = install("adult", str(run), folder=tmp_path / "installed")
    card = (folder / "MODEL_CARD.md").read_text()
    assert "0.912" in card and "0.237" in card and "sslanomaly evaluate A" in card and "Children, lateral" in card
    assert (folder / WEIGHTS).read_bytes() == (run / WEIGHTS).read_bytes()
    loaded = AnomalyDetector.load(folder)  # hashes verify
    assert loaded.manifest.section("measured")["dev"]["auroc"] == 0.9123 and loaded.population.label == "adults"
    with pytest.raises(SystemExit, match="not a bundled model name"):
        install("veterinary", str(run), folder=tmp_path / "x")


def test_a_model_started_from_another_keeps_its_encoder_and_refits_on_the_new_normals(small_model, small_normals, tmp_path,
                                                                                      capsys):
    """`train --start-from M --minutes 0`: M's encoder weights unchanged, a reference and calibration
    fitted on the given normals with the heatmap layers asked for, and a card that says so; the run
    says which device --device auto chose."""
    train, val = small_normals
    out = tmp_path / "refit"
    started = time.time()
    assert main(["train", "--normals", str(train), "--val-normals", str(val), "--out", str(out), "--minutes", "0",
                 "--start-from", str(small_model), "--patch-layers", "layer1,layer2"]) == 0
    took = time.time() - started
    assert "the starting encoder as it is; device cpu (chosen by --device auto)" in capsys.readouterr().err
    base, refit = load(small_model), load(out)
    encoder, arrays, training = refit.encoder_state, refit.arrays, refit.manifest.section("training")
    assert base.encoder_state.keys() == encoder.keys()
    assert all(torch.equal(base.encoder_state[k], encoder[k]) for k in encoder)
    assert refit.manifest.encoder.patch_layers == ("layer1", "layer2")
    assert "pretext" in training["inherited"] and "patch_layers" not in training["inherited"]
    assert "Kept from the starting model's recipe (no option given for them): input size" in (out / "MODEL_CARD.md").read_text()
    assert arrays["patch_means"].shape[-1] == 2 * base.arrays["patch_means"].shape[-1]  # layer1: a map twice as fine
    assert training["started_from"]["model_id"] == base.manifest.model_id
    assert 0.7 * took <= training["seconds"] <= took  # the time it took: the refit's fitting, not only its no steps
    assert f"encoder of model `{base.manifest.model_id}` unchanged" in (out / "MODEL_CARD.md").read_text()
    result = AnomalyDetector.load(out, device="cpu").detect(
        read_radiograph(sorted(data_dir("kermany_fullres", "pneumonia").iterdir())[0]))
    assert np.isfinite(result.score) and result.model_id == refit.manifest.model_id != base.manifest.model_id


def test_unknown_heatmap_layers_are_refused_before_any_work(tmp_path, capsys):
    with pytest.raises(SystemExit, match="patch_layers must name one or more of layer1"):
        main(["train", "--normals", str(tmp_path), "--out", str(tmp_path / "m"), "--patch-layers", "layer2,layer9"])
    with pytest.raises(SystemExit, match="--pooled-layers: pooled_layers must name one or more of layer1"):
        main(["train", "--normals", str(tmp_path), "--out", str(tmp_path / "m"), "--pooled-layers", "layer0"])
    with pytest.raises(SystemExit, match="--pooled-views: pooled_views must name one or more of image, lungs once"):
        main(["train", "--normals", str(tmp_path), "--out", str(tmp_path / "m"), "--pooled-views", "image,image"])


def test_a_scorer_is_fitted_on_normals_before_it_scores(small_normals):
    from SSLAnomalyLib.core.model.encoder import build_encoder
    from SSLAnomalyLib.core.model.scoring import NotFittedError, Scorer

    normals = load_normals(small_normals[0], 64, progress=False)
    scorer = Scorer(build_encoder(EncoderConfig(input_size=64)), EncoderConfig(input_size=64))
    with pytest.raises(NotFittedError, match="fit"):
        scorer.score(normals.images01[:2], normals.lungs[:2])
    assert scorer.fit(normals.images01[:30], normals.lungs[:30], normals.images01[30:], normals.lungs[30:]) is scorer
    held = scorer.held_out_scores.score
    assert abs(held.mean()) < 1e-6  # standardised on exactly these held-out normals
    assert np.allclose(scorer.score(normals.images01[30:], normals.lungs[30:]).score, held, atol=1e-4)


def test_start_from_keeps_the_starting_recipe_unless_an_option_overrides_it(pediatric_model, default_model):
    """The recipe policy of `train --start-from` (training/spec.py), from the CLI's options to the
    values trained with: unset options take the starting model's, given ones win."""
    from SSLAnomalyLib.cli import parser
    from SSLAnomalyLib.cli.train import training_spec
    from SSLAnomalyLib.core.model_files.model_card import inherited_note
    from SSLAnomalyLib.training.defaults import FINE_TUNE_LR, LR
    from SSLAnomalyLib.training.spec import StartingEncoder, resolve

    m = json.loads((pediatric_model / MANIFEST).read_text())
    start = StartingEncoder.load(pediatric_model)
    base = ["train", "--normals", "N", "--out", "O", "--start-from", str(pediatric_model)]
    kept = resolve(training_spec(parser().parse_args(base)), start)
    assert kept.foreign_objects == m["training"]["foreign_objects"]
    assert kept.calibration_views == m["reference"]["calibration_augmented_views_per_normal"]
    assert kept.encoder.patch_layers == tuple(m["encoder"]["patch_layers"])
    assert kept.encoder.pooled_layers == tuple(m["encoder"]["pooled_layers"]) == tuple(kept.inherited["pooled_layers"])
    assert kept.encoder.input_size == m["encoder"]["input_size"] and kept.pretext == Pretext.from_dict(m["pretext"])
    assert kept.lr == FINE_TUNE_LR and kept.inherited["foreign_objects"] == m["training"]["foreign_objects"]
    # its operating point too: a refit of the pediatric model (bundled at 8 %) was calibrated at 5 %
    assert kept.fpr == kept.inherited["fpr"] == m["calibration"]["false_positive_rate"] == 0.08
    given = resolve(training_spec(parser().parse_args(
        base + ["--foreign-objects", "0.3", "--patch-layers", "layer1", "--pretext", "mae", "--size", "96", "--lr", "0.01",
                "--pooled-layers", "layer1,layer2,layer3,layer4", "--pooled-views", "lungs", "--fpr", "0.05"])),
        start)
    assert (given.foreign_objects, given.encoder.patch_layers, given.encoder.input_size, given.lr) == (0.3, ("layer1",), 96, 0.01)
    assert given.encoder.pooled_layers == ("layer1", "layer2", "layer3", "layer4")
    assert given.encoder.pooled_views == ("lungs",)
    assert kept.encoder.pooled_views == tuple(m["encoder"].get("pooled_views", ["image"]))  # before the option: image
    assert given.pretext == Pretext.parse("mae")
    assert not {"foreign_objects", "patch_layers", "pooled_layers", "pooled_views", "pretext", "input_size"} & set(given.inherited)
    assert kept.overridden == {} and given.overridden["patch_layers"] == {"given": ["layer1"],
                                                                          "starting": m["encoder"]["patch_layers"]}
    assert set(given.overridden) == {"foreign_objects", "patch_layers", "pooled_layers", "pooled_views", "pretext",
                                     "input_size", "fpr"} and given.fpr == 0.05
    note = inherited_note({"inherited": given.inherited, "overridden": given.overridden})
    assert (f"Set otherwise by an option: input size 96 (the starting model's: {m['encoder']['input_size']})" in note
            and f"patch layers ['layer1'] (the starting model's: {m['encoder']['patch_layers']})" in note
            and "fpr 0.05 (the starting model's: 0.08)" in note)
    adult = StartingEncoder.load(default_model)  # positions standardised: kept, or turned off by the option
    for model in (pediatric_model, default_model):  # every recipe value either model records is kept, none overridden
        plain = resolve(training_spec(parser().parse_args(base[:-1] + [str(model)])), StartingEncoder.load(model))
        assert set(plain.inherited) == set(StartingEncoder.load(model).recipe) and plain.overridden == {}
    assert resolve(training_spec(parser().parse_args(base)), adult).standardise_positions is True
    off = base + ["--no-standardise-positions"]
    assert resolve(training_spec(parser().parse_args(off)), adult).standardise_positions is False
    assert resolve(training_spec(parser().parse_args(base + ["--sides-offset", "1.5"])), adult).sides_offset == 1.5
    with pytest.raises(SystemExit):
        parser().parse_args(base + ["--sides-offset", "40"])
    scratch = resolve(training_spec(parser().parse_args(base[:5])))
    assert scratch.foreign_objects == 0 and scratch.lr == LR and scratch.inherited == {} and scratch.pretext == Pretext()
    assert scratch.sides_offset == 2.0 and scratch.fpr == 0.05


def test_an_interrupted_run_resumes_only_as_itself(small_normals, tmp_path, monkeypatch, capsys):
    """Stopped just before the model folder is written: nothing in MODEL_DIR, the checkpoint beside it;
    other settings are refused (naming what differs and --restart); the same command resumes, and
    the finished model is 0644 with its checkpoints removed."""
    from conftest import link_subset
    from SSLAnomalyLib.training import fitting

    train, val = link_subset(small_normals[0], tmp_path / "n", 12), link_subset(small_normals[1], tmp_path / "v", 4)
    out = tmp_path / "model"
    run = ["train", "--normals", str(train), "--val-normals", str(val), "--out", str(out), "--size", "64",
           "--minutes", "10", "--device", "cpu", "--quiet"]

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(fitting, "model_card", interrupt)  # stopped just before the model folder is written
    assert main(run + ["--max-steps", "2"]) == 130
    assert "run the same command again" in capsys.readouterr().err
    assert not out.exists() and (fitting.work_dir(out) / "checkpoint.safetensors").is_file()
    monkeypatch.undo()
    assert main(run + ["--max-steps", "2", "--pretext", "mae"]) == 2
    refusal = capsys.readouterr().err
    assert "model.work" in refusal and "pretext" in refusal and "--restart" in refusal and not out.exists()
    assert main(run + ["--max-steps", "3"]) == 0  # a longer budget for the same run: it resumes
    training = load(out).manifest.section("training")
    assert [s[0] for s in training["selection_signals"]] == [0, 2, 3]  # steps 0-2 judged before the stop
    assert (out / WEIGHTS).stat().st_mode & 0o777 == 0o644 and not fitting.work_dir(out).exists()


def test_a_model_put_where_an_unfinished_run_writes_is_not_replaced_by_its_rerun(small_normals, small_model,
                                                                                 tmp_path, monkeypatch, capsys):
    """A run stopped before writing its model, then another model put at its --out (calibrate, a copy):
    the rerun resumed and replaced that model unasked, since checkpoints beside a folder made any model
    in it the rerun's own. It now takes --overwrite, as any other model there does."""
    from conftest import link_subset
    from SSLAnomalyLib.training import fitting

    train, val = link_subset(small_normals[0], tmp_path / "n", 12), link_subset(small_normals[1], tmp_path / "v", 4)
    out = tmp_path / "model"
    run = ["train", "--normals", str(train), "--val-normals", str(val), "--out", str(out), "--size", "64",
           "--minutes", "10", "--max-steps", "2", "--device", "cpu", "--quiet"]
    monkeypatch.setattr(fitting, "model_card", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    assert main(run) == 130
    monkeypatch.undo()
    shutil.copytree(small_model, out)
    other = (out / MANIFEST).read_bytes()
    capsys.readouterr()
    assert main(run) == 2
    refusal = capsys.readouterr().err
    assert "already holds a model" in refusal and "model.work" in refusal and "--overwrite" in refusal
    assert (out / MANIFEST).read_bytes() == other and fitting.work_dir(out).is_dir()
    assert main(run + ["--overwrite"]) == 0  # asked for: the resumed run replaces it
    assert (out / MANIFEST).read_bytes() != other and not fitting.work_dir(out).exists()
