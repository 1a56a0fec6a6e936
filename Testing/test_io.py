"""Reading real radiographs in every supported format, with geometry."""

import re

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from conftest import data_dir
from messy_corpus import png_chunk, write_dicom as write_dx
from SSLAnomalyLib.core.reading.images import ReadError, read_radiograph, write_image


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


def test_exif_orientation_is_honoured_and_said(tmp_path, real_gray):
    stored = np.rot90(real_gray)  # turned a quarter anticlockwise; orientation 6 tells viewers to turn it back
    exif = Image.fromarray(stored).getexif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "turned.jpeg", quality=95, exif=exif)
    Image.fromarray(stored).save(tmp_path / "plain.jpeg", quality=95)
    img = read_radiograph(tmp_path / "turned.jpeg")
    assert img.shape[1:] == real_gray.shape
    assert np.corrcoef(img.pixels[0].ravel(), real_gray.ravel())[0, 1] > 0.99
    assert any("EXIF orientation 6 applied" in w for w in img.warnings)
    assert not any("EXIF" in w for w in read_radiograph(tmp_path / "plain.jpeg").warnings)


@pytest.mark.parametrize("kind", ["RGB;16", "LA;16"])
def test_exif_orientation_of_a_16_bit_png_is_honoured_as_an_8_bit_ones_is(tmp_path, real_gray, kind):
    """A 16-bit colour or grey + alpha PNG (read by SimpleITK or pypng, which keep its 16 bits) was read as stored
    whatever its EXIF orientation, where the same picture at 8 bits is turned upright: a radiograph stored on its
    side was scored on its side (a TB radiograph 5.46, 'far beyond every calibration normal', against 3.04)."""
    import png

    upright = real_gray[::4, ::4][:, 20:-60]  # not square, so that a turn shows
    stored = np.rot90(upright).astype(np.uint16) * 257
    planes = [stored] * 3 if kind == "RGB;16" else [stored, np.full_like(stored, 65535)]
    path = tmp_path / "turned.png"
    png.from_array(np.dstack(planes).reshape(stored.shape[0], -1), kind).save(str(path))
    exif = Image.Exif()
    exif[0x0112] = 6
    data = path.read_bytes()
    before_pixels = data.index(b"IDAT") - 4
    path.write_bytes(data[:before_pixels] + png_chunk(b"eXIf", exif.tobytes()[6:]) + data[before_pixels:])  # no "Exif\0\0"
    img = read_radiograph(path)
    np.testing.assert_allclose(img.pixels[0], upright * 257.0, rtol=1e-6)
    assert "EXIF orientation 6 applied: the image was stored turned a quarter anticlockwise" in img.warnings


@pytest.mark.parametrize("compression", [None, "tiff_lzw"])
@pytest.mark.parametrize("bits", [8, 16])
def test_a_tiff_stored_turned_is_read_upright_and_said(tmp_path, real_gray, compression, bits):
    """A TIFF whose Orientation tag turns it a quarter: Pillow turns it itself as it loads it and drops the tag, so
    the reader said nothing; and it memory-maps a named uncompressed one at its turned size, so that image was read
    as garbage (a TB radiograph 5.91, 'far beyond every calibration normal', against 2.63 upright)."""
    upright = (real_gray[::4, ::4][:, 20:-60]).astype(np.uint16 if bits == 16 else np.uint8)  # not square
    path = tmp_path / "turned.tif"
    Image.fromarray(np.ascontiguousarray(np.rot90(upright))).save(path, tiffinfo={0x0112: 6},
                                                                  **({"compression": compression} if compression else {}))
    img = read_radiograph(path)
    assert np.array_equal(img.pixels[0], upright)
    assert "EXIF orientation 6 applied: the image was stored turned a quarter anticlockwise" in img.warnings


@pytest.mark.parametrize("iop", [(1, 0, 0, 0, 1, 0), (1, 0, 0, 0, 0, -1), (0, 1, 0, 0, 0, -1),
                                 (0.8, 0.6, 0, 0, 0, -1), (1.02, 0, 0.01, 0, 0.97, 0)])
