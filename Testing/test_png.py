"""The overlay's PNG writer: every pixel read back exactly by the readers a user has (Pillow, SimpleITK's
libpng), across the Up filter's wrap-around (a row darker than the one above), on odd sizes and a
single row; anything but rows x columns x 3 uint8 refused."""

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from SSLAnomalyLib.core.results.outputs import write_picture
from SSLAnomalyLib.core.results.png import png_bytes


@pytest.mark.parametrize("shape", [(1, 1, 3), (1, 7, 3), (333, 517, 3)])
def test_pixels_read_back_exactly(tmp_path, shape):
    picture = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    path = write_picture(picture, tmp_path / "a.overlay.png")
    with Image.open(path) as im:
        assert im.mode == "RGB" and im.size == (shape[1], shape[0])
        assert np.array_equal(np.asarray(im), picture)
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(path))), picture)
    assert [p.name for p in tmp_path.iterdir()] == ["a.overlay.png"]  # no temporary left beside it


def test_smooth_picture_compresses():
    ramp = np.broadcast_to(np.linspace(0, 255, 400).astype(np.uint8)[:, None, None], (400, 300, 3))
    assert len(png_bytes(ramp)) < ramp.nbytes / 20


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 4), np.uint8),
                                 np.zeros((4, 4, 3), np.float32)])
def test_other_arrays_refused(bad):
    with pytest.raises(ValueError, match="rows x columns x 3 uint8"):
        png_bytes(bad)
