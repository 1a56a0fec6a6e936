"""Cross-fitted thresholds on generated radiographs: every normal is in the reference, and the
threshold set on out-of-fold scores flags new normals at the rate it states; thresholds set on
the same normals scored by the reference that holds them would flag far more."""

import numpy as np
import pytest
from PIL import Image

from SSLAnomalyLib.core.model.calibration import Calibration


def generated(folder, seeds):
    from SSLAnomalyLib.core.reading.sample import synthetic_radiograph

    folder.mkdir()
    for s in seeds:
        Image.fromarray(synthetic_radiograph(256, 224, seed=s)).save(folder / f"{s}.png")
    return folder


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    from SSLAnomalyLib.core.detection.detector import AnomalyDetector
    from SSLAnomalyLib.training.crossfit import cross_fit

    root = tmp_path_factory.mktemp("crossfit")
    normals, new = generated(root / "normals", range(100)), generated(root / "new", range(1000, 1100))
    base = AnomalyDetector.load("pediatric", device="cpu")
    fit = cross_fit(base.scorer.net, base.scorer.config, "cpu", normals, standardise_positions=True)
    return base, fit, new


def scores_of(scorer, folder):
    from SSLAnomalyLib.core.detection.detector import AnomalyDetector
    from SSLAnomalyLib.core.reading.images import list_inputs, read_radiograph

    prepare = AnomalyDetector(scorer, None, None, "test").prepare
    prepared = [prepare(read_radiograph(f))[0] for f in list_inputs([folder])]
    return scorer.score(np.stack([p.image01 for p in prepared]), np.stack([p.lung for p in prepared]))


def test_out_of_fold_threshold_flags_new_normals_at_the_stated_rate(fitted):
    base, fit, new = fitted
    assert fit.encoded.n_normals == 100 and fit.stats.exact and len(fit.scores) == 100
    assert sorted(fit.names) == sorted(f"{s}.png" for s in range(100))  # each score named by its file
    calibration = Calibration(fit.scores, fit.peaks, 0.1, rule="rank")
    expected = calibration.expected_fpr()
    new_scores = scores_of(fit.scorer, new)
    flagged = np.mean(new_scores.score > calibration.threshold)
    pixel_flagged = np.mean(new_scores.peaks > calibration.pixel_threshold)
    assert expected.low <= flagged <= expected.high, (flagged, expected)
    assert expected.low <= pixel_flagged <= expected.high, (pixel_flagged, expected)
    # the same normals scored by the final reference, which holds them, would set a lower threshold
    in_sample = scores_of(fit.scorer, new.parent / "normals")
    naive = Calibration(in_sample.score, in_sample.peaks, 0.1, rule="rank")
    assert np.mean(new_scores.score > naive.threshold) > expected.high


def test_normals_far_beyond_the_others_are_set_aside_and_leave_the_thresholds_as_the_clean_normals_set_them(fitted):
    _, fit, _ = fitted
    clean = Calibration.of_normals(fit.scores, fit.peaks, 0.1)
    plain = Calibration(fit.scores, fit.peaks, 0.1, rule="rank")
    assert len(clean.set_aside) == 0  # generated normals are clean: nothing is set aside, nothing moves
    assert (clean.threshold, clean.pixel_threshold) == (plain.threshold, plain.pixel_threshold)
    assert clean.far_beyond_normals(1e9) and not clean.far_beyond_normals(clean.threshold)
    # eight mislabelled "normals" (a white-out scores far beyond every normal) among the hundred
    q1, q3 = np.quantile(fit.scores, [0.25, 0.75])
    outliers = q3 + 5 * (q3 - q1) + np.arange(8.0)
    peaks = np.r_[fit.peaks, fit.peaks.max() * 3 + np.arange(8.0)]
    names = list(fit.names) + [f"whiteout{i}.png" for i in range(8)]
    mixed = Calibration.of_normals(np.r_[fit.scores, outliers], peaks, 0.1, names)
    assert mixed.set_aside_files == [f"whiteout{i}.png" for i in reversed(range(8))]  # highest score first
    np.testing.assert_allclose(mixed.set_aside, outliers)
    assert (mixed.threshold, mixed.pixel_threshold) == (clean.threshold, clean.pixel_threshold)
    counted = Calibration(np.r_[fit.scores, outliers], peaks, 0.1, rule="rank")
    assert counted.threshold > clean.threshold  # counted, they would raise the threshold above clean normals' rate
    again = Calibration.from_dict(mixed.to_dict())
    np.testing.assert_allclose(again.set_aside, outliers, atol=1e-5)
    assert again.threshold == pytest.approx(mixed.threshold, abs=1e-5)
    assert again.set_aside_files == mixed.set_aside_files
    assert "8 normal(s) set aside" in mixed.text() and "whiteout7.png, whiteout6.png" in mixed.text()
    # the set-aside normals do not widen the normal range: what scores like them is far beyond it
    assert mixed.far_beyond_normals(float(outliers[0])) and clean.far_beyond_normals(float(outliers[0]))