def test_any_plane_is_read_and_written_with_its_full_geometry(tmp_path, real_gray, iop):
    """Axial at z = 200, coronal, sagittal, oblique and slightly non-orthonormal cosines: read into
    a valid direction matrix whose first columns follow the cosines, and written back (as the
    heatmap and lungs are) with the same origin and direction, so every index lands where it did."""
    import pydicom

    path = write_dx(tmp_path / "plane.dcm", real_gray[::4, ::4].astype(np.uint16) * 16)
    ds = pydicom.dcmread(path)
    ds.ImageOrientationPatient, ds.ImagePositionPatient = list(iop), [-150.0, 40.0, 200.0]
    ds.save_as(path)
    img = read_radiograph(path)
    d = img.direction
    assert np.allclose(d.T @ d, np.eye(3)) and np.linalg.det(d) == pytest.approx(1)
    assert np.allclose(d[:, 0], np.divide(iop[:3], np.linalg.norm(iop[:3])))
    assert d[:, 1] @ iop[3:] > 0.99 * np.linalg.norm(iop[3:])
    assert img.origin == (-150.0, 40.0, 200.0)
    write_image(img.with_pixels(img.pixels.astype(np.float32)), tmp_path / "heat.nrrd")
    back = sitk.ReadImage(str(tmp_path / "heat.nrrd"))
    for ijk in [(0, 0, 0), (img.shape[2] - 1, img.shape[1] - 1, 0), (7, 3, 0)]:
        assert np.allclose(back.TransformContinuousIndexToPhysicalPoint(ijk), (img.ijk_to_lps() @ [*ijk, 1])[:3])


def test_a_colour_photograph_is_warned_as_one_not_as_annotations(tmp_path):
    """A colour photograph was warned 'colour annotations found on 7.9 % of pixels ... export the radiograph
    without annotations', as a radiograph with a few coloured marks: the user was not told that the input
    is likely no radiograph at all."""
    from sklearn.datasets import load_sample_image

    Image.fromarray(load_sample_image("china.jpg")).save(tmp_path / "china.jpg", quality=90)
    warned = [w for w in read_radiograph(tmp_path / "china.jpg").warnings if "colour" in w]
    assert len(warned) == 1 and warned[0].startswith("colour is not confined to marks: ") and \
        "not a greyscale radiograph" in warned[0], warned


def test_cosines_that_span_no_plane_fall_back_to_axial_with_a_warning(tmp_path, real_gray):
    import pydicom

    path = write_dx(tmp_path / "flat.dcm", real_gray[::4, ::4].astype(np.uint16) * 16)
    ds = pydicom.dcmread(path)
    ds.ImageOrientationPatient = [0, 1, 0, 0, 1, 0]
    ds.save_as(path)
    img = read_radiograph(path)
    assert np.array_equal(img.direction, np.eye(3)) and any("spans no plane" in w for w in img.warnings)


def test_colour_annotations_are_warned_with_their_share(tmp_path, real_gray):
    grey_rgb = np.stack([real_gray] * 3, -1)
    Image.fromarray(grey_rgb).save(tmp_path / "grey.jpeg", quality=75)  # grey, with JPEG's colour noise
    marked = grey_rgb.copy()
    marked[50:70, 50:550] = (230, 30, 30)  # 10,000 pixels of a red mark
    Image.fromarray(marked).save(tmp_path / "marked.png")
    assert not any("colour" in w for w in read_radiograph(tmp_path / "grey.jpeg").warnings)
    warned = [w for w in read_radiograph(tmp_path / "marked.png").warnings if "colour annotations" in w]
    assert warned == [f"colour annotations found on {100 * 10000 / real_gray.size:.2g} % of pixels; they are "
                      "scored as image content (export the radiograph without annotations)"]
    import pydicom

    rgb_dicom = write_dx(tmp_path / "marked.dcm", real_gray, bits=8)
    ds = pydicom.dcmread(rgb_dicom)
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.PixelData = marked.tobytes()
    ds.save_as(rgb_dicom)
    assert any("colour annotations found on" in w for w in read_radiograph(rgb_dicom).warnings)


@pytest.mark.parametrize("background, spot", [(0, 255), (255, 0), (0, 1)])
def test_a_blank_image_with_a_few_odd_pixels_is_refused_as_constant_is(tmp_path, background, spot):
    """An all-black (or saturated) image with one other pixel was scored: ABNORMAL, with a finding."""
    pixels = np.full((512, 512), background, np.uint8)
    pixels[100, 200] = spot
    Image.fromarray(pixels).save(tmp_path / "blank.png")
    with pytest.raises(ReadError, match=f"blank.png: image is blank: all but 1 of its 262144 pixels are {background}"):
        read_radiograph(tmp_path / "blank.png")


