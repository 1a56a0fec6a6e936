"""The typed manifest: every reader takes its fields from `model_folder.load(...).manifest`; what the
one writer puts on disk is the document as read plus what a writer replaced. Runs on the bundled
models (part of the repository), without ../shared/data."""

import json

import numpy as np
import pytest

from SSLAnomalyLib.core.model.calibration import Calibration
from SSLAnomalyLib.core.model_files import registry
from SSLAnomalyLib.core.model_files.manifest import ANOMALY, LUNG_SEGMENTATION, Manifest, ManifestFieldError
from SSLAnomalyLib.core.model_files.model_folder import CARD, MANIFEST, ModelError, load, save
from tampered import resealed


def test_bundled_manifests_read_as_typed_fields():
    for name in ("adult", "pediatric"):
        loaded = load(name)
        m, document = loaded.manifest, json.loads((loaded.path / MANIFEST).read_text())
        assert m.kind == ANOMALY and m.model_id == document["model_id"]
        assert m.encoder.input_size == document["encoder"]["input_size"]
        assert m.encoder.patch_layers == tuple(document["encoder"]["patch_layers"])
        assert m.calibration.threshold == pytest.approx(document["calibration"]["threshold"], abs=1e-5)
        assert m.calibration.false_positive_rate == document["calibration"]["false_positive_rate"]
        assert set(m.component_stats) >= {"pooled", "patch"}
        assert m.component_stats["patch"] == tuple(document["scoring"]["component_stats"]["patch"])
        assert m.population.label == document["population"]["label"]
        assert m.to_dict() == document  # the document kept whole
    lungs = load(registry.MODELS_DIR / "lungs").manifest
    assert lungs.kind == LUNG_SEGMENTATION and lungs.encoder is None and lungs.calibration is None
    assert lungs.section("network")["input_size"] == 128


def test_replaced_sections_are_typed_and_nothing_is_shared():
    m = load("adult").manifest
    wider = m.calibration.with_false_positive_rate(0.2)
    new = m.replaced(calibration=wider, measured=None, site_calibration={"n_normals": 3})
    assert isinstance(new.calibration, Calibration) and new.calibration.false_positive_rate == 0.2
    assert new.document["calibration"]["false_positive_rate"] == 0.2 and "measured" not in new.document
    assert m.calibration.false_positive_rate == 0.07 and "measured" in m.document  # the original unchanged
    section = new.section("site_calibration")
    section["n_normals"] = 99
    assert new.section("site_calibration") == {"n_normals": 3}  # a section is handed out as a copy
    assert new.section("absent") == {}


def test_an_unreadable_typed_field_names_the_field():
    document = load("adult").manifest.to_dict()
    assert Manifest.from_dict(dict(document, anatomy={"lungs": "sslanomaly-lungs-x"})).lungs == "sslanomaly-lungs-x"
    with pytest.raises(ManifestFieldError, match="field lungs cannot be read"):
        Manifest.from_dict(dict(document, anatomy={"lungs": {"model_id": "x"}}))
    del document["calibration"]["normal_scores"]
    with pytest.raises(ManifestFieldError, match="field calibration cannot be read"):
        Manifest.from_dict(document)
    del document["encoder"]
    with pytest.raises(ManifestFieldError, match="field encoder is missing"):
        Manifest.from_dict(document)


def test_the_sides_rule_is_the_manifests_or_the_old_one():
    from SSLAnomalyLib.core.model.scoring import SIDES_FROM, SidesRule

    document = load("pediatric").manifest.to_dict()
    for key in ("sides_offset", "sides_from"):
        document["scoring"].pop(key, None)
    assert Manifest.from_dict(document).sides == SidesRule(2.0, None)  # models before round 8: scored as fitted
    document["scoring"].update(SidesRule.fitted(0.0).to_dict())
    assert Manifest.from_dict(document).sides == SidesRule(0.0, SIDES_FROM)  # zero is an offset, not a missing one
    document["scoring"]["sides_offset"] = "far"
    with pytest.raises(ManifestFieldError, match="field scoring cannot be read"):
        Manifest.from_dict(document)


def test_the_writer_puts_back_what_was_read(tmp_path):
    loaded = load("pediatric")
    folder = save(tmp_path / "m", loaded.encoder_state, loaded.arrays,
                  loaded.manifest.replaced(model_id="copy"), (loaded.path / CARD).read_text())
    again = load(folder).manifest
    assert again.model_id == "copy"
    ignore = ("model_id", "files", "manifest_sha256")
    assert {k: v for k, v in again.document.items() if k not in ignore} == \
        {k: v for k, v in loaded.manifest.document.items() if k not in ignore}
    assert np.array_equal(again.calibration.normal_scores, loaded.manifest.calibration.normal_scores)


