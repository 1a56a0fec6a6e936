"""Which normals a model's reference was fitted on, kept so that `calibrate` can tell a site's
normals that are already in it: scored by a reference that holds them, they sit closer to it than
new normals do, and thresholds set on them are too low for the site's new normals.

The record is `reference.normal_marks` in model.safetensors (so the manifest's SHA-256 of that
file covers it, under the seal and any site signature): for each normal the first 8 bytes of the
SHA-256 of its image identity (`Radiograph.identity`) and of its pixels' identity. The pixels
catch a copy under another name and a lossless re-encoding (bytes that differ, pixels that do
not); a DICOM instance's SOPInstanceUID also catches it with its pixels re-processed. A lossy
re-encoding (JPEG) is other pixels and is not caught. A mark reveals nothing of an image to
whoever does not hold it; whoever does can tell whether it was a reference normal.

Models without the record (made before it, from a normals pack, which keeps no source pixels, or
by merge, whose reference holds other sites' normals) still load and calibrate: the check is then
not made, and said so.
"""

from __future__ import annotations

import hashlib
from typing import Iterable

import numpy as np

from SSLAnomalyLib.core.reading.image import Radiograph, image_identity

ARRAY = "normal_marks"
MARK_BYTES = 8  # 64 bits: a new image matches one of a million normals by chance at odds below 1 in 10^12


def image_marks(image: Radiograph) -> frozenset[bytes]:
    """The marks of one normal as read: its identity's and its pixels' (one mark but for DICOM)."""
    return frozenset(hashlib.sha256(name.encode()).digest()[:MARK_BYTES]
                     for name in (image.identity, image_identity(image.pixels)))


def to_arrays(marks: Iterable[frozenset[bytes]]) -> dict[str, np.ndarray]:
    """The record of the reference normals' marks, sorted (no order of the normals is kept); none
    where no normal has a mark (normals from a pack)."""
    flat = sorted(set().union(*marks))
    if not flat:
        return {}
    return {ARRAY: np.frombuffer(b"".join(flat), np.uint8).reshape(-1, MARK_BYTES).copy()}


def recorded(arrays: dict[str, np.ndarray]) -> frozenset[bytes] | None:
    """The marks a model's arrays record, or None where the model keeps no record."""
    if ARRAY not in arrays:
        return None
    return frozenset(row.tobytes() for row in np.asarray(arrays[ARRAY], np.uint8).reshape(-1, MARK_BYTES))