def test_a_dicomdir_in_a_folder_is_passed_over_as_the_index_it_is(tmp_path):
    """A CD export's DICOMDIR (preamble, no suffix) was taken as an input and failed the batch (exit 1)."""
    import shutil

    from SSLAnomalyLib.core.reading.images import list_inputs

    image = write_dx(tmp_path / "IM0001", np.full((64, 64), 500, np.uint16) + np.arange(64, dtype=np.uint16))
    shutil.copy(image, tmp_path / "DICOMDIR")
    assert list_inputs([tmp_path]) == [image]
    assert list_inputs([tmp_path / "DICOMDIR"]) == [tmp_path / "DICOMDIR"]  # named: read, and refused if it must be


def test_dicom_files_named_by_their_uid_or_bare_without_a_suffix_are_inputs_of_a_folder(tmp_path):
    """A PACS export's files named by their SOP Instance UID (suffix '.4') were left out of a folder ('no input
    images found', exit 2), and so was one without suffix and preamble, which named alone was refused as an
    'unsupported file type'."""
    from SSLAnomalyLib.core.reading.images import list_inputs

    pixels = np.full((64, 64), 500, np.uint16) + np.arange(64, dtype=np.uint16)
    by_uid = write_dx(tmp_path / "1.2.826.0.1.3680043.8.498.4", pixels)
    bare = tmp_path / "IM0002"
    bare.write_bytes(by_uid.read_bytes()[132:])  # no preamble nor "DICM": the data set as old exports write it
    (tmp_path / "README.TXT").write_text("Burnt by a PACS viewer")
    assert list_inputs([tmp_path]) == [by_uid, bare]
    np.testing.assert_array_equal(read_radiograph(bare).pixels, read_radiograph(by_uid).pixels)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_a_nifti_without_a_finite_pixel_is_refused_as_such(tmp_path, suffix, value):
    """SimpleITK (ITK 5) reads a NIfTI's NaN and infinite voxels as 0: an all-NaN file was refused as
    'constant (every pixel 0)', as a NRRD of the same pixels is not."""
    path = tmp_path / f"empty{suffix}"
    sitk.WriteImage(sitk.GetImageFromArray(np.full((2, 64, 64), value, np.float32)), str(path))
    with pytest.raises(ReadError, match=f"empty{suffix}: image holds no finite values"):
        read_radiograph(path)


@pytest.mark.parametrize("suffix, dtype", [(".nii", np.float32), (".nii.gz", np.float64)])
def test_a_nifti_with_some_nan_pixels_has_them_replaced_and_said(tmp_path, real_gray, suffix, dtype):
    """A NIfTI half NaN was scored with that half black (0), without a warning; a NRRD's are replaced by
    the median, and said."""
    pixels = real_gray[:256, :300].astype(dtype)
    pixels[:100] = np.nan
    pixels[100, :7] = np.inf
    sitk.WriteImage(sitk.GetImageFromArray(pixels), str(tmp_path / f"part{suffix}"))
    image = read_radiograph(tmp_path / f"part{suffix}")
    finite = np.isfinite(pixels)
    assert f"{(~finite).sum()} NaN/inf pixels replaced by the median" in image.warnings
    assert np.array_equal(image.pixels[0][finite], pixels[finite])
    assert (image.pixels[0][~finite] == np.median(pixels[finite])).all()


@pytest.mark.parametrize("fill, truncated", [(np.nan, False), (np.inf, False), (None, True)])
def test_nan_rows_are_not_taken_for_a_truncated_file(tmp_path, real_gray, fill, truncated):
    """An image whose bottom half was NaN was also warned 'the bottom 100 rows are one flat value: the
    file is probably truncated': the rows the median filled. Rows of one finite mid-grey still are."""
    pixels = real_gray[:200, :300].astype(np.float32)
    pixels[100:] = np.median(pixels) if fill is None else fill
    sitk.WriteImage(sitk.GetImageFromArray(pixels), str(tmp_path / "half.nrrd"))
    warned = read_radiograph(tmp_path / "half.nrrd").warnings
    assert any("the bottom 100 rows are one flat value" in w for w in warned) == truncated, warned


@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz"])
@pytest.mark.parametrize("finite, said", [([0.3] * 5, "constant (every pixel 0.3)"),
                                          ([0.3] * 40 + [0.9] * 3, "blank: all but 3 of its 4096 pixels are 0.3")])
