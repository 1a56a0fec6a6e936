"""`sslanomaly calibrate` on real normals: the threshold moves so that the stated share of those
normals lies above it, and new normals of the same site are flagged at the rate it states; too few
images and a tampered model are refused with a clear message."""

import json
import os
import shutil
import subprocess

import numpy as np
import pytest

from conftest import REPO, data_dir

SSLANOMALY = str(REPO / ".venv" / "bin" / "sslanomaly")


def run(*args):
    return subprocess.run([SSLANOMALY, *map(str, args)], capture_output=True, text=True, cwd=REPO)


def linked(tmp_path, name, files):
    folder = tmp_path / name
    folder.mkdir()
    for f in files:
        (folder / f.name).symlink_to(f)
    return folder


def test_calibrate_puts_the_stated_share_of_site_normals_above_the_threshold(pediatric_model, tmp_path):
    from SSLAnomalyLib.core.detection.detector import AnomalyDetector
    from SSLAnomalyLib.evaluation.evaluate import score_folder

    normals = linked(tmp_path, "site", sorted(data_dir("rsna", "val", "normal").iterdir())[:40])
    out = tmp_path / "calibrated"
    r = run("calibrate", "--model", "pediatric", "--normals", normals, "--out", out, "--fpr", "0.1", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "expected false-positive rate on new normals" in r.stdout and "unstable" in r.stdout  # 40 x 0.1 < 5
    calibrated = AnomalyDetector.load(out)
    original = AnomalyDetector.load("pediatric")
    assert calibrated.model_id != original.model_id and calibrated.model_id.startswith(original.model_id)
    rows, errors = score_folder(calibrated, normals, progress=False)
    assert not errors and len(rows) == 40
    flagged = np.mean([r["abnormal"] for r in rows])
    # rank 37 of 40 out-of-fold scores: 3 above; the final standardisation moves them by a little
    assert abs(flagged - 0.1) <= 2 / 40
    before = np.mean([r["abnormal"] for r in score_folder(original, normals, progress=False)[0]])
    assert before > 0.5  # children's model on adults: most flagged before calibration
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["site_calibration"]["n_normals"] == 40
    assert manifest["population"]["label"] == "children"
    assert "Calibrated on site normals" in (out / "MODEL_CARD.md").read_text()


def test_two_calibrations_of_one_model_on_the_same_normals_at_two_rates_are_two_models(tmp_path):
    """A findings JSON names the model by its id: a calibration at another rate must not share it."""
    normals = linked(tmp_path, "site", sorted(data_dir("kermany", "val", "normal").iterdir())[:20])
    manifests = {}
    for fpr in ("0.05", "0.1"):
        out = tmp_path / f"calibrated-{fpr}"
        r = run("calibrate", "--model", "pediatric", "--normals", normals, "--out", out, "--fpr", fpr, "--quiet")
        assert r.returncode == 0, r.stderr
        manifests[fpr] = json.loads((out / "manifest.json").read_text())
    low, high = manifests["0.05"], manifests["0.1"]
    assert low["calibration"]["threshold"] > high["calibration"]["threshold"]
    assert low["model_id"] != high["model_id"]
    assert low["site_calibration"]["files_sha256_16"] == high["site_calibration"]["files_sha256_16"]


def test_a_rate_below_one_in_n_plus_one_is_said_to_be_unmet(tmp_path, capsys):
    """--fpr 0.001 on 20 normals sets the threshold at the highest of them, which a new normal exceeds at
    1/21 = 4.8 %: the run, the manifest and the card said "0.1 %" (the card "0 %"), with no word that
    the rate asked cannot be met on so few normals."""
    from SSLAnomalyLib.cli import main

    normals = linked(tmp_path, "site", sorted(data_dir("kermany", "val", "normal").iterdir())[:20])
    out = tmp_path / "calibrated"
    assert main(["calibrate", "--model", "pediatric", "--normals", str(normals), "--out", str(out), "--fpr", "0.001",
                 "--quiet"]) == 0
    said = "the 0.1 % asked cannot be met on 20 normals: the threshold is the highest of them, which a new normal " \
           "exceeds at 4.8 % (at least 999 normals are needed for 0.1 %)"
    assert said in capsys.readouterr().out
    calibration = json.loads((out / "manifest.json").read_text())["calibration"]
    assert calibration["threshold"] == max(calibration["normal_scores"]) and calibration["expected_fpr"]["unmet"]
    card = (out / "MODEL_CARD.md").read_text()
    assert "set for a 0.1 % false-positive rate" in card and said in " ".join(card.split())


def flagged_within_stated_rate(model_dir, new_normals):
    """Whether the model flags the new normals at a share inside the 90 % predictive interval that
    its stated false-positive rate (Beta(n + 1 - k, k)) implies for that many images."""
    from scipy.stats import betabinom

    from SSLAnomalyLib.core.detection.detector import AnomalyDetector
    from SSLAnomalyLib.evaluation.evaluate import score_folder

    detector = AnomalyDetector.load(model_dir)
    e = detector.calibration.expected_fpr()
    rows, _ = score_folder(detector, new_normals, progress=False)
    flagged = sum(r["abnormal"] for r in rows)
    k = e.n - e.above
    low, high = betabinom.ppf([0.05, 0.95], len(rows), e.n + 1 - k, k)
    return low <= flagged <= high, (flagged, len(rows), e)


def test_calibrated_threshold_flags_new_site_normals_at_the_stated_rate(tmp_path):
    """Calibrated on every other normal of a held-out folder (100 children), the model flags the
    other 100 at the rate it states (the adult folder's 30 + 30 are too few for a 5 % threshold: README)."""
    files = sorted(data_dir("kermany", "val", "normal").iterdir())
    half, rest = linked(tmp_path, "half", files[0::2]), linked(tmp_path, "rest", files[1::2])
    r = run("calibrate", "--model", "pediatric", "--normals", half, "--out", tmp_path / "m", "--quiet")
    assert r.returncode == 0, r.stderr
    ok, figures = flagged_within_stated_rate(tmp_path / "m", rest)
    assert ok, figures


def test_cross_fitted_refit_flags_new_site_normals_at_the_stated_rate(tmp_path):
    """The adult refit (`train --minutes 0`) on the site's 204 normals, thresholds on out-of-fold
    scores, flags the site's 60 validation normals at the rate it states."""
    r = run("train", "--normals", data_dir("nih", "train", "normal"), "--out", tmp_path / "refit", "--minutes", "0",
            "--start-from", "adult", "--quiet")
    assert r.returncode == 0, r.stderr
    ok, figures = flagged_within_stated_rate(tmp_path / "refit", data_dir("nih", "val", "normal"))
    assert ok, figures


def test_calibrate_refuses_too_few_normals(tmp_path):
    normals = linked(tmp_path, "few", sorted(data_dir("kermany", "val", "normal").iterdir())[:5])
    r = run("calibrate", "--model", "pediatric", "--normals", normals, "--out", tmp_path / "m", "--quiet")
    assert r.returncode == 2
    assert "at least 20" in r.stderr and str(normals) in r.stderr
    assert not (tmp_path / "m" / "manifest.json").exists()


def test_too_few_normals_named_in_latin1_are_named_as_the_card_names_them(tmp_path):
    """The refusal of too few normals printed a name that is not UTF-8 as a lone surrogate (caf\\udce9.jpeg),
    where the manifest, the card and every warning write it caf\\xe9.jpeg."""
    files = sorted(data_dir("kermany", "val", "normal").iterdir())
    normals = linked(tmp_path, "few", files[:5])
    shutil.copyfile(files[3], os.fsencode(normals) + b"/caf\xe9.jpeg")
    os.symlink(files[6], os.fsencode(normals) + b"/loin\xe9.jpeg")
    shutil.copyfile(files[6], normals / "zz.jpeg")
    r = run("calibrate", "--model", "pediatric", "--normals", normals, "--out", tmp_path / "m", "--quiet")
    assert r.returncode == 2 and "(2 copies of them left out)" in r.stderr, r.stderr
    assert f"left out: {normals}/caf\\xe9.jpeg: the same image as {normals}/{files[3].name}" in r.stderr
    assert f"the same image as {normals}/loin\\xe9.jpeg, counted once" in r.stderr
    assert "\\udce9" not in r.stderr


def test_copies_of_one_normal_count_once(tmp_path):
    """Twenty copies of one radiograph calibrated a model (each component's spread zero) that scored
    every other radiograph millions of deviations out and flagged it, at a stated 5 %: copies now
    count once, so alone they are refused, and beside distinct normals they change no threshold."""
    files = sorted(data_dir("kermany", "val", "normal").iterdir())[:20]
    copies = tmp_path / "copies"
    copies.mkdir()
    for i in range(20):
        shutil.copyfile(files[0], copies / f"copy{i:02d}.jpeg")
    r = run("calibrate", "--model", "pediatric", "--normals", copies, "--out", tmp_path / "bad", "--quiet")
    assert r.returncode == 2 and "1 distinct readable normal radiograph(s) (19 copies" in r.stderr, r.stderr
    assert not (tmp_path / "bad").exists()
    with_copies = linked(tmp_path, "with_copies", files)
    for i in range(5):
        shutil.copyfile(files[3], with_copies / f"again{i}.jpeg")
    manifests = []
    for normals in (linked(tmp_path, "distinct", files), with_copies):
        r = run("calibrate", "--model", "pediatric", "--normals", normals, "--out", tmp_path / f"{normals.name}_model",
                "--quiet")
        assert r.returncode == 0, r.stderr
        manifests.append(json.loads((tmp_path / f"{normals.name}_model" / "manifest.json").read_text()))
    assert [m["calibration"]["normal_scores"] for m in manifests[1:]] == [manifests[0]["calibration"]["normal_scores"]]
    assert manifests[1]["site_calibration"]["n_normals"] == 20
    assert sum("the same image as" in s for s in manifests[1]["site_calibration"]["skipped"]) == 5
    assert r.stderr.count("the same image as") == 5  # each named to the site


def test_the_card_counts_the_normals_given_used_and_left_out(tmp_path):
    """A calibrated model's card said nothing of the normals left out as unreadable or as copies (only
    the manifest's `skipped` named them): a site reading the card could not tell that some of its
    normals were never used. It now counts those given, scored and left out, naming the few."""
    files = sorted(data_dir("kermany", "val", "normal").iterdir())[:20]
    normals = linked(tmp_path, "site", files)
    for name in ("again0.jpeg", "again1.jpeg"):
        shutil.copyfile(files[3], normals / name)
    (normals / "broken.png").write_bytes(b"not an image")
    r = run("calibrate", "--model", "pediatric", "--normals", normals, "--out", tmp_path / "m", "--quiet")
    assert r.returncode == 0, r.stderr
    card = (tmp_path / "m" / "MODEL_CARD.md").read_text()
    assert ("Of the 23 files given, 20 were scored; left out: 1 unreadable (`broken.png`); 2 copies of an image "
            "given before (`again0.jpeg`, `again1.jpeg`).") in card
    assert str(tmp_path) not in card  # named by base name: the card travels to other sites
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())  # no --fpr: the site's own point at 5 %
    assert manifest["calibration"]["false_positive_rate"] == 0.05 and "for a 5 % false-positive rate" in card


