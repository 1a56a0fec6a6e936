"""How hospital DICOM files code their pixels and files, read as a viewer shows them: each reads as
the same radiograph written plainly does."""

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from PIL import Image
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info

from SSLAnomalyLib.core.model.preprocess import to_model_input
from SSLAnomalyLib.core.reading.images import ReadError, read_radiograph
from SSLAnomalyLib.core.results.dicom_export import read_source
from synthetic_inputs import dx_dataset, radiograph

BORDER = 32  # a collimation border on every side, as wide as detectors leave it


def bordered() -> tuple[np.ndarray, np.ndarray]:
    """A 12-bit radiograph with a black border, and the border's mask."""
    pixels = radiograph(3).astype(np.int32) * 16
    border = np.ones(pixels.shape, bool)
    border[BORDER:-BORDER, BORDER:-BORDER] = False
    pixels[border] = 0
    return pixels, border


def write(path, stored: np.ndarray, photometric: str = "MONOCHROME2", signed: bool = False, **attributes):
    ds = dx_dataset(path, "DX", "Coded^Pixels", "CODED-1")
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, int(signed)
    ds.PixelSpacing = [0.15, 0.15]
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    ds.PixelData = stored.astype(np.int16 if signed else np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def model_input(path) -> np.ndarray:
    return to_model_input(read_radiograph(path).shown(0), 128)


@pytest.mark.parametrize("case", ["signed, -32768", "MONOCHROME1, 0xFFFF", "range limit"])
def test_a_border_coded_as_pixel_padding_is_read_black_as_viewers_show_it(tmp_path, case):
    """A border coded with Pixel Padding Value (far outside the image's values, as the standard asks)
    once set the 1st percentile of the normalisation: the chest became a sliver of near-white grey."""
    pixels, border = bordered()
    plain = model_input(write(tmp_path / "plain.dcm", pixels))
    if case == "signed, -32768":
        coded = np.where(border, -32768, pixels - 2048)
        path = write(tmp_path / "padded.dcm", coded, signed=True, PixelPaddingValue=-32768)
    elif case == "MONOCHROME1, 0xFFFF":
        coded = np.where(border, 0xFFFF, 4095 - pixels)
        path = write(tmp_path / "padded.dcm", coded, "MONOCHROME1", PixelPaddingValue=0xFFFF)
    else:
        noise = np.arange(pixels.size).reshape(pixels.shape) % 5000  # a padding range, not one value
        coded = np.where(border, noise, pixels + 10000)
        path = write(tmp_path / "padded.dcm", coded, PixelPaddingValue=0, PixelPaddingRangeLimit=5000)
    assert np.abs(model_input(path) - plain).max() < 0.02


def bare(path, with_meta: bool) -> bytes:
    """The DICOM at `path` as old modalities and PACS exports write it: no preamble and "DICM",
    and, `with_meta` False, no file meta either (an implicit VR little endian data set alone)."""
    ds = pydicom.dcmread(path)
    if with_meta:
        stream = DicomBytesIO()
        write_file_meta_info(stream, ds.file_meta)
        head = stream.getvalue()
    else:
        head = b""
    stream = DicomBytesIO()
    stream.is_little_endian, stream.is_implicit_VR = True, not with_meta
    write_dataset(stream, ds)
    return head + stream.getvalue()


@pytest.mark.parametrize("with_meta", [True, False])
def test_a_bare_data_set_without_preamble_is_read_and_exported(tmp_path, with_meta):
    """A DICOM without its 128-byte preamble and "DICM" was refused as 'not a DICOM file (no DICM
    marker or file meta information)', even with its file meta; pydicom reads it when forced."""
    pixels, _ = bordered()
    full = write(tmp_path / "full.dcm", pixels)
    path = tmp_path / "bare.dcm"
    path.write_bytes(bare(full, with_meta))
    img = read_radiograph(path)
    np.testing.assert_array_equal(img.pixels, read_radiograph(full).pixels)
    assert img.spacing[:2] == (0.15, 0.15)
    source = read_source(path, instance_uids=[img.dicom["SOPInstanceUID"]])
    assert source.SOPInstanceUID == pydicom.dcmread(full).SOPInstanceUID
    assert hd.sr.SourceImageForRegion.from_source_image(source).referenced_sop_instance_uid == source.SOPInstanceUID


def test_a_file_named_dcm_that_begins_like_no_dicom_is_still_refused(tmp_path):
    path = tmp_path / "notes.dcm"
    path.write_bytes(b"\x08\x01 scanned report, not an image" * 10)
    with pytest.raises(ReadError, match="not a DICOM file"):
        read_radiograph(path)


def test_a_jpeg_named_dcm_is_read_as_the_jpeg_it_is(tmp_path):
    """A JPEG saved as IM-0001.dcm was refused as 'not a DICOM file'; viewers show it by its content."""
    pixels = radiograph(4)
    Image.fromarray(pixels).save(tmp_path / "plain.jpg", quality=95)
    (tmp_path / "IM-0001.dcm").write_bytes((tmp_path / "plain.jpg").read_bytes())
    img = read_radiograph(tmp_path / "IM-0001.dcm")
    np.testing.assert_array_equal(img.pixels, read_radiograph(tmp_path / "plain.jpg").pixels)
    assert img.dicom is None
    assert any("is a JPEG image named .dcm" in w for w in img.warnings)


@pytest.mark.parametrize("channels", [3, 4])
def test_a_16_bit_colour_png_keeps_its_16_bits(tmp_path, channels):
    """A 16-bit RGB(A) PNG of 12-bit values was cut by Pillow to its top 8 bits: 16 grey levels."""
    values = radiograph(5).astype(np.uint16) * 16
    stack = [values] * 3 + [np.full(values.shape, 65535, np.uint16)] * (channels - 3)
    sitk.WriteImage(sitk.GetImageFromArray(np.stack(stack, -1), isVector=True), str(tmp_path / "wide.png"))
    np.testing.assert_allclose(read_radiograph(tmp_path / "wide.png").pixels[0], values, atol=0.5)


def test_a_16_bit_grey_and_alpha_png_keeps_its_16_bits_and_its_transparency(tmp_path):
    """Pillow reads grey + alpha at 8 bits and SimpleITK refuses it: 12-bit values became 16 levels."""
    values = radiograph(6).astype(np.uint16) * 16
    alpha = np.full(values.shape, 65535, np.uint16)
    sitk.WriteImage(sitk.GetImageFromArray(np.stack([values, alpha], -1), isVector=True), str(tmp_path / "la.png"))
    assert open(tmp_path / "la.png", "rb").read(26)[24:26] == bytes([16, 4])  # 16 bits, grey + alpha
    img = read_radiograph(tmp_path / "la.png")
    np.testing.assert_array_equal(img.pixels[0], values)
    assert "no pixel spacing in file; 1.0 mm assumed" in img.warnings
    alpha[:, : values.shape[1] // 2] = 0  # the left half transparent: shown black, as an 8-bit PNG with alpha is
    sitk.WriteImage(sitk.GetImageFromArray(np.stack([values, alpha], -1), isVector=True), str(tmp_path / "half.png"))
    half = read_radiograph(tmp_path / "half.png").pixels[0]
    assert not half[:, : values.shape[1] // 2].any()
    np.testing.assert_array_equal(half[:, values.shape[1] // 2:], values[:, values.shape[1] // 2:])


def test_a_damaged_16_bit_grey_and_alpha_png_is_refused_by_name(tmp_path):
    values = radiograph(7).astype(np.uint16) * 16
    alpha = np.full(values.shape, 65535, np.uint16)
    sitk.WriteImage(sitk.GetImageFromArray(np.stack([values, alpha], -1), isVector=True), str(tmp_path / "la.png"))
    data = (tmp_path / "la.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ReadError, match="cut.png"):
        read_radiograph(tmp_path / "cut.png")
