"""A normals pack (training/packs.py) that is damaged or made by another writer is refused, naming
the pack and what is wrong with it: a truncated archive inside the xz stream ended `train` in a
zipfile traceback, lung fields fewer than the images in an IndexError, and file names fewer than the
images, codes of another type or another coding step trained silently on other normals than packed."""

import io
import lzma

import numpy as np
import pytest

from SSLAnomalyLib.cli import main
from SSLAnomalyLib.core.files.errors import ReadError
from SSLAnomalyLib.training.packs import NEAR, encode, read_pack, write_pack

SIZE, N = 64, 10


def arrays():
    images = np.random.default_rng(0).random((N, SIZE, SIZE)).astype(np.float32)
    return {"codes": encode(np.round(images * 255).astype(np.uint8)),
            "lungs": np.packbits(images > 0.5, axis=-1), "files": np.array([f"n{i}.png" for i in range(N)]),
            "near": np.int64(NEAR)}


def packed(path, **changes):
    buffer = io.BytesIO()
    np.savez(buffer, **dict(arrays(), **changes))
    path.write_bytes(lzma.compress(buffer.getvalue()))
    return path


@pytest.mark.parametrize("name, changes, reason", [
    ("fewer_lungs", lambda a: {"lungs": a["lungs"][:3]}, "lung fields of shape (3, 64, 8) for 10 images of 64 px"),
    ("fewer_files", lambda a: {"files": a["files"][:4]}, "file names of shape (4,) for 10 images"),
    ("names_2d", lambda a: {"files": a["files"].reshape(2, 5)}, "file names of shape (2, 5) for 10 images"),
    ("float_codes", lambda a: {"codes": a["codes"].astype(np.float64)}, "codes of type float64, not int8"),
    ("other_step", lambda a: {"near": np.int64(NEAR + 1)}, f"coded within {NEAR + 1} grey levels, not {NEAR}"),
    ("no_images", lambda a: {k: v[:0] for k, v in a.items() if k != "near"}, "holds no normals"),
])
def test_an_inconsistent_pack_is_refused_with_the_reason(tmp_path, name, changes, reason):
    path = packed(tmp_path / f"{name}.npz.xz", **changes(arrays()))
    with pytest.raises(ReadError) as e:
        read_pack(path, SIZE)
    assert str(path) in str(e.value) and reason in str(e.value)


def test_a_truncated_archive_in_the_pack_is_refused_by_train(tmp_path, capsys):
    good = packed(tmp_path / "good.npz.xz")
    assert len(read_pack(good, SIZE).files) == N
    inner = lzma.decompress(good.read_bytes())
    bad = tmp_path / "bad.npz.xz"
    bad.write_bytes(lzma.compress(inner[:len(inner) // 2]))
    assert main(["train", "--normals", str(bad), "--out", str(tmp_path / "m"), "--size", str(SIZE), "--minutes", "0",
                 "--device", "cpu", "--quiet"]) == 2  # was 1, a zipfile.BadZipFile traceback
    err = capsys.readouterr().err
    assert f"{bad}: is not a readable normals pack" in err and "Traceback" not in err


def test_a_pack_written_here_reads_back(tmp_path):
    images = np.random.default_rng(1).random((N, SIZE, SIZE)).astype(np.float32)
    path = write_pack(tmp_path / "p.npz.xz", images, images > 0.5, [f"a/{i}.png" for i in range(N)])
    read = read_pack(path, SIZE)
    assert read.images01.shape == (N, SIZE, SIZE) and read.files[0] == "0.png"
    assert np.array_equal(read.lungs, images > 0.5)
