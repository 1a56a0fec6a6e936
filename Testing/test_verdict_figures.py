"""A score and its threshold, printed, compare as they do unrounded: on the overlay, in the Slicer panel
and in the findings JSON. At two decimals nih/val pneumonia 00001734_000 (score 1.074 against the adult
model's 1.06859) read "score 1.07 (threshold 1.07): ABNORMAL"."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import ImageDraw

from conftest import data_dir
from SSLAnomalyLib.core.results.figures import rounded_apart, score_texts
from SSLAnomalyLib.core.results.findings_json import findings_document, to_json
from SSLAnomalyLib.core.results.overlay import render_overlay


@pytest.mark.parametrize("score, threshold, texts", [
    (1.074006, 1.06859, ("1.074", "1.069")),   # ABNORMAL: looked equal at two decimals
    (1.065947, 1.06859, ("1.066", "1.069")),   # within normal range, looked equal too
    (1.06859, 1.06859, ("1.07", "1.07")),      # exactly at the threshold: equal, and not above it
    (2.5, 1.06859, ("2.50", "1.07")),          # far apart: two decimals as before
    (-0.004, 0.001, ("-0.004", "0.001")),
])
def test_printed_figures_compare_as_the_numbers(score, threshold, texts):
    assert score_texts(score, threshold) == texts


def test_the_json_keeps_a_score_just_above_its_threshold_above_it():
    threshold = 1.06859
    score = threshold + 3e-7  # 6 decimals made it the threshold itself, with "abnormal": true
    doc = json.loads(to_json(findings_document("x.png", "", score, threshold, True, 93.75, "m", 5.0, {}, [], [])))
    assert doc["score"] > doc["threshold"] == threshold
    assert rounded_apart(0.1234564, 0.9, 6)[0] == 0.123456  # 6 decimals wherever that is enough


def test_the_json_keeps_a_finding_just_above_the_pixel_threshold_above_it():
    """A finding's score (a float32 heatmap peak, decided above the pixel threshold) was written whole and the
    pixel threshold at 6 decimals, rounded up past it: the finding read as below its threshold, and a
    reader's sensitivity left at the threshold read as moved off it."""
    pixel_threshold = 6.25554351
    peak = float(np.float32(6.2555437))
    assert peak > pixel_threshold
    doc = json.loads(to_json(findings_document(
        "x.png", "", 2.0, 1.0, True, 99.0, "m", pixel_threshold, {}, [],
        [{"id": 1, "score": peak}, {"id": 2, "score": 9.0}], review={"sensitivity": pixel_threshold})))
    (close, far), written = doc["findings"], doc["pixel_threshold"]
    assert close["score"] > written == doc["review"]["sensitivity"] and far["score"] == 9.0
    assert abs(written - pixel_threshold) < 1e-6 and abs(close["score"] - peak) < 1e-6


def banner_text(result) -> str:
    drawn = []
    draw_text = ImageDraw.ImageDraw.text

    def record(self, xy, text, *args, **kwargs):
        drawn.append(text)
        return draw_text(self, xy, text, *args, **kwargs)

    ImageDraw.ImageDraw.text = record
    try:
        render_overlay(np.zeros((64, 64), np.float32), np.zeros((64, 64), np.float32), result)
    finally:
        ImageDraw.ImageDraw.text = draw_text
    return " ".join(drawn)


def test_the_overlay_of_a_real_case_at_the_edge_tells_score_from_threshold():
    from SSLAnomalyLib.core.detection.detector import AnomalyDetector
    from SSLAnomalyLib.core.reading.images import read_radiograph

    result = AnomalyDetector.load("adult").detect(read_radiograph(data_dir("nih", "val", "pneumonia") / "00001734_000.png"))
    assert result.abnormal and f"{result.score:.2f}" == f"{result.threshold:.2f}"  # the case needs this
    text = banner_text(result)
    assert f"score {result.score:.3f} (threshold {result.threshold:.3f}," in text and "ABNORMAL" in text
    below = SimpleNamespace(**{**vars(result), "score": 1.065947, "abnormal": False})
    assert "score 1.066 (threshold 1.069," in banner_text(below)


def test_the_slicer_panel_tells_score_from_threshold(tmp_path):
    from slicer_cases import empty_scene, logic

    empty_scene()
    lg = logic()
    lg.reviewFolder = tmp_path
    volume = lg.loadVolume(data_dir("nih", "val", "pneumonia") / "00001734_000.png")
    lg.detect(volume, model="adult")
    assert "Score 1.074 (" in lg.resultText(volume) and "vs threshold 1.069 " in lg.resultText(volume)


def test_the_slicer_panel_says_the_percentile_as_the_overlay_and_the_verdict_line(tmp_path):
    """The panel printed 93.75 as "94th" (the overlay and the verdict line: "93.8th") and a rank above every
    calibration normal as "100th" (">99.9th")."""
    from slicer_cases import empty_scene, logic

    empty_scene()
    lg = logic()
    lg.reviewFolder = tmp_path
    for name, shown in (("00001734_000", "(93.8th percentile"), ("00000506_015", "(>99.9th percentile")):
        volume = lg.loadVolume(data_dir("nih", "val", "pneumonia") / f"{name}.png")
        lg.detect(volume, model="adult")
        assert shown in lg.resultText(volume)
