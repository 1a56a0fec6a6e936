"""The fast tier: reading, detection, the command line's outputs and batches, calibration, training
and the Slicer glue, on generated radiographs and the bundled models only, so that it runs where
../shared/data is absent (SSLANOMALY_TEST_DATA=/nonexistent). Inputs, the batch, the calibrated
and the trained model are made once per session (synthetic_inputs.py)."""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import shutil

import jsonschema
import numpy as np
import pytest
from PIL import Image

from synthetic_inputs import (COLS, REPO, ROWS, loaded, lung_field, normals_folder, printed_threshold, radiograph,
                              read_heatmap, sslanomaly, whited_out, write_colour_png, write_dicom, write_jpeg,
                              write_nrrd, write_png, write_png16)
from SSLAnomalyLib.core.files.errors import PathError
from SSLAnomalyLib.core.reading.image import Radiograph
from SSLAnomalyLib.core.reading.images import read_radiograph
from SSLAnomalyLib.core.results.overlay import MIN_SIDE

SCHEMA = json.loads((REPO / "SSLAnomaly" / "Resources" / "Schemas" / "findings.schema.json").read_text())
NRRD_SPACING, NRRD_ORIGIN = (0.18, 0.25), (-12.5, 30.0)
BATCH_SPACING = 0.2  # --spacing of the batch: used by its PNG/JPEG inputs, never by its NRRD
CASES = ("a", "b", "c", "whiteout", "d")  # the batch's readable inputs, by result name


# --- inputs, made once ------------------------------------------------------------------------
@pytest.fixture(scope="session")
def files(tmp_path_factory):
    """One file per format, each of another "patient" (seed)."""
    root = tmp_path_factory.mktemp("formats")
    return {"png": write_png(root / "chest.png", radiograph(1)),
            "jpeg": write_jpeg(root / "chest.jpeg", radiograph(2)),
            "png16": write_png16(root / "chest16.png", radiograph(3)),
            "nrrd": write_nrrd(root / "chest.nrrd", radiograph(4), NRRD_SPACING, NRRD_ORIGIN),
            "dicom": write_dicom(root / "chest.dcm", radiograph(5), photometric="MONOCHROME2"),
            "dicom_m1": write_dicom(root / "chest_m1.dcm", radiograph(5), photometric="MONOCHROME1"),
            "colour": write_colour_png(root / "colour.png", radiograph(6)),
            "marked": write_colour_png(root / "marked.png", radiograph(6), mark=True)}


@pytest.fixture(scope="session")
def detector():
    return loaded("adult")


@pytest.fixture(scope="session")
def batch(tmp_path_factory):
    """`sslanomaly detect` on a folder (PNG, JPEG, NRRD, a white-out, an unreadable file) and one
    more file from another folder: (output folder, inputs by result name, the completed run)."""
    root = tmp_path_factory.mktemp("batch")
    src, other = root / "in", root / "other"
    src.mkdir(), other.mkdir()
    inputs = {"a": write_png(src / "a.png", radiograph(11)),
              "b": write_jpeg(src / "b.jpeg", radiograph(12)),
              "c": write_nrrd(src / "c.nrrd", radiograph(13), NRRD_SPACING, NRRD_ORIGIN),
              "whiteout": write_png(src / "whiteout.png", whited_out(radiograph(14))),
              "d": write_png(other / "d.png", radiograph(15))}
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n but then nothing of a picture")
    out = root / "out"
    r = sslanomaly("detect", "--model", "adult", "--device", "cpu", "--spacing", BATCH_SPACING, "--out", out,
                   src, inputs["d"], cwd=root)
    return out, inputs, r


@pytest.fixture(scope="session")
def normals(tmp_path_factory):
    """20 synthetic normals of a "site" (the fewest calibration takes)."""
    return normals_folder(tmp_path_factory.mktemp("site") / "normals", range(100, 120))


@pytest.fixture(scope="session")
def calibrated(normals):
    out = normals.parent / "calibrated"
    return out, sslanomaly("calibrate", "--model", "adult", "--normals", normals, "--out", out, "--quiet",
                           cwd=normals.parent)