def test_an_image_almost_all_nan_is_refused_saying_so(tmp_path, suffix, finite, said):
    """An image of NaN with a few finite pixels was refused as 'constant (every pixel 0.3)' or 'blank: all
    but 3 ...': the image the median put in place of its NaNs, not the file. The refusal says how many
    pixels were not finite."""
    pixels = np.full((64, 64), np.nan, np.float32)
    pixels.flat[:len(finite)] = finite
    sitk.WriteImage(sitk.GetImageFromArray(pixels), str(tmp_path / f"nan{suffix}"))
    nans = 4096 - len(finite)
    with pytest.raises(ReadError, match=re.escape(f"nan{suffix}: {nans} of its 4096 pixels are NaN or infinite, and "
                                                  f"with the median of the others in their place the image is {said}")):
        read_radiograph(tmp_path / f"nan{suffix}")


@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz"])
def test_a_ct_volume_in_hounsfield_units_without_a_dicom_header_is_refused(tmp_path, real_gray, suffix):
    """A CT saved as NRRD or NIfTI has no header to say it is one: its slices were scored as radiographs,
    with only generic warnings. Its values say it (pydicom's CT_small.dcm in HU, as 40 slices); a stack
    of as many real radiographs is read."""
    import pydicom
    import SimpleITK as sitk
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    hu = (ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)).astype(np.int16)
    sitk.WriteImage(sitk.GetImageFromArray(np.stack([np.roll(hu, k, 0) for k in range(40)])), str(tmp_path / f"ct{suffix}"))
    with pytest.raises(ReadError, match=f"ct{suffix}: looks like a CT volume in Hounsfield units \\(40 slices"):
        read_radiograph(tmp_path / f"ct{suffix}")
    radiographs = np.stack([real_gray[::4, ::4].astype(np.int16) * 16] * 40)
    sitk.WriteImage(sitk.GetImageFromArray(radiographs), str(tmp_path / f"stack{suffix}"))
    assert read_radiograph(tmp_path / f"stack{suffix}").shape[0] == 40


def test_a_nifti_gz_beside_a_nifti_of_the_same_name_is_read_as_itself(tmp_path, real_gray):
    """niftilib reads x.nii.gz's voxels from an x.nii beside it (ITK#2243): another image's pixels,
    under the header of this one, without a word."""
    own = real_gray[:256, :256]
    sitk.WriteImage(sitk.GetImageFromArray(own), str(tmp_path / "x.nii.gz"))
    sitk.WriteImage(sitk.GetImageFromArray(own[::-1].copy()), str(tmp_path / "x.nii"))
    assert np.array_equal(read_radiograph(tmp_path / "x.nii.gz").pixels[0], own)
    assert np.array_equal(read_radiograph(tmp_path / "x.nii").pixels[0], own[::-1])


@pytest.mark.parametrize("suffix, scale", [(".nrrd", 1e290), (".nii.gz", 1e290), (".nrrd", 1e-300), (".dcm", 1e300)])
def test_values_beyond_float32s_range_are_scored_as_the_image_they_scale(tmp_path, real_gray, suffix, scale):
    """A float64 NRRD or NIfTI of finite values up to 1e300 (or a DICOM whose Rescale Slope makes them)
    failed as NonFiniteScore ('a broken model or input'): cast to float32 they became inf; values of
    1e-300 became 0 and were scored as a blank. They are scaled by a power of two before the cast, and
    the model, which normalises intensities, scores the image as the one it scales."""
    from SSLAnomalyLib.core.detection.detector import AnomalyDetector

    pixels = real_gray[:512, :600]
    written = []
    for name, factor in (("as_is", 1.0), ("scaled", scale)):
        path = tmp_path / f"{name}{suffix}"
        if suffix == ".dcm":
            import pydicom

            write_dx(path, pixels.astype(np.uint16))
            ds = pydicom.dcmread(path)
            ds.RescaleSlope, ds.RescaleIntercept = f"{factor:g}", "0"
            ds.save_as(path)
        else:
            sitk.WriteImage(sitk.GetImageFromArray(pixels.astype(np.float64) * factor), str(path))
        written.append(read_radiograph(path))
    original, scaled = written
    detector = AnomalyDetector.load("default")
    assert detector.detect(scaled).score == pytest.approx(detector.detect(original).score, rel=1e-4)
    assert not any("beyond float32's range" in w for w in original.warnings)
    assert any(f"pixel values up to {scale * pixels.max():.3g} are beyond float32's range" in w for w in scaled.warnings)
