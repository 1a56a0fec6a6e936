"""Phantoms are drawn on the radiograph as viewers show it: a NRRD stored upside down (rows bottom-up,
as dcm2niix writes them) or with rows and columns swapped gets the effusion at the base of the lung and
the same scores and pointing as the upright PNG, not a mirrored phantom at the apex."""

import json
import subprocess

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from conftest import REPO, data_dir
from SSLAnomalyLib.core.detection.detector import AnomalyDetector
from SSLAnomalyLib.core.reading.images import read_radiograph
from SSLAnomalyLib.evaluation.phantom_evaluation import drawn_lungs, phantom_on, phantom_seed

SSLANOMALY = str(REPO / ".venv" / "bin" / "sslanomaly")
ROWS_BOTTOM_UP = (1.0, 0.0, 0.0, -1.0)  # LPS: the file's columns run toward anterior
SWAPPED = (0.0, 1.0, 1.0, 0.0)         # the file's rows run along x, its columns along y


def stored_as(upright: np.ndarray, direction: tuple, path) -> None:
    """`upright` written as a NRRD whose stored grid is shown as `upright` (reading/display.py)."""
    grid = upright.T if direction == SWAPPED else upright[::-1]
    image = sitk.GetImageFromArray(np.ascontiguousarray(grid))
    image.SetDirection(direction)
    sitk.WriteImage(image, str(path))


@pytest.fixture(scope="module")
def upright():
    normal = sorted(data_dir("nih", "val", "normal").iterdir())[0]
    return np.asarray(Image.open(normal).convert("L"), np.float32)


@pytest.mark.parametrize("direction", [ROWS_BOTTOM_UP, SWAPPED], ids=["rows bottom-up", "rows and columns swapped"])
def test_an_effusion_on_a_file_stored_against_its_display_lies_at_the_base(default_model, upright, direction,
                                                                           tmp_path):
    detector = AnomalyDetector.load(default_model)
    Image.fromarray(upright.astype(np.uint8)).save(tmp_path / "upright.png")
    stored_as(upright, direction, tmp_path / "stored.nrrd")
    drawn = {}
    for name in ("upright.png", "stored.nrrd"):
        image = read_radiograph(tmp_path / name)
        altered, phantom = phantom_on(image, "effusion", "large", drawn_lungs(detector, image),
                                      phantom_seed(0, "effusion", "large", 0))
        assert phantom.region_mask.shape == altered.shape[1:]  # on the file's grid
        assert not np.array_equal(altered.pixels, image.pixels)
        drawn[name] = altered.shown(0), altered.display.shown(phantom.region_mask)
    (png, png_region), (nrrd, nrrd_region) = drawn.values()
    assert np.array_equal(png_region, nrrd_region)  # as shown, the same place
    assert np.abs(png - nrrd).max() < 1e-3
    rows = np.flatnonzero(png_region.any(axis=1))
    assert rows.mean() > png_region.shape[0] / 2  # the base of the lung, not the apex


def test_evaluate_phantoms_scores_a_file_stored_upside_down_as_the_upright_one(default_model, upright, tmp_path):
    for name, write in (("upright", lambda f: Image.fromarray(upright.astype(np.uint8)).save(f / "a.png")),
                        ("stored", lambda f: stored_as(upright, ROWS_BOTTOM_UP, f / "a.nrrd"))):
        (tmp_path / name).mkdir()
        write(tmp_path / name)
        subprocess.run([SSLANOMALY, "evaluate", "--model", default_model, "--normal", str(tmp_path / name),
                        "--phantoms", "effusion,cardiomegaly", "--json", str(tmp_path / f"{name}.json"),
                        "--quiet"], check=True, capture_output=True)
    upright_kinds, stored_kinds = (json.loads((tmp_path / f"{n}.json").read_text())["kinds"]
                                   for n in ("upright", "stored"))
    for kind, sizes in upright_kinds.items():
        for size, figures in sizes.items():
            other = stored_kinds[kind][size]
            assert other["pointing_game"] == figures["pointing_game"], (kind, size)
            assert other["mean_score"] == pytest.approx(figures["mean_score"], abs=0.02), (kind, size)
