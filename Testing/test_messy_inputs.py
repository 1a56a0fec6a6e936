"""Every kind of messy input is read into a valid image or refused naming the file and the reason."""

import os
import struct
import time
import zlib

import numpy as np
import pytest
import SimpleITK as sitk
from pydicom.uid import ExplicitVRLittleEndian

from messy_corpus import REFUSED, png_chunk, write_dicom
from SSLAnomalyLib.core.detection.detector import AnomalyDetector
from SSLAnomalyLib.core.reading.image import Radiograph
from SSLAnomalyLib.core.reading.images import ReadError, list_inputs, read_radiograph, write_image
from SSLAnomalyLib.core.reading.shrink import MAX_SIDE, shrink_if_large
from SSLAnomalyLib.core.reading.too_small import MIN_SIDE


def assert_valid(img: Radiograph):
    assert img.pixels.ndim == 3 and min(img.shape[1:]) >= MIN_SIDE and max(img.shape[1:]) <= MAX_SIDE
    assert np.isfinite(img.pixels).all()
    assert all(s > 0 for s in img.spacing)


def test_every_messy_input_is_read_or_refused_with_its_reason(messy_corpus):
    folder, cases = messy_corpus
    wrong = []
    for name, expect in cases.items():
        try:
            img = read_radiograph(folder / name)
        except ReadError as e:
            if not expect.startswith(REFUSED) or expect[len(REFUSED):] not in e.reason or e.path != str(folder / name):
                wrong.append(f"{name}: refused ({e.reason})")
            continue
        if expect.startswith(REFUSED):
            wrong.append(f"{name}: read, but should be refused ({expect})")
        assert_valid(img)
    assert not wrong, wrong


def test_compressed_transfer_syntaxes_decode_to_the_same_pixels(messy_corpus):
    folder, _ = messy_corpus
    native = read_radiograph(folder / "mono2.dcm").pixels
    for name in ("jpeg_ls.dcm", "jpeg_2000.dcm", "rle.dcm"):  # lossless
        assert np.array_equal(read_radiograph(folder / name).pixels, native), name
    lossy = read_radiograph(folder / "jpeg_baseline.dcm").pixels  # 8-bit, JPEG baseline
    assert np.corrcoef(lossy.ravel(), native.ravel())[0, 1] > 0.99
    frames = read_radiograph(folder / "multiframe.dcm")
    assert frames.shape == (3, *native.shape[1:]) and not frames.is_2d
    assert np.array_equal(frames.pixels[1], native[0][:, ::-1])


def test_monochrome1_scores_like_monochrome2(messy_corpus, small_model):
    folder, _ = messy_corpus
    detector = AnomalyDetector.load(small_model, device="cpu")
    m1 = detector.detect(read_radiograph(folder / "mono1.dcm"))
    m2 = detector.detect(read_radiograph(folder / "mono2.dcm"))
    assert m1.score == pytest.approx(m2.score, abs=1e-4)
    assert np.allclose(m1.heatmap.pixels, m2.heatmap.pixels, atol=1e-3)
    assert [f.bbox_ijk for f in m1.findings] == [f.bbox_ijk for f in m2.findings]


def test_large_image_is_read_reduced_over_the_same_patient_space():
    rows, cols = 301, 200
    pixels = np.arange(rows * cols, dtype=np.float32).reshape(rows, cols)
    direction = np.array([[0.0, 1, 0], [-1, 0, 0], [0, 0, 1]])
    img = Radiograph(pixels, (0.2, 0.3, 1.0), (10.0, 20.0, 5.0), direction)
    small = shrink_if_large(img, max_side=100)
    f = 4  # the smallest factor bringing 301 under 100
    assert small.shape == (1, 76, 50) and small.spacing == pytest.approx((0.8, 1.2, 1.0))
    assert small.pixels[0, 0, 0] == pytest.approx(pixels[:f, :f].mean())
    # the centre of reduced pixel (0, 0) is the centre of the first 4x4 block of the original
    first_block_centre = img.ijk_to_lps() @ [(f - 1) / 2, (f - 1) / 2, 0, 1]
    assert small.ijk_to_lps() @ [0, 0, 0, 1] == pytest.approx(first_block_centre)
    assert any("read at 50x76" in w for w in small.warnings)
    assert shrink_if_large(small, max_side=100) is small


@pytest.mark.parametrize("one_pixel_axis, order", [(1, [0, 2, 1]), (2, [1, 2, 0])])
def test_a_plane_stored_with_its_one_pixel_axis_not_last_is_refused_saying_what_it_is(tmp_path, one_pixel_axis, order):
    """A coronal radiograph stored as a 64 x 1 x 64 NRRD (what a crop or resample in Slicer can leave) was refused
    as "image is 64x1 pixels; at least 16x16 is needed": it is one 64 x 64 plane, and the refusal now says so and
    how to save it, the remedy it names giving an image that is read; a thin image is refused as before."""
    rng = np.random.default_rng(0)
    volume = sitk.GetImageFromArray(np.expand_dims(rng.integers(0, 4000, (64, 64)).astype(np.int16), one_pixel_axis))
    sitk.WriteImage(volume, str(tmp_path / "plane.nrrd"))
    with pytest.raises(ReadError, match=rf"is one plane of 64x64 pixels stored as a volume of 64 slices .* its one-pixel "
                                        rf"axis is not the last .*SimpleITK.PermuteAxes\(image, \{order}\)"):
        read_radiograph(tmp_path / "plane.nrrd")
    sitk.WriteImage(sitk.PermuteAxes(volume, order), str(tmp_path / "saved.nrrd"))
    assert read_radiograph(tmp_path / "saved.nrrd").shape == (1, 64, 64)
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((64, 3), np.int16)), str(tmp_path / "thin.nrrd"))
    with pytest.raises(ReadError, match="image is 3x64 pixels; at least 16x16 is needed"):
        read_radiograph(tmp_path / "thin.nrrd")


