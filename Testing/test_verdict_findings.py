"""The verdict and the findings agree by construction: an ABNORMAL image always carries a finding
(its focal regions, else one "diffuse" finding over the lung fields), and a finding on an image
within normal range is labelled as such; at every false-positive rate, and in the document too."""

import numpy as np
import pytest

from conftest import data_dir
from SSLAnomalyLib.core.detection.detector import AnomalyDetector
from SSLAnomalyLib.core.detection.regions import BELOW_VERDICT_LABEL, DIFFUSE_LABEL
from SSLAnomalyLib.core.reading.image import Radiograph
from SSLAnomalyLib.core.reading.images import list_inputs, read_radiograph
from SSLAnomalyLib.core.reading.sample import synthetic_radiograph


def check(result) -> None:
    if result.abnormal:
        assert result.findings, "an ABNORMAL result without a finding"
    else:
        assert all(f.label == BELOW_VERDICT_LABEL for f in result.findings)
    diffuse = [f for f in result.findings if f.extent == "diffuse"]
    assert not diffuse or (result.abnormal and len(result.findings) == 1 and diffuse[0].label == DIFFUSE_LABEL)
    assert [f.id for f in result.findings] == list(range(1, len(result.findings) + 1))


@pytest.mark.parametrize("model", ["adult", "pediatric"])
def test_generated_radiographs_agree_at_every_rate(model):
    detector = AnomalyDetector.load(model)
    images = [Radiograph(synthetic_radiograph(512, 448, seed)[None].astype(np.float32)) for seed in range(3)]
    calibration = detector.calibration
    seen = set()
    for fpr in (0.01, 0.05, 0.3, 0.9):
        detector.calibration = calibration.with_false_positive_rate(fpr)
        for image in images:
            result = detector.detect(image)
            check(result)
            seen.add((result.abnormal, bool(result.findings), any(f.extent == "diffuse" for f in result.findings)))
    assert (True, True, True) in seen or (True, True, False) in seen  # some verdicts were ABNORMAL


def test_a_diffuse_finding_covers_the_lung_fields_of_an_abnormal_image_without_focal_regions():
    detector = AnomalyDetector.load("pediatric")
    image = Radiograph(synthetic_radiograph(512, 448, 0)[None].astype(np.float32))
    detector.calibration = detector.calibration.with_false_positive_rate(0.9)  # ABNORMAL
    detector.calibration.normal_peaks = np.full_like(detector.calibration.normal_peaks, 1e9)  # no focal region
    result = detector.detect(image)
    assert result.abnormal and [f.extent for f in result.findings] == ["diffuse"]
    i0, j0, i1, j1 = result.findings[0].bbox_ijk
    assert (i1 - i0) > 0.3 * image.shape[2] and (j1 - j0) > 0.2 * image.shape[1]  # both lung fields, not a spot
    assert result.to_dict("x.png")["findings"][0]["extent"] == "diffuse"


def test_real_pneumonias_and_normals_agree_at_the_models_rate():
    normals = list_inputs([str(data_dir("kermany", "val", "normal"))])[:10]
    pneumonias = list_inputs([str(data_dir("kermany", "val", "pneumonia"))])[:10]
    detector = AnomalyDetector.load("pediatric")
    results = [detector.detect(read_radiograph(f)) for f in normals + pneumonias]
    for r in results:
        check(r)
    assert any(r.abnormal for r in results)


def test_the_slice_that_drives_an_abnormal_volume_carries_a_finding():
    """A volume whose score comes from a slice with no focal region, while another slice has one: its
    overlay drew the driving slice with no box under "ABNORMAL; 1 finding(s)", the one finding on a slice
    that alone is within normal range. The driving slice now gets its diffuse finding too."""
    folder = data_dir("nih", "val", "pneumonia")
    focal, diffuse_only = (read_radiograph(folder / f"{n}.png") for n in ("00000061_012", "00000165_001"))
    detector = AnomalyDetector.load("adult")
    alone = [detector.detect(r) for r in (focal, diffuse_only)]
    assert not alone[0].abnormal and [f.extent for f in alone[0].findings] == ["focal"]  # the case needs these
    assert alone[1].abnormal and [f.extent for f in alone[1].findings] == ["diffuse"]
    volume = Radiograph(np.concatenate([focal.pixels, diffuse_only.pixels]), spacing=(0.5, 0.5, 2.0), is_2d=False)
    result = detector.detect(volume)
    assert result.abnormal and int(np.argmax(result.slice_scores)) == 1
    assert sorted((f.slice_index, f.extent) for f in result.findings) == [(0, "focal"), (1, "diffuse")]
    assert result.findings[1].bbox_ijk == alone[1].findings[0].bbox_ijk
    assert [f.id for f in result.findings] == [1, 2]
