"""The overlay PNG shows a radiograph as viewers show it, the findings' boxes on the heat beneath them:
a file stored against its display (rows bottom-up, as dcm2niix writes a NIfTI) is drawn upright, and
anisotropic pixels at the image's physical proportions."""

import numpy as np
import pytest
from PIL import Image

from slicer_cases import full_resolution_radiograph
from SSLAnomalyLib.core.detection.detector import AnomalyDetector
from SSLAnomalyLib.core.reading.image import Radiograph
from SSLAnomalyLib.core.results.outputs import write_case_outputs

ROWS_BOTTOM_UP = np.diag([1.0, -1.0, 1.0])
COLUMNS_TO_THE_RIGHT = np.diag([-1.0, 1.0, 1.0])


def overlay(detector, image: Radiograph, folder) -> np.ndarray:
    paths = write_case_outputs(detector.detect(image), image, folder, "case")
    return np.asarray(Image.open(paths["overlay"]), np.int16)


@pytest.mark.parametrize("flip, direction", [((0,), ROWS_BOTTOM_UP), ((1,), COLUMNS_TO_THE_RIGHT)])
def test_a_file_stored_flipped_is_drawn_as_shown(pediatric_model, tmp_path, flip, direction):
    """The overlay of a NIfTI/NRRD stored flipped was drawn as stored: the chest upside down (or
    mirrored) where Slicer and the model showed it upright. It is now the upright image's overlay."""
    detector = AnomalyDetector.load(pediatric_model)
    upright = np.asarray(Image.open(full_resolution_radiograph()).convert("L").resize((480, 360)), np.float32)
    shown = overlay(detector, Radiograph(upright[None]), tmp_path / "shown")
    stored = overlay(detector, Radiograph(np.flip(upright, flip)[None].copy(), direction=direction), tmp_path / "stored")
    assert shown.shape == stored.shape
    assert np.abs(stored - shown).mean() < 1.0  # the same picture, heat and boxes (rounding aside)


def test_an_anisotropic_image_is_drawn_at_its_physical_proportions(pediatric_model, tmp_path):
    """A file whose columns are twice as wide as its rows are high (0.6 x 0.3 mm) was drawn one picture
    pixel per file pixel: the chest squeezed to half its width, unlike any viewer. Every other column of
    an isotropic radiograph, so stored, now draws as that radiograph does."""
    detector = AnomalyDetector.load(pediatric_model)
    full = np.asarray(Image.open(full_resolution_radiograph()).convert("L").resize((480, 360)), np.float32)
    isotropic = overlay(detector, Radiograph(full[None], spacing=(0.3, 0.3, 1.0)), tmp_path / "iso")
    halved = overlay(detector, Radiograph(full[None, :, ::2].copy(), spacing=(0.6, 0.3, 1.0)), tmp_path / "aniso")
    assert halved.shape == isotropic.shape
    assert np.abs(halved - isotropic).mean() < 6.0  # the same chest, heat and boxes (resampling aside)