def test_normals_named_in_latin1_are_calibrated_on_and_named_in_a_utf8_card(tmp_path):
    """A normal named in Latin-1 (b'loin\\xe9.jpeg') crashed calibrate as it hashed the file list, and a copy
    so named crashed it as it wrote the card naming it (UnicodeEncodeError on '\\udce9'). Both are now
    calibrated on or left out, and the card, valid UTF-8, names the copy as the manifest does (\\xe9)."""
    files = sorted(data_dir("kermany", "val", "normal").iterdir())
    normals = linked(tmp_path, "site", files[:20])
    os.symlink(files[20], os.fsencode(normals) + b"/loin\xe9.jpeg")
    shutil.copyfile(files[3], os.fsencode(normals) + b"/caf\xe9.jpeg")
    r = run("calibrate", "--model", "pediatric", "--normals", normals, "--out", tmp_path / "m", "--quiet")
    assert r.returncode == 0, r.stderr
    card = (tmp_path / "m" / "MODEL_CARD.md").read_bytes().decode("utf-8", "strict")
    assert "left out: 1 copies of an image given before (`caf\\xe9.jpeg`)." in card
    site = json.loads((tmp_path / "m" / "manifest.json").read_text())["site_calibration"]
    assert site["n_normals"] == 21 and site["left_out"]["copies"] == [f"{normals}/caf\\xe9.jpeg"]
    from SSLAnomalyLib.training.crossfit import digest
    from SSLAnomalyLib.training.fitting import NormalSet

    named = [os.fsdecode(b"loin\xe9.jpeg")]  # train hashes its normals' names as calibrate does
    assert NormalSet(np.zeros((1, 8, 8)), np.zeros((1, 8, 8), bool), named, []).digest() == digest(named)


