"""Normal radiographs packed for a machine that holds no copy of the data (the GPU round,
training/device_round.py): one file per set of normals, already at the encoder's input size, with
their lung fields, small enough to travel with the working tree.

A pack is an `.npz` (no pickle: numbers and file names only) compressed with xz. The images are the
model inputs (`preprocess.to_model_input`) in 8 bits, coded row by row against the row above
(near-lossless DPCM: every pixel within `NEAR` grey levels of its 8-bit value), which halves the
size that lossless coding needs: the adult and pediatric training normals then fit beside the
repository in the 64 MiB a device call carries. `files` keeps the file names, so a model trained
from a pack names the same file-list hash as one trained from the folder.
"""

from __future__ import annotations

import io
import lzma
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from SSLAnomalyLib.core.files.errors import ReadError
from SSLAnomalyLib.core.reading.walk import refuse_special

SUFFIX = ".npz.xz"
NEAR = 1  # the largest difference, in grey levels of 255, between a packed pixel and its 8-bit value
STEP = 2 * NEAR + 1


@dataclass
class PackedNormals:
    images01: np.ndarray  # (n, size, size) float32 in [0, 1]
    lungs: np.ndarray     # (n, size, size) bool
    files: list[str]      # file names (no folders)


def is_pack(spec) -> bool:
    """Whether `--normals` names one pack file rather than folders of images."""
    paths = spec if isinstance(spec, (list, tuple)) else [spec]
    return len(paths) == 1 and str(paths[0]).endswith(SUFFIX)


def encode(pixels: np.ndarray) -> np.ndarray:
    """(n, s, s) uint8 -> int8 codes: each row against the row above as the decoder will see it."""
    target = pixels.astype(np.int16)
    codes = np.empty(pixels.shape, np.int8)
    previous = np.full(target[:, 0].shape, 128, np.int16)
    for row in range(target.shape[1]):
        code = np.round((target[:, row] - previous) / STEP).astype(np.int16)
        codes[:, row] = code
        previous = np.clip(previous + STEP * code, 0, 255)
    return codes


def decode(codes: np.ndarray) -> np.ndarray:
    """int8 codes -> (n, s, s) uint8, each pixel within NEAR grey levels of what was encoded."""
    pixels = np.empty(codes.shape, np.uint8)
    previous = np.full(codes[:, 0].shape, 128, np.int16)
    for row in range(codes.shape[1]):
        previous = np.clip(previous + STEP * codes[:, row].astype(np.int16), 0, 255)
        pixels[:, row] = previous
    return pixels


def write_pack(path, images01: np.ndarray, lungs: np.ndarray, files: list[str]) -> Path:
    """Pack model-input images (float in [0, 1]), their lung masks and their file names."""
    path = Path(path)
    if not path.name.endswith(SUFFIX):
        raise ValueError(f"a pack's name ends with {SUFFIX}, not {path.name}")
    buffer = io.BytesIO()
    np.savez(buffer, codes=encode(np.round(np.clip(images01, 0, 1) * 255).astype(np.uint8)),
             lungs=np.packbits(lungs.astype(bool), axis=-1), files=np.array([Path(f).name for f in files]),
             near=np.int64(NEAR))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(lzma.compress(buffer.getvalue(), preset=9 | lzma.PRESET_EXTREME))
    return path


def read_pack(path, size: int) -> PackedNormals:
    """The normals of a pack made at `size` pixels (another size is refused: packs are not resized)."""
    refuse_special(path, "a normals pack")
    try:
        with np.load(io.BytesIO(lzma.decompress(Path(path).read_bytes())), allow_pickle=False) as z:
            codes, lungs, files, near = z["codes"], z["lungs"], z["files"], z["near"]
    except (OSError, lzma.LZMAError, ValueError, KeyError, zipfile.BadZipFile) as e:
        raise ReadError(path, f"is not a readable normals pack ({e})") from None
    if codes.ndim == 3 and codes.shape[1:] != (size, size):
        raise ReadError(path, f"holds {codes.shape[1]}-px images; this model's input is {size} px: pack at that size")
    problem = damage(codes, lungs, files, near, size)
    if problem:
        raise ReadError(path, f"is a damaged normals pack: {problem}")
    images = decode(codes).astype(np.float32) / 255
    return PackedNormals(images, np.unpackbits(lungs, axis=-1, count=size).astype(bool), [str(f) for f in files])


def damage(codes, lungs, files, near, size: int) -> str:
    """What makes a pack's arrays other than `write_pack` writes them ("" if nothing): decoded as they
    are, a pack with fewer lung fields or names than images, or another coding, trained on other
    normals than were packed, or failed far from the pack's name."""
    n = len(codes) if codes.ndim else 0
    if codes.dtype != np.int8 or codes.ndim != 3:
        return f"codes of type {codes.dtype}, not int8, shape {codes.shape}"
    if not n:
        return "holds no normals"
    if int(near) != NEAR:
        return f"coded within {int(near)} grey levels, not {NEAR}"
    if lungs.shape != (n, size, (size + 7) // 8):
        return f"lung fields of shape {lungs.shape} for {n} images of {size} px"
    if files.shape != (n,):
        return f"file names of shape {files.shape} for {n} images"
    return ""
