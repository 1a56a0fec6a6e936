"""The NaN and infinite voxels of a floating-point NIfTI, which SimpleITK's reader (ITK 5's niftilib,
`nifti_read_buffer`) silently reads as 0: an all-NaN or all-inf file was refused as "constant (every
pixel 0)", and one half NaN was scored as a radiograph with a black half, without a warning. ITK 6
keeps them (InsightSoftwareConsortium/ITK#6683); until SimpleITK is built on it, where they are is
read here from the file's own voxels, so that the reader treats them as it treats a NRRD's."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

FLOAT_TYPES = {16: "f4", 64: "f8"}  # NIfTI datatype codes of real floating-point voxels
HEADERS = {348: ("h", 70, "f", 108), 540: ("h", 12, "q", 168)}  # NIfTI-1, -2: datatype and vox_offset (format, offset)


def nonfinite_voxels(path: Path, count: int) -> np.ndarray | None:
    """Whether each of the first `count` voxels the NIfTI file at `path` stores (in file order, as
    SimpleITK's array holds them) is NaN or infinite; None where they are not floats (none can be) or
    the header is not NIfTI-1 or -2."""
    with (gzip.open if path.name.lower().endswith(".gz") else open)(path, "rb") as f:
        header = f.read(540)
        for order in "<>":
            if len(header) >= 348 and struct.unpack(order + "i", header[:4])[0] in HEADERS:
                break
        else:
            return None
        type_format, type_at, offset_format, offset_at = HEADERS[struct.unpack(order + "i", header[:4])[0]]
        dtype = FLOAT_TYPES.get(struct.unpack_from(order + type_format, header, type_at)[0])
        if dtype is None:
            return None
        f.seek(int(struct.unpack_from(order + offset_format, header, offset_at)[0]))
        voxels = np.frombuffer(f.read(count * int(dtype[1])), order + dtype)
    return ~np.isfinite(voxels) if len(voxels) == count else None


def restore_nonfinite(path: Path, pixels: np.ndarray) -> None:
    """Set to NaN, in place, the voxels of a one-component NIfTI's `pixels` that the file stores as
    NaN or infinite (read as 0)."""
    hidden = nonfinite_voxels(path, pixels.size)
    if hidden is not None:
        pixels[hidden.reshape(pixels.shape)] = np.nan
