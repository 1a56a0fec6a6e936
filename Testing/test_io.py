"""Reading real radiographs in every supported format, with geometry."""

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from conftest import data_dir
from messy_corpus import write_dicom as write_dx
from SSLAnomalyLib.core.io import ReadError, read_radiograph, write_image


@pytest.fixture(scope="module")
def real_gray():
    """A real full-resolution radiograph as a 2D uint8 array."""
    f = sorted(data_dir("kermany_fullres", "normal").iterdir())[0]
    return np.asarray(Image.open(f).convert("L"))


def test_dicom_monochrome1_and_2_read_alike_with_spacing(tmp_path, real_gray):
    v = (real_gray.astype(np.uint16) * 16)
    m2 = read_radiograph(write_dx(tmp_path / "m2.dcm", v, spacing=(0.14, 0.15)))
    m1 = read_radiograph(write_dx(tmp_path / "m1.dcm", 4095 - v, "MONOCHROME1"))
    assert m2.shape == (1, *real_gray.shape) and m2.is_2d
    assert m2.spacing[:2] == pytest.approx((0.15, 0.14))  # (column spacing, row spacing)
    # MONOCHROME1 is inverted on reading: same image up to a constant offset
    diff = m1.pixels.astype(np.float64) - m2.pixels
    assert np.ptp(diff) < 1e-3
    assert np.corrcoef(m1.pixels.ravel(), m2.pixels.ravel())[0, 1] > 0.999


def test_16bit_and_rgb_png(tmp_path, real_gray):
    g16 = real_gray.astype(np.uint16) * 257
    Image.fromarray(g16).save(tmp_path / "g16.png")
    Image.fromarray(np.stack([real_gray] * 3, -1)).save(tmp_path / "rgb.png")
    Image.fromarray(np.dstack([real_gray] * 3 + [np.full_like(real_gray, 255)])).save(tmp_path / "rgba.png")
    a = read_radiograph(tmp_path / "g16.png")
    b = read_radiograph(tmp_path / "rgb.png")
    c = read_radiograph(tmp_path / "rgba.png")
    assert a.pixels.max() > 255  # 16-bit range kept
    assert np.array_equal(b.pixels[0], real_gray) and np.array_equal(c.pixels[0], real_gray)
    assert any("spacing" in w for w in a.warnings)


def test_nrrd_geometry_round_trip(tmp_path, real_gray):
    img = sitk.GetImageFromArray(real_gray[None].astype(np.int16))
    img.SetSpacing((0.2, 0.3, 2.0))
    img.SetOrigin((10.0, -5.0, 3.0))
    img.SetDirection((0, 1, 0, -1, 0, 0, 0, 0, 1))
    sitk.WriteImage(img, str(tmp_path / "v.nrrd"))
    r = read_radiograph(tmp_path / "v.nrrd")
    assert not r.is_2d and r.spacing == (0.2, 0.3, 2.0) and r.origin == (10.0, -5.0, 3.0)
    write_image(r.with_pixels(r.pixels.astype(np.float32)), tmp_path / "back.nrrd")
    back = sitk.ReadImage(str(tmp_path / "back.nrrd"))
    assert back.GetSpacing() == img.GetSpacing() and back.GetDirection() == img.GetDirection()


def test_unreadable_file_names_file_and_reason(tmp_path):
    bad = tmp_path / "broken.jpeg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    with pytest.raises(ReadError) as e:
        read_radiograph(bad)
    assert "broken.jpeg" in str(e.value) and e.value.reason