def test_a_header_promising_a_huge_image_is_refused_before_decoding(tmp_path):
    dcm = write_dicom(tmp_path / "huge.dcm", np.zeros((16, 16), np.uint16), syntax=ExplicitVRLittleEndian)
    import pydicom

    ds = pydicom.dcmread(dcm)
    ds.Rows = ds.Columns = 60000
    ds.save_as(dcm)
    header = struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0)  # 30,000 x 30,000 8-bit gray
    (tmp_path / "huge.png").write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header)
                                        + png_chunk(b"IDAT", zlib.compress(bytes(1000))) + png_chunk(b"IEND", b""))
    for name in ("huge.dcm", "huge.png"):
        with pytest.raises(ReadError, match="too large"):
            read_radiograph(tmp_path / name)


def test_a_zero_filled_8gb_dicom_is_refused_in_well_under_a_second(messy_corpus):
    folder, _ = messy_corpus
    read_radiograph(folder / "mono2.dcm")  # pydicom imported and warm: the time is the refusal's own
    start = time.perf_counter()
    with pytest.raises(ReadError, match="no pixel data"):
        read_radiograph(folder / "zeros_8gb.dcm")
    assert time.perf_counter() - start < 0.5
    assert (folder / "zeros_8gb.dcm").stat().st_size == 8 * 2**30


def test_axial_heatmap_and_lungs_are_written_at_the_images_own_height(messy_corpus, small_model, tmp_path):
    folder, _ = messy_corpus
    image = read_radiograph(folder / "axial_z200.dcm")
    result = AnomalyDetector.load(small_model, device="cpu").detect(image, lungs=True)
    for written in (result.heatmap, result.lungs):
        nrrd = sitk.ReadImage(str(write_image(written, tmp_path / "out.nrrd")))
        assert nrrd.GetOrigin() == pytest.approx(image.origin) and image.origin[2] == 200
        assert np.allclose(nrrd.TransformContinuousIndexToPhysicalPoint((5, 9, 0)),
                           (image.ijk_to_lps() @ [5, 9, 0, 1])[:3])
    for finding in result.findings:
        assert finding.centroid_ras[2] == pytest.approx(200)


def test_awkward_paths_in_one_batch(small_model, tmp_path):
    """In one `sslanomaly detect` run: a file whose name is not UTF-8 is read and logged safely; a
    file 1,100 folders deep is found (os.walk recursed past Python's limit), through a folder with a
    link back up the tree, entered once; a link loop named on the command line is a named failure of
    that input, and the rest of the batch is scored."""
    from conftest import data_dir

    folder = tmp_path / "in"
    folder.mkdir()
    source = sorted(data_dir("kermany", "val", "normal").iterdir())[0]
    sitk.WriteImage(sitk.ReadImage(str(source)), str(tmp_path / "plain.nrrd"))
    os.rename(tmp_path / "plain.nrrd", os.fsencode(folder) + b"/caf\xe9.nrrd")
    (folder / "bad.png").write_bytes(b"not a png")
    (folder / "up").symlink_to(folder)
    chain = [folder / "d"]
    for _ in range(1099):
        chain.append(chain[-1] / "d")
    for step in chain:
        step.mkdir()
    deep = chain[-1]
    (deep / "deepest.jpeg").symlink_to(source)
    try:
        _score_awkward_paths(small_model, tmp_path, folder, deep, source)
    finally:  # pytest's own clean-up of old temp folders recurses and fails 1,100 folders deep
        (deep / "deepest.jpeg").unlink()
        for step in reversed(chain):
            step.rmdir()


def _score_awkward_paths(small_model, tmp_path, folder, deep, source):
    import json
    import subprocess

    from conftest import REPO

    loop = tmp_path / "loop.png"
    loop.symlink_to(loop)
    listed = list_inputs([loop, folder])
    assert listed[0] == loop and deep / "deepest.jpeg" in listed and len(listed) == 4
    r = subprocess.run([str(REPO / ".venv" / "bin" / "sslanomaly"), "detect", "--model", str(small_model), "--out",
                        str(tmp_path / "out"), "--quiet", str(loop), str(folder)],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert sorted(p.name for p in (tmp_path / "out").glob("*.findings.json")) == ["caf%E9.findings.json",
                                                                                 "deepest.findings.json"]
    failures = {json.loads(line)["input"]: json.loads(line)["reason"]
                for line in (tmp_path / "out" / "failures.log").read_text().splitlines()}
    assert set(failures) == {str(loop), str(folder / "bad.png")}
    assert failures[str(loop)] == "is a symbolic link loop (the link leads back to itself)"