@pytest.fixture(scope="session")
def calibrated_detector(calibrated):
    return loaded(calibrated[0])


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A model trained for a few seconds (at most 2 steps) on 16 synthetic normals."""
    root = tmp_path_factory.mktemp("train")
    train = normals_folder(root / "train_normals", range(200, 216))
    out = root / "site_model"
    return out, sslanomaly("train", "--normals", train, "--out", out, "--minutes", "0.05", "--max-steps", "2",
                           "--device", "cpu", "--seed", "0", cwd=root)


# --- reading ----------------------------------------------------------------------------------
def test_png_is_read_exactly_and_says_it_has_no_spacing(files):
    image = read_radiograph(files["png"])
    assert image.shape == (1, ROWS, COLS) and image.is_2d
    np.testing.assert_array_equal(image.pixels[0], radiograph(1))
    assert image.spacing[:2] == (1.0, 1.0) and any("no pixel spacing" in w for w in image.warnings)
    assert image.source == str(files["png"])


def test_jpeg_is_read_close_to_what_was_written(files):
    image = read_radiograph(files["jpeg"])
    assert image.shape == (1, ROWS, COLS)
    error = np.abs(image.pixels[0].astype(float) - radiograph(2).astype(float))
    assert error.mean() < 2.0 and np.corrcoef(image.pixels[0].ravel(), radiograph(2).ravel())[0, 1] > 0.99


def test_16bit_png_keeps_its_full_range(files):
    image = read_radiograph(files["png16"])
    np.testing.assert_array_equal(image.pixels[0], radiograph(3).astype(np.float32) * 257)
    assert image.pixels.max() > 255  # not squeezed to 8 bits


def test_nrrd_keeps_its_pixels_spacing_and_origin(files):
    image = read_radiograph(files["nrrd"])
    np.testing.assert_array_equal(image.pixels[0], radiograph(4).astype(np.int16) * 4)
    assert image.spacing == pytest.approx((*NRRD_SPACING, 1.0))
    assert image.origin == pytest.approx((*NRRD_ORIGIN, 0.0))
    assert not any("spacing" in w for w in image.warnings)


@pytest.mark.parametrize("kind", ["dicom", "dicom_m1"])
def test_dicom_gives_pixels_spacing_and_its_instance_as_identity(files, kind):
    import pydicom

    image = read_radiograph(files[kind])
    # MONOCHROME1 is inverted back (dense tissue bright): both read as the written image, up to an offset
    written = radiograph(5).astype(np.float32) * 16
    np.testing.assert_allclose(image.pixels[0] - image.pixels[0].min(), written - written.min())
    assert image.spacing == pytest.approx((0.15, 0.2, 1.0))  # PixelSpacing is (row, column): x is columns
    uid = pydicom.dcmread(files[kind], stop_before_pixels=True).SOPInstanceUID
    assert image.identity == f"dicom:{uid}"
    assert image.dicom["Modality"] == "DX" and not any("spacing" in w for w in image.warnings)


def test_colour_png_is_read_as_its_luminance_and_marks_are_warned_of(files):
    image = read_radiograph(files["colour"])
    assert image.shape == (1, ROWS, COLS)
    rgb = np.asarray(Image.open(files["colour"]), dtype=float)
    luma = rgb @ np.array([0.299, 0.587, 0.114])
    assert np.abs(image.pixels[0] - luma).max() <= 1.0
    assert all(np.abs(image.pixels[0] - rgb[..., c]).mean() > 2 for c in (0, 2))  # not the red or blue alone
    assert not any("colour annotations" in w for w in image.warnings)
    marked = read_radiograph(files["marked"])
    assert any("colour annotations" in w for w in marked.warnings)


@pytest.mark.parametrize("content, reason", [(b"\x89PNG\r\n\x1a\nthen garbage" * 3, "cannot decode"),
                                             (b"a text file named .png\n", "cannot decode: not a .png image"),
                                             (b"", "empty")])
def test_unreadable_file_is_a_path_error_naming_the_file(tmp_path, content, reason):
    path = tmp_path / "damaged.png"
    path.write_bytes(content)
    with pytest.raises(PathError) as caught:
        read_radiograph(path)
    assert caught.value.path == str(path) and str(path) in str(caught.value) and reason in caught.value.reason
    assert "BufferedReader" not in caught.value.reason  # the file, not the handle it was read through


# --- scoring and detection (Python API) --------------------------------------------------------
def test_score_is_finite_and_heatmap_and_lungs_lie_on_the_input_grid(detector, files):
    image = read_radiograph(files["nrrd"])
    result = detector.detect(image, lungs=True)
    assert np.isfinite(result.score) and all(np.isfinite(v) for v in result.components.values())
    heat = result.heatmap
    assert heat.shape == image.shape and np.isfinite(heat.pixels).all() and heat.pixels.max() > 0
    assert heat.spacing == image.spacing and heat.origin == image.origin
    np.testing.assert_array_equal(heat.direction, image.direction)
    lungs = result.lungs.pixels[0].astype(bool)
    assert set(np.unique(result.lungs.pixels)) <= {0, 1}
    drawn = lung_field(side="right") | lung_field(side="left")
    assert (lungs & drawn).sum() > 0.6 * lungs.sum()  # the lung fields found are the ones drawn
    assert result.image_id == image.identity and result.model_id == detector.model_id


def test_verdict_follows_score_against_threshold(detector):
    results = [detector.detect(Radiograph(px)) for px in (radiograph(21), radiograph(22), whited_out(radiograph(21)))]
    for result in results:
        assert result.threshold == detector.calibration.threshold
        assert result.abnormal == (result.score > result.threshold)
        assert 0 <= result.percentile <= 100
        if result.abnormal:
            assert result.findings  # every ABNORMAL image has a finding
        for f in result.findings:
            i0, j0, i1, j1 = f.bbox_ijk
            assert 0 <= i0 <= i1 < COLS and 0 <= j0 <= j1 < ROWS
    assert results[0].image_id != results[1].image_id
    assert detector.detect(Radiograph(radiograph(21))).score == results[0].score  # deterministic
    # the same image against the thresholds at 99.9 % and 0.1 % false positives: the verdict follows
    for fpr, expected in ((0.999, True), (0.001, False)):
        moved = copy.copy(detector)
        moved.calibration = detector.calibration.with_false_positive_rate(fpr)
        again = moved.detect(Radiograph(radiograph(21)))
        assert again.score == pytest.approx(results[0].score)
        assert again.threshold == moved.calibration.threshold
        assert again.abnormal is expected and again.abnormal == (again.score > again.threshold)


def test_a_whited_out_lung_scores_higher_and_is_pointed_at(detector):
    normal = radiograph(31)
    before = detector.detect(Radiograph(normal))
    after = detector.detect(Radiograph(whited_out(normal)))
    assert after.score > before.score + 1.0 and after.abnormal
    field = lung_field(side="right")
    heat = after.heatmap.pixels[0]
    assert field.ravel()[np.argmax(heat)]  # the heatmap's maximum lies in the opaque field
    i0, j0, i1, j1 = after.findings[0].bbox_ijk
    assert field[j0:j1 + 1, i0:i1 + 1].mean() > 0.3  # the top finding's box is on it
    assert after.percentile >= before.percentile


def test_the_sides_rule_sets_how_far_an_imbalance_raises_the_score(detector):
    """The image score is max(texture, sides - offset) with the model's offset, counted only beyond
    the rule's gate; the departing field takes heat only beyond SIDES_FROM deviations, whatever the offset."""
    from SSLAnomalyLib.core.model.scoring import COMPONENTS, SIDES_FROM, SidesRule

    prepared = detector.prepare(Radiograph(whited_out(radiograph(41))))
    x, lungs = np.stack([p.image01 for p in prepared]), np.stack([p.lung for p in prepared])
    scorer = copy.copy(detector.scorer)
    for rule in (SidesRule(0.0), SidesRule(1.0), SidesRule(2.0), SidesRule(5.0), SidesRule.fitted(0.0)):
        scorer.sides = rule
        s = scorer.score(x, lungs)
        texture = np.mean([s.standardised[c] for c in COMPONENTS], axis=0)
        assert s.score[0] == pytest.approx(max(texture[0], s.standardised["sides"][0] - rule.offset), abs=1e-6)
    sides = s.standardised["sides"][0]
    assert sides > SIDES_FROM  # a white-out is far beyond a normal's imbalance
    scorer.sides = SidesRule(0.0, gate=sides + 1)  # gated out: the texture score alone
    assert scorer.score(x, lungs).score[0] == pytest.approx(texture[0], abs=1e-6)
    scorer.sides = SidesRule(sides + 1)  # never decides: no heat from `sides`
    unheated = scorer.score(x, lungs)
    scorer.sides = SidesRule(0.0)
    heated = scorer.score(x, lungs)
    assert heated.peaks[0] > unheated.peaks[0] and (heated.grid_maps >= unheated.grid_maps).all()


