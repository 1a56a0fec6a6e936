"""`evaluate` carries on past an image the model gives no finite score, as it does past one it cannot
read: a NaN on one image ended the whole evaluation in a traceback, losing every other image's score."""

import numpy as np

from conftest import data_dir


def test_an_image_without_a_finite_score_is_an_error_of_its_own(pediatric_model):
    from SSLAnomalyLib.core.detection.detector import AnomalyDetector
    from SSLAnomalyLib.evaluation.evaluate import score_folder

    folder = data_dir("kermany_fullres", "normal")
    detector = AnomalyDetector.load(pediatric_model, device="cpu")
    broken = lambda image, i: image.with_pixels(np.full(image.shape, np.nan, np.float32)) if i == 0 else image
    rows, errors = score_folder(detector, folder, progress=False, transform=broken)
    n = len(list(folder.iterdir()))
    assert len(rows) == n - 1 and len(errors) == 1
    assert "is not a finite number" in errors[0] and sorted(folder.iterdir())[0].name in errors[0]


def test_phantoms_carry_on_past_an_image_without_a_finite_score(pediatric_model, tmp_path):
    """The phantom evaluation caught only read errors: a NaN on one normal (or on one phantom drawn on it)
    ended it in a traceback."""
    from SSLAnomalyLib.core.detection.detector import AnomalyDetector, NonFiniteScore
    from SSLAnomalyLib.evaluation.phantom_evaluation import evaluate_phantoms

    folder = tmp_path / "normal"
    folder.mkdir()
    files = sorted(data_dir("kermany", "val", "normal").iterdir())[:3]
    for f in files:
        (folder / f.name).symlink_to(f)

    class BrokenOnFirst(AnomalyDetector):
        def detect(self, image, prepared=None, lungs=False):
            if image.source.endswith(files[0].name):
                raise NonFiniteScore(f"the score of {image.source} is not a finite number")
            return super().detect(image, prepared, lungs)

    loaded = AnomalyDetector.load(pediatric_model, device="cpu")
    detector = BrokenOnFirst(loaded.scorer, loaded.calibration, loaded.lung_prior, loaded.model_id, loaded.manifest)
    result = evaluate_phantoms(detector, folder, ["nodule"], progress=False)
    assert result["n_normal"] == 2
    assert any(files[0].name in e and "not a finite number" in e for e in result["errors"])
