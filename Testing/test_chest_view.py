"""What a DICOM's header says about the view: a modality that is no X-ray projection is refused
naming the file and the modality; another X-ray modality, a lateral or oblique view, rows running
front to back, another body part are read with a warning; a frontal chest radiograph without one.
Such an image is left out of normals and of an evaluation's figures, named with its reason. Small DX files written here with one attribute changed."""

from pathlib import Path

import numpy as np
import pytest

from messy_corpus import write_dicom, write_edited
from SSLAnomalyLib.core.detection.detector import AnomalyDetector
from SSLAnomalyLib.core.files.errors import ReadError
from SSLAnomalyLib.core.reading import images
from SSLAnomalyLib.core.reading.images import read_radiograph
from SSLAnomalyLib.core.reading.shrink import shrink_if_large
from SSLAnomalyLib.evaluation.evaluate import score_folder
from SSLAnomalyLib.training.feature_cache import normal_image

PIXELS = np.random.default_rng(0).integers(0, 4096, (64, 48))


@pytest.mark.parametrize("modality", ["CT", "MR", "US", "NM", "PT", "XC"])
def test_a_modality_that_is_no_xray_projection_is_refused_naming_the_file(tmp_path, modality):
    path = write_dicom(tmp_path / f"{modality}.dcm", PIXELS, modality=modality)
    with pytest.raises(ReadError) as refused:
        read_radiograph(path)
    assert refused.value.path == str(path)
    assert f"modality {modality} (" in refused.value.reason and "is not a radiograph" in refused.value.reason


@pytest.mark.parametrize("modality", ["MG", "XA", "RF"])
def test_another_xray_modality_is_read_with_a_warning(tmp_path, modality):
    image = read_radiograph(write_dicom(tmp_path / f"{modality}.dcm", PIXELS, modality=modality))
    assert any(f"modality {modality} is not a radiograph" in w for w in image.warnings)


@pytest.mark.parametrize("key, value, expect", [
    ("ViewPosition", "LL", "ViewPosition LL is not a frontal"), ("ViewPosition", "RL", "ViewPosition RL is not"),
    ("ViewPosition", "LATERAL", "ViewPosition LATERAL is not"), ("ViewPosition", "RLO", "ViewPosition RLO is not"),
    ("PatientOrientation", ["A", "F"], "PatientOrientation A\\F runs front to back"),
    ("PatientOrientation", ["F", "P"], "PatientOrientation F\\P runs front to back"),
    ("BodyPartExamined", "HAND", "BodyPartExamined HAND is not the chest"),
    ("BodyPartExamined", "SKULL", "BodyPartExamined SKULL is not the chest"),
    ("BodyPartExamined", "ABDOMEN", "BodyPartExamined ABDOMEN is not the chest")])
def test_a_header_that_says_no_frontal_chest_view_is_warned(tmp_path, key, value, expect):
    image = read_radiograph(write_edited(tmp_path / "view.dcm", PIXELS, lambda ds: setattr(ds, key, value)))
    assert [w for w in image.warnings if expect in w and "frontal chest radiographs" in w], image.warnings


@pytest.mark.parametrize("modality", ["DX", "CR", "OT"])
def test_a_frontal_chest_radiograph_is_read_without_a_view_warning(tmp_path, modality):
    def frontal_chest(ds):
        ds.ViewPosition, ds.BodyPartExamined, ds.PatientOrientation = "AP SUPINE", "CHEST", ["L", "F"]

    image = read_radiograph(write_edited(tmp_path / f"{modality}.dcm", PIXELS, frontal_chest, modality=modality))
    assert not any("frontal chest radiographs" in w or "not a radiograph" in w for w in image.warnings)


def lateral(path):
    return write_edited(path, PIXELS, lambda ds: setattr(ds, "ViewPosition", "LL"))


def test_a_lateral_is_left_out_of_the_normals_naming_the_file_and_why(tmp_path):
    """train, calibrate and reference-stats read their normals with normal_image."""
    path = lateral(tmp_path / "lateral.dcm")
    with pytest.raises(ReadError) as refused:
        normal_image(path)
    assert refused.value.path == str(path)
    assert "ViewPosition LL is not a frontal (PA or AP) view: not a frontal chest radiograph" in refused.value.reason
    assert normal_image(write_dicom(tmp_path / "frontal.dcm", PIXELS)).shape == (1, 64, 48)


def test_a_lateral_read_reduced_is_left_out_all_the_same(tmp_path, monkeypatch):
    """A radiograph over MAX_SIDE is read block-averaged (shrink.py): what its header said goes with it."""
    monkeypatch.setattr(images, "shrink_if_large", lambda image: shrink_if_large(image, max_side=32))
    with pytest.raises(ReadError, match="ViewPosition LL"):
        normal_image(lateral(tmp_path / "lateral.dcm"))


def test_evaluate_leaves_a_lateral_out_of_its_figures_with_the_reason(tmp_path):
    write_dicom(tmp_path / "frontal.dcm", PIXELS)
    lateral(tmp_path / "lateral.dcm")
    rows, errors = score_folder(AnomalyDetector.load("pediatric", device="cpu"), tmp_path, progress=False)
    assert [Path(r["file"]).name for r in rows] == ["frontal.dcm"]
    assert errors == [f"{tmp_path / 'lateral.dcm'}: DICOM ViewPosition LL is not a frontal (PA or AP) view: not a "
                      "frontal chest radiograph"]
