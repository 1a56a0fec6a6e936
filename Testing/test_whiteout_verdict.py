"""A hemithorax white-out is ABNORMAL for both bundled models, with the heatmap maximum in the opaque
field and a finding there: what a reader sees at a glance (issue 23)."""

import numpy as np
import pytest

from conftest import data_dir
from SSLAnomalyLib.core.detection.detector import AnomalyDetector
from SSLAnomalyLib.core.reading.images import list_inputs, read_radiograph
from SSLAnomalyLib.evaluation.phantom_evaluation import drawn_lungs, phantom_on, phantom_seed


def whiteout(detector, image, index: int):
    drawn, phantom = phantom_on(image, "whiteout", "hemithorax", drawn_lungs(detector, image),
                                phantom_seed(0, "whiteout", "hemithorax", index))
    return drawn, phantom.region_mask


@pytest.mark.parametrize("model, folder, index", [("pediatric", ("kermany", "val", "normal"), 0),
                                                   ("adult", ("nih", "val", "normal"), 0)])
def test_a_whited_out_lung_is_abnormal_and_pointed_at(model, folder, index):
    detector = AnomalyDetector.load(model)
    normal = read_radiograph(list_inputs([str(data_dir(*folder))])[index])
    assert not detector.detect(normal).abnormal
    image, region = whiteout(detector, normal, index)
    result = detector.detect(image)
    heat = result.heatmap.pixels[0]
    assert result.abnormal and result.score > detector.calibration.threshold
    assert region.ravel()[np.argmax(heat)]  # the heatmap's maximum lies in the opaque field
    i0, j0, i1, j1 = result.findings[0].bbox_ijk
    assert region[j0:j1 + 1, i0:i1 + 1].mean() > 0.3  # the top finding's box is on the opaque field


def test_a_real_opaque_hemithorax_whose_lung_is_drawn_on_the_shoulder_is_abnormal_on_that_side():
    """00000506_013 (NIH, a portable AP film, left hemithorax opaque): the lung network draws its left
    lung field on the shoulder, away from where lungs lie; that field is replaced by the right one
    mirrored, so the opaque side is measured and the reader is pointed at it (it scored -0.66 before)."""
    detector = AnomalyDetector.load("adult")
    image = read_radiograph(data_dir("nih", "val", "pneumonia") / "00000506_013.png")
    fields = detector.prepare(image)[0].fields
    assert fields.source == "mirrored" and "image-right lung field" in fields.warning
    result = detector.detect(image)
    assert result.abnormal and fields.warning in result.warnings
    cols = image.shape[2]
    assert np.unravel_index(np.argmax(result.heatmap.pixels[0]), image.shape[1:])[1] > cols / 2  # the patient's left
    i0, _, i1, _ = result.findings[0].bbox_ijk
    assert (i0 + i1) / 2 > cols / 2