def test_the_denser_lung_field_takes_the_sides_heat():
    """An opacity whitens one field and, through the per-image intensity window, darkens the other:
    the heat goes to the denser field against its normal, not to the one that departs most either way."""
    from SSLAnomalyLib.core.model.field_density import SideDensity, side_heat

    left, right = np.zeros((64, 64), bool), np.zeros((64, 64), bool)
    left[10:50, 5:28], right[10:50, 36:59] = True, True
    density = SideDensity(0.2, 0.6, left, right)
    for z_left, z_right, heated in ((-2.5, 1.0, right), (2.0, -3.0, left), (0.5, 0.5, left)):
        heat = side_heat(density, z_left, z_right, level=4.0)
        assert heat[heated].mean() > 3.0 and heat[~heated & (left | right)].max() < 0.5


def test_models_lists_the_bundled_models(tmp_path):
    r = sslanomaly("models", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "adult" in r.stdout and "pediatric" in r.stdout


def test_detect_writes_a_schema_valid_findings_document_per_case(batch, detector):
    out, inputs, _ = batch
    for name, path in inputs.items():
        document = json.loads((out / f"{name}.findings.json").read_text())
        jsonschema.validate(document, SCHEMA)
        assert document["input"] == str(path)
        assert document["model"] == detector.model_id
        assert document["threshold"] == pytest.approx(detector.calibration.threshold, abs=1e-6)
        assert document["abnormal"] == (document["score"] > document["threshold"])
    # the command line's result is the Python API's on the same file
    api = detector.detect(read_radiograph(inputs["a"]))
    document = json.loads((out / "a.findings.json").read_text())
    assert document["score"] == pytest.approx(api.score, abs=1e-5) and document["image_id"] == api.image_id
    assert json.loads((out / "whiteout.findings.json").read_text())["findings"]


def test_detect_writes_heatmap_and_overlay_on_each_inputs_grid(batch, detector):
    out, inputs, _ = batch
    for name in CASES:
        heat, values, scale = read_heatmap(out / f"{name}.heatmap.nrrd")
        assert heat.GetSize() == (COLS, ROWS) and np.isfinite(values).all()
        assert float(heat.GetMetaData("pixel_threshold")) == pytest.approx(detector.calibration.pixel_threshold, rel=1e-4)
        own = NRRD_SPACING if name == "c" else (BATCH_SPACING, BATCH_SPACING)  # NRRD keeps its own spacing
        assert heat.GetSpacing() == pytest.approx(own)
        overlay = Image.open(out / f"{name}.overlay.png")
        aspect = own[1] / own[0]  # drawn at its physical proportions (the NRRD's rows are 0.25 mm, columns 0.18)
        assert overlay.mode == "RGB" and overlay.size == (MIN_SIDE, round(ROWS * aspect * MIN_SIDE / COLS))  # enlarged
    heat, values, scale = read_heatmap(out / "c.heatmap.nrrd")
    assert heat.GetOrigin() == pytest.approx(NRRD_ORIGIN)
    api = detector.detect(read_radiograph(inputs["c"])).heatmap.pixels
    assert np.abs(values - api).max() <= scale  # the stored codes are the map, to one step


def test_worklist_has_one_row_per_result_highest_score_first(batch):
    out, inputs, _ = batch
    with open(out / "worklist.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["name"] for r in rows) == sorted(CASES)  # the unreadable input is left out
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True) and rows[0]["name"] == "whiteout"
    for row in rows:
        document = json.loads((out / f"{row['name']}.findings.json").read_text())
        assert row["input"] == str(inputs[row["name"]])
        assert float(row["score"]) == pytest.approx(document["score"], abs=1e-5)
        assert int(row["n_findings"]) == len(document["findings"])
        assert (row["abnormal"] == "true") == document["abnormal"]


def test_an_unreadable_input_is_logged_and_the_batch_carries_on(batch):
    out, inputs, r = batch
    assert r.returncode == 1, r.stderr
    assert "broken.png" in r.stderr and "Traceback" not in r.stderr
    failures = [json.loads(line) for line in (out / "failures.log").read_text().splitlines()]
    assert [f["input"].endswith("broken.png") for f in failures] == [True] and failures[0]["reason"]
    assert all((out / f"{name}.findings.json").exists() for name in CASES)
    assert "5 of 6 input(s)" in r.stdout
    index = {row["name"]: row["input"] for row in json.loads((out / "batch_index.json").read_text())}
    assert {name: index[name] for name in CASES} == {name: str(p) for name, p in inputs.items()}


def test_resume_skips_finished_cases_and_redoes_an_incomplete_one(batch, tmp_path):
    out, inputs, _ = batch
    resumed = tmp_path / "out"
    shutil.copytree(out, resumed)  # the session's batch folder stays as it was for the other tests
    written = {n: (resumed / f"{n}.findings.json").stat().st_mtime_ns for n in CASES}
    args = ("detect", "--model", "adult", "--device", "cpu", "--spacing", BATCH_SPACING, "--out", resumed, "--resume",
            inputs["a"].parent, inputs["d"])
    r = sslanomaly(*args, cwd=tmp_path)
    assert r.returncode == 1 and "(5 already done)" in r.stdout, r.stdout + r.stderr  # the broken file fails again
    assert {n: (resumed / f"{n}.findings.json").stat().st_mtime_ns for n in CASES} == written
    (resumed / "b.heatmap.nrrd").unlink()
    r = sslanomaly(*args, cwd=tmp_path)
    assert "(4 already done)" in r.stdout, r.stdout + r.stderr
    assert (resumed / "b.heatmap.nrrd").exists()
    assert (resumed / "a.findings.json").stat().st_mtime_ns == written["a"]
    with open(resumed / "worklist.csv", newline="") as f:
        assert sorted(row["name"] for row in csv.DictReader(f)) == sorted(CASES)  # kept cases listed too


# --- calibrate --------------------------------------------------------------------------------
def test_calibrate_writes_a_model_that_loads_with_its_own_threshold(calibrated, calibrated_detector, detector):
    out, r = calibrated
    assert r.returncode == 0, r.stderr
    assert "20 normals" in r.stdout and str(out) in r.stdout and "unstable" in r.stdout  # 20 x 5 % < 5
    model = calibrated_detector
    assert model.calibration.threshold == pytest.approx(printed_threshold(r), abs=1e-3)
    assert model.calibration.threshold != pytest.approx(detector.calibration.threshold, abs=1e-3)
    assert model.model_id != detector.model_id and model.model_id.startswith(detector.model_id)
    assert "Calibrated on site normals" in (out / "MODEL_CARD.md").read_text()
    assert not [p.name for p in out.parent.iterdir() if p.name.startswith(".")]  # no staging left beside it


def test_calibrated_model_fits_the_sites_normals_and_still_flags_a_white_out(calibrated_detector, detector):
    unseen = [radiograph(seed) for seed in range(300, 305)]  # new normals of the same "site"
    before = sum(detector.detect(Radiograph(px)).abnormal for px in unseen)
    after = [calibrated_detector.detect(Radiograph(px)) for px in unseen]
    assert sum(r.abnormal for r in after) <= 1 < before  # the bundled model takes this "site" for abnormal
    assert all(r.abnormal == (r.score > r.threshold) for r in after)
    white = calibrated_detector.detect(Radiograph(whited_out(unseen[0])))
    assert white.abnormal and white.findings and white.score > max(r.score for r in after)


def test_calibrate_never_writes_over_a_model_without_overwrite(calibrated, normals, tmp_path):
    out, first = calibrated
    target = tmp_path / "existing"
    shutil.copytree(out, target)
    before = (target / "manifest.json").read_bytes()
    args = ("calibrate", "--model", "adult", "--normals", normals, "--out", target, "--quiet", "--fpr", "0.2")
    r = sslanomaly(*args, cwd=tmp_path)
    assert r.returncode != 0 and str(target) in r.stderr and "--overwrite" in r.stderr
    assert (target / "manifest.json").read_bytes() == before
    r = sslanomaly(*args, "--overwrite", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (target / "manifest.json").read_bytes() != before
    assert printed_threshold(r) < printed_threshold(first)  # 20 % of the normals above it now, not 5 %
    listing = sorted(normals.iterdir())
    refused = sslanomaly("calibrate", "--model", "adult", "--normals", normals, "--out", normals, "--overwrite",
                         cwd=tmp_path)
    assert refused.returncode != 0 and str(normals) in refused.stderr
    assert sorted(normals.iterdir()) == listing  # a folder of other files: never, not even with --overwrite


# --- train ------------------------------------------------------------------------------------
def test_train_writes_a_loadable_model_folder_with_its_card(trained):
    out, r = trained
    assert r.returncode == 0, r.stderr
    assert {p.name for p in out.iterdir()} >= {"model.safetensors", "manifest.json", "MODEL_CARD.md"}
    assert not out.with_name(out.name + ".work").exists()  # checkpoints removed once the model is complete
    model = loaded(out)
    card = (out / "MODEL_CARD.md").read_text()
    assert model.model_id in card.splitlines()[0] and "train_normals" in card
    assert str(out.parent) not in card  # folders by base name, never a path of this machine
    manifest = json.loads((out / "manifest.json").read_text())
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((out / name).read_bytes()).hexdigest() == digest
    result = model.detect(Radiograph(radiograph(41)))
    assert np.isfinite(result.score) and result.heatmap.shape == (1, ROWS, COLS)
    assert result.abnormal == (result.score > model.calibration.threshold)


# --- the Slicer glue (slicer-core, headless) -------------------------------------------------
def test_slicer_logic_puts_heatmap_and_finding_rois_into_the_scene(tmp_path):
    slicer = pytest.importorskip("slicer")
    from slicer_cases import empty_scene, logic
    from SSLAnomalyLib.mrml.heatmap import heatmap_node
    from SSLAnomalyLib.mrml.volumes import ijk_to_ras_matrix

    empty_scene()
    lg = logic()
    volume = lg.loadVolume(write_png(tmp_path / "whiteout.png", whited_out(radiograph(51))))
    assert slicer.util.arrayFromVolume(volume).shape == (1, ROWS, COLS)
    result = lg.detect(volume, model="adult", device="cpu")
    heat = heatmap_node(volume)
    assert heat is not None and heat.GetClassName() == "vtkMRMLScalarVolumeNode"
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(heat), result.heatmap.pixels)
    np.testing.assert_allclose(ijk_to_ras_matrix(heat), ijk_to_ras_matrix(volume))  # on the input's grid
    rois = lg.findingNodes(volume)
    assert result.findings and len(rois) == len(result.findings)
    assert all(roi.GetClassName() == "vtkMRMLMarkupsROINode" for roi in rois)
    assert [f["id"] for f in lg.findings(volume)] == [f.id for f in result.findings]
    assert lg.caseResult(volume)["score"] == pytest.approx(result.score)
    assert lg.findingsTable(volume).GetNumberOfRows() == len(result.findings)