def test_a_sealed_manifest_with_an_unreadable_calibration_is_refused_by_name(tmp_path):
    folder = resealed("adult", tmp_path / "m", lambda d: d["calibration"].update(normal_scores="high"))
    with pytest.raises(ModelError, match="manifest.json field calibration cannot be read"):
        load(folder)


@pytest.mark.parametrize("model_id", [None, 123, "", "  ", "two\nlines"])
def test_a_manifest_without_a_usable_model_id_is_refused_not_named_unknown(tmp_path, model_id):
    """Before: a manifest without model_id loaded as model "unknown" (and 123 as "123"), so its results,
    and a resumed batch's check of which model made them, named a model that does not exist."""
    def edit(document):
        document.pop("model_id")
        if model_id is not None:
            document["model_id"] = model_id

    with pytest.raises(ModelError, match="manifest.json field model_id (is missing|cannot be read)"):
        load(resealed("pediatric", tmp_path / "m", edit))


def test_the_card_says_when_the_dev_normals_also_set_the_threshold():
    """`train --val-normals` may count the dev normals in the thresholds: their share flagged is then
    in-sample, and the card says so (issue 24)."""
    from SSLAnomalyLib.core.model_files.model_card import evaluated_normals, model_card

    document = load("adult").manifest.to_dict()
    dev = evaluated_normals(document["measured"]["dev"]["command"])
    train_only = dict(document, data=dict(document["data"], calibration_normals="../shared/data/nih/train/normal"))
    both = dict(document, data=dict(document["data"], calibration_normals=f"../shared/data/nih/train/normal:./{dev}"))
    assert "in-sample" not in model_card(Manifest.from_dict(train_only))
    assert "these normals also set the threshold, so their share is in-sample" in model_card(Manifest.from_dict(both))
    from SSLAnomalyLib.cli.models import measured_lines  # and `sslanomaly models` says the same

    lines = {kind: dict(measured_lines(d["measured"], d["data"]["calibration_normals"])) for kind, d in
             (("train only", train_only), ("both", both))}
    assert "in-sample" in lines["both"]["dev"] and "in-sample" not in lines["train only"]["dev"]


@pytest.mark.parametrize("rule", ["rank", "quantile"])
def test_the_stated_thresholds_are_those_a_loaded_model_applies(rule):
    """A manifest stores the normals' scores to 6 decimals and the model loaded from it sets its thresholds on
    those; the thresholds stated beside them came from the unrounded scores and differed in the 7th decimal, so
    a score between the two had one verdict by the stated threshold and another by the applied one."""
    rng = np.random.default_rng(0)
    calibration = Calibration(rng.normal(size=200) + 1e-7 / 3, rng.normal(size=200) + 5, 0.07, rule)
    stated = json.loads(json.dumps(calibration.to_dict()))
    applied = Calibration.from_dict(stated)
    assert stated["threshold"] == applied.threshold and stated["pixel_threshold"] == applied.pixel_threshold
    assert abs(stated["threshold"] - calibration.threshold) < 1e-6


def test_the_card_names_the_normals_set_aside_as_the_files_are_named():
    """Before: the card's calibration line went through str.capitalize, which lowered every letter
    but the first: normals set aside as IM-0311-0001.jpeg were named im-0311-0001.jpeg, a file that
    does not exist where names are case-sensitive (calibrate's own line named them right)."""
    from SSLAnomalyLib.core.model_files.model_card import model_card

    document = load("adult").manifest.to_dict()
    names = [f"IM-{i:04d}-0001.jpeg" for i in range(len(document["calibration"]["set_aside_files"]))]
    edited = dict(document, calibration=dict(document["calibration"], set_aside_files=names))
    card = model_card(Manifest.from_dict(edited))
    assert f"({', '.join(names)}): likely abnormal" in card
    assert "Expected false-positive rate on new normals" in card


def test_the_card_does_not_claim_a_rate_its_normals_cannot_meet():
    """Before: at a rate below 1/(n + 1) the card said "Threshold ... at a 0.1 % false-positive rate" and
    "pixel threshold (the in-lung heatmap peak that 0.1 % of calibration normals reach)" beside "the
    0.1 % asked cannot be met": the thresholds were the highest normal's. It now says the rate the
    threshold was set for, and counts the peaks above the pixel threshold."""
    from SSLAnomalyLib.core.model_files.model_card import model_card

    adult = load("adult").manifest
    card = model_card(adult.replaced(calibration=adult.calibration.with_false_positive_rate(0.001)))
    assert "% of calibration normals reach" not in card and "at a 0.1 % false-positive rate" not in card
    assert "set for a 0.1 % false-positive rate" in card and "the 0.1 % asked cannot be met" in card
    assert "0 of the 256 calibration normals' peaks are above it" in card
    assert "16 of the 256 calibration normals' peaks are above it" in model_card(adult)  # 16 above the threshold too
