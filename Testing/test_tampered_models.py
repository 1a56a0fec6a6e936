"""Model folders someone else made or damaged, loaded as detect, evaluate and calibrate load them:
whatever the manifest or the weights hold, the model is refused in one line naming the file and the
reason, or loads as what it says it is, never as a silently different model. Runs on copies of the
bundled models (tampered.py), without ../shared/data."""

import re
import shutil

import pytest
import torch

from SSLAnomalyLib.core.detection.detector import AnomalyDetector
from SSLAnomalyLib.core.model_files import registry
from SSLAnomalyLib.core.model_files.model_folder import MANIFEST, ModelError
from tampered import resealed


@pytest.mark.parametrize("number", ["1e999", "-1e400"])
def test_a_number_that_overflows_to_infinity_is_refused_in_one_line(tmp_path, number):
    """Before: json read 1e999 as inf, and the seal check died on it in a traceback ('Out of range
    float values are not JSON compliant')."""
    bad = shutil.copytree(registry.MODELS_DIR / "pediatric", tmp_path / "m")
    (bad / MANIFEST).write_text((bad / MANIFEST).read_text().replace("{", f'{{"zz": {number}, ', 1))
    with pytest.raises(ModelError, match=rf"manifest.json holds a non-finite number \({number}\); refusing"):
        AnomalyDetector.load(bad)


def test_a_whole_number_no_float_holds_is_refused_in_one_line(tmp_path):
    """Before: 10**400 as a calibration score of a sealed manifest failed as an OverflowError traceback,
    and 5000 digits as Python's 'Exceeds the limit (4300 digits) for integer string conversion'."""
    def huge_score(document):
        document["calibration"]["normal_scores"][0] = 10**400

    sealed = resealed("pediatric", tmp_path / "sealed", huge_score)
    with pytest.raises(ModelError, match=r"manifest.json holds a number too large for any field \(401 digits\)"):
        AnomalyDetector.load(sealed)
    long = shutil.copytree(registry.MODELS_DIR / "pediatric", tmp_path / "long")
    (long / MANIFEST).write_text((long / MANIFEST).read_text().replace("{", f'{{"zz": {"9" * 5000}, ', 1))
    with pytest.raises(ModelError, match=r"manifest.json holds a number too large for any field \(5000 digits\)"):
        AnomalyDetector.load(long)


@pytest.mark.parametrize("scores, peaks", [(0, 0), (0, None), (None, 0), (None, 3)])
def test_a_calibration_without_one_score_and_peak_per_normal_is_refused_on_loading(tmp_path, scores, peaks):
    """Before: empty calibration scores or peaks loaded, and every image then failed on its own with
    'IndexError: index -1 is out of bounds'; 3 peaks for 254 scores set the pixel threshold among 3."""
    def cut(document):
        calibration = document["calibration"]
        for name, keep in (("normal_scores", scores), ("normal_peaks", peaks)):
            calibration[name] = calibration[name][:keep]

    with pytest.raises(ModelError, match="field calibration cannot be read .*one score and one peak per calibration"):
        AnomalyDetector.load(resealed("pediatric", tmp_path / "m", cut))


@pytest.mark.parametrize("edit, reason", [
    (lambda s: s["component_stats"].pop("patch"), r"lacks \['patch'\]"),
    (lambda s: s["component_stats"].pop("peak"), r"lacks \['peak'\]"),  # needed beside `sides`
    (lambda s: s["component_stats"].update(bogus=[1.0, 1.0]), r"holds \['bogus'\], which no scorer knows"),
    (lambda s: s["component_stats"].pop("sides"), r"\[.*\] are not the components listed beside them"),
])
def test_component_statistics_that_do_not_standardise_what_the_model_scores_are_refused(tmp_path, edit, reason):
    """Before: without `patch` (or `peak`) every image failed on its own with a KeyError; without
    `sides` the model loaded and silently no longer scored one-sided white-outs; an unknown one was ignored."""
    bad = resealed("adult", tmp_path / "m", lambda d: edit(d["scoring"]))
    with pytest.raises(ModelError, match=f"manifest.json field scoring cannot be read .*component_stats {reason}"):
        AnomalyDetector.load(bad)


def _set(name, shape):
    return lambda tensors: tensors.__setitem__(name, torch.zeros(shape))


def _drop(*names):
    return lambda tensors: [tensors.pop(name) for name in names]


@pytest.mark.parametrize("model, edit, edit_tensors, reason", [
    ("pediatric", None, _set("reference.patch_means", (192, 16, 16)),
     r"reference.patch_means has shape \(192, 16, 16\), not the \(192, 32, 32\)"),
    ("pediatric", None, _set("reference.pooled_precision", (10, 10)),
     r"reference.pooled_precision has shape \(10, 10\)"),
    ("pediatric", None, _set("reference.lung_prior", (64, 64)), r"reference.lung_prior has shape \(64, 64\)"),
    ("pediatric", None, _drop("reference.lung_prior"), r"reference.lung_prior \(the training normals' mean lung "
                                                       r"field\) is missing"),
    ("pediatric", lambda d: d["encoder"].update(input_size=256), None, r"not the \(192, 64, 64\)"),
    ("pediatric", None, lambda t: t.update({"reference.patch_means": torch.zeros(100, 32, 32),
                                            "reference.acquisition_directions": torch.zeros(100, 8)}),
     "patch features do not fit its acquisition directions"),
    ("adult", None, _drop("reference.distance_mean", "reference.distance_std"),
     "says positions_standardised True, but reference.distance_mean and distance_std are missing"),
    ("adult", None, _drop("reference.distance_std"), "come together or not at all"),
    ("pediatric", None, lambda t: t.update({"reference.distance_mean": torch.ones(32, 32),
                                            "reference.distance_std": torch.ones(32, 32)}),
     "says positions_standardised False, but .* are there"),
])
def test_a_reference_that_does_not_fit_its_encoder_or_manifest_is_refused_on_loading(tmp_path, model, edit,
                                                                                     edit_tensors, reason):
    """Before: a reference of other shapes loaded, and every image then failed on its own with a
    broadcasting or matmul error (exit 1, no results); an adult model without its positions' normal
    distances loaded and silently scored raw distances (a normal scored 11.3 for 2.6); one without its lung
    prior loaded silently, its lung fields no longer checked against where lungs lie."""
    bad = resealed(model, tmp_path / "m", edit, edit_tensors)
    with pytest.raises(ModelError, match=f"model.safetensors does not fit its encoder or manifest: .*{reason}"):
        AnomalyDetector.load(bad)


@pytest.mark.parametrize("key, value", [("threshold", -5.0), ("pixel_threshold", 1e308), ("threshold", 1.0001)])
def test_a_stated_threshold_that_is_not_its_scores_is_refused_on_loading(tmp_path, key, value):
    """Before: a manifest's stated thresholds were never read back; detection set its own on the stored scores,
    so a threshold edited to -5 loaded without a word, shown by the card and `models` beside other verdicts."""
    def edit(document):
        document["calibration"][key] = value

    with pytest.raises(ModelError, match=f"field calibration cannot be read .*{key} {re.escape(str(value))} is not the"):
        AnomalyDetector.load(resealed("pediatric", tmp_path / "m", edit))
