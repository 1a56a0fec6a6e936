"""Bounded fuzzing: real DICOM and PNG bytes, mutated (bytes flipped, set, inserted, deleted,
truncated, mostly in the headers), are either read into a valid image or refused with a ReadError,
never anything else. Deterministic and well under a minute."""

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from conftest import data_dir
from messy_corpus import write_dicom
from SSLAnomalyLib.core.reading.images import ReadError, read_radiograph
from SSLAnomalyLib.core.reading.shrink import MAX_SIDE
from SSLAnomalyLib.core.reading.too_small import MIN_SIDE

HEADER = 600  # bytes: the DICOM meta and image pixel module, the PNG chunks before the pixels
FUZZ = settings(max_examples=1000, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    """A small real radiograph as a DICOM (with spacing and geometry) and as a PNG."""
    source = sorted(data_dir("kermany", "train", "normal").iterdir())[0]
    gray = np.asarray(Image.open(source).convert("L").resize((48, 40)))
    folder = tmp_path_factory.mktemp("seeds")
    dicom = write_dicom(folder / "seed.dcm", gray.astype(np.uint16) * 16).read_bytes()
    png = io.BytesIO()
    Image.fromarray(gray).save(png, format="PNG")
    return {"dcm": dicom, "png": png.getvalue()}


@st.composite
def mutations(draw, data: bytes) -> bytes:
    data = bytearray(data)
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.one_of(st.integers(0, HEADER), st.integers(0, len(data))))
        pos = min(pos, len(data))
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        if kind == "flip" and pos < len(data):
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            data[pos:pos + 4] = draw(st.binary(min_size=1, max_size=4))
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[pos:pos + draw(st.integers(1, 16))]
        else:
            del data[pos:]
    return bytes(data)


def assert_read_or_refused(path):
    try:
        img = read_radiograph(path)
    except ReadError as e:
        assert e.path == str(path) and e.reason
        return
    assert img.pixels.ndim == 3 and MIN_SIDE <= min(img.shape[1:]) and max(img.shape[1:]) <= MAX_SIDE
    assert np.isfinite(img.pixels).all()
    assert all(np.isfinite(v) and v > 0 for v in img.spacing)
    assert np.isfinite(img.origin).all() and np.isfinite(img.direction).all()


@pytest.mark.parametrize("kind", ["dcm", "png"])
def test_mutated_files_are_read_or_refused(seeds, tmp_path, kind):
    path = tmp_path / f"fuzzed.{kind}"

    @FUZZ
    @given(data=mutations(seeds[kind]))
    def check(data):
        path.write_bytes(data)
        assert_read_or_refused(path)

    check()