@pytest.mark.parametrize("command", [["calibrate", "--model", "pediatric", "--out", "m"],
                                     ["reference-stats", "--model", "pediatric", "--out", "s.stats"]])
def test_a_normals_folder_that_does_not_exist_is_named_so(tmp_path, command):
    """Not '0 readable normals' (nor '1 image'): the missing folder was counted as one unreadable file."""
    r = run(*command[:-1], tmp_path / command[-1], "--normals", tmp_path / "no such", "--quiet")
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1] == f"error: {tmp_path / 'no such'}: no such folder"


def test_calibrate_refuses_a_tampered_model(pediatric_model, tmp_path):
    copy = tmp_path / "tampered"
    shutil.copytree(pediatric_model, copy)
    (copy / "MODEL_CARD.md").write_text("edited")
    normals = linked(tmp_path, "site", sorted(data_dir("kermany", "val", "normal").iterdir())[:25])
    r = run("calibrate", "--model", copy, "--normals", normals, "--out", tmp_path / "m", "--quiet")
    assert r.returncode == 2 and "SHA-256" in r.stderr


def test_drift_warning_fires_on_a_shifted_batch_and_not_on_a_calibration_like_one(tmp_path):
    """The adult model on 20 children is a shifted batch; on 20 new normals of the site it was
    calibrated at (NIH ChestX-ray14 validation normals) it is not."""
    children = linked(tmp_path, "children", sorted(data_dir("kermany", "val", "normal").iterdir())[:20])
    adults = linked(tmp_path, "adults", sorted(data_dir("nih", "val", "normal").iterdir())[:20])
    shifted = run("detect", "--model", "adult", "--out", tmp_path / "o1", "--quiet", children)
    assert shifted.returncode == 0, shifted.stderr
    assert shifted.stderr.count("scores far above the model's calibration normals") == 1
    for f in (tmp_path / "o1").glob("*.findings.json"):
        assert any("calibrate it on this site's normals" in w for w in json.loads(f.read_text())["warnings"])
    like = run("detect", "--model", "adult", "--out", tmp_path / "o2", "--quiet", adults)
    assert like.returncode == 0, like.stderr
    assert "calibration normals as a whole" not in like.stderr


@pytest.mark.parametrize("percentiles, fires", [([96.0] * 25, True), (list(np.linspace(1, 99, 25)), False),
                                                ([99.0] * 10, False)])
def test_drift_rule(percentiles, fires):
    from SSLAnomalyLib.core.results.drift import drift_warning

    assert (drift_warning(percentiles) is not None) == fires
