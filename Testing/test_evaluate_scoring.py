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
