"""The one image type of the core: pixels plus the geometry that places them in the patient.

Pixels are always held as a 3D array (slices, rows, columns) so that a radiograph is simply a
single-slice volume; `is_2d` remembers that the source was a plain 2D image so outputs are written
back in the same dimensionality. Geometry follows ITK/DICOM conventions (LPS physical space):
`spacing` and `origin` are (x, y, z) in mm, `direction` is a 3x3 matrix whose columns are the
physical directions of the i, j, k index axes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from SSLAnomalyLib.core.reading.display import Display, display_of

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])
COSINE_TOLERANCE = 1e-3  # DICOM's decimal strings round cosines; beyond this they were not orthonormal


@dataclass
class Radiograph:
    pixels: np.ndarray  # (slices, rows, cols), float32
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))
    is_2d: bool = True
    source: str = ""
    warnings: list[str] = field(default_factory=list)
    dicom: dict | None = None  # identity/reference attributes of a DICOM source (never logged); {}: not at hand
    block: int = 1  # file pixels per pixel here, along each side (a very large image is read reduced: shrink.py)
    blank_slices: tuple[int, ...] = ()  # slices with nothing to score (blank.py): not scored
    view_problems: tuple[str, ...] = ()  # why its DICOM header says it is no frontal chest radiograph (chest_view.py)

    def __post_init__(self):
        self.pixels = np.asarray(self.pixels)
        if self.pixels.ndim == 2:
            self.pixels = self.pixels[None]
        if self.pixels.ndim != 3:
            raise ValueError(f"pixels must be 2D or 3D, got shape {self.pixels.shape}")
        self.spacing = tuple(float(s) for s in self.spacing)
        self.origin = tuple(float(o) for o in self.origin)
        self.direction = np.asarray(self.direction, dtype=float).reshape(3, 3)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.pixels.shape

    @property
    def identity(self) -> str:
        """Which image this is (for keying a review to it): "dicom:<SOPInstanceUID>" for a DICOM
        instance, else "sha256:" and a digest of the pixels as read. Names the image, not the patient."""
        return image_identity(self.pixels, (self.dicom or {}).get("SOPInstanceUID"))

    def ijk_to_lps(self) -> np.ndarray:
        """4x4 matrix mapping continuous (i, j, k) indices to LPS millimetres."""
        m = np.eye(4)
        m[:3, :3] = self.direction @ np.diag(self.spacing)
        m[:3, 3] = self.origin
        return m

    def ijk_to_ras(self) -> np.ndarray:
        """4x4 matrix mapping continuous (i, j, k) indices to RAS millimetres (Slicer's space)."""
        m = self.ijk_to_lps()
        m[:3] = LPS_TO_RAS @ m[:3]
        return m

    @property
    def display(self) -> Display:
        """How viewers show this image's slices (display.py): a DICOM as stored."""
        return display_of(self.direction, as_stored=self.dicom is not None)

    def shown(self, k: int = 0) -> np.ndarray:
        """Slice `k` as viewers show it: what the model is given, in training too."""
        return self.display.shown(self.pixels[k])

    def with_pixels(self, pixels: np.ndarray) -> "Radiograph":
        """A new image on the same grid (e.g. a heatmap), sharing geometry but not warnings."""
        if np.asarray(pixels).reshape(-1, *self.shape[1:]).shape != self.shape:
            raise ValueError(f"pixels {np.shape(pixels)} do not match grid {self.shape}")
        return Radiograph(np.asarray(pixels).reshape(self.shape), self.spacing, self.origin,
                          self.direction.copy(), self.is_2d, self.source, block=self.block)


def direction_from_cosines(row, column) -> tuple[np.ndarray, str | None]:
    """The direction matrix of a plane given by its row and column cosines (DICOM's
    ImageOrientationPatient), in any orientation: axial, coronal, sagittal or oblique. The normal is
    their cross product; cosines that are not quite unit or perpendicular are orthonormalised (the
    row kept), because ITK refuses a direction matrix that is not one. Cosines that span no plane
    (zero or parallel) give the identity. Returns the matrix and a warning, or None where all was well."""
    row, column = np.asarray(row, float), np.asarray(column, float)
    r_len, c_len = np.linalg.norm(row), np.linalg.norm(column)
    if r_len < COSINE_TOLERANCE or c_len < COSINE_TOLERANCE or \
            np.linalg.norm(np.cross(row / r_len, column / c_len)) < COSINE_TOLERANCE:
        return np.eye(3), "ImageOrientationPatient spans no plane (zero or parallel cosines); an axial plane is assumed"
    r = row / r_len
    c = column - (column @ r) * r
    c /= np.linalg.norm(c)
    direction = np.stack([r, c, np.cross(r, c)], axis=1)
    bent = max(abs(r_len - 1), abs(c_len - 1), abs(row @ column) / (r_len * c_len)) > COSINE_TOLERANCE
    return direction, "ImageOrientationPatient is not orthonormal; it was orthonormalised" if bent else None


def image_identity(pixels: np.ndarray, sop_instance_uid: str | None = None) -> str:
    """See `Radiograph.identity`; the same pixels give the same identity in the core and in Slicer."""
    if sop_instance_uid:
        return f"dicom:{sop_instance_uid}"
    pixels = np.ascontiguousarray(pixels, dtype=np.float32)
    digest = hashlib.sha256(repr(pixels.shape).encode())
    digest.update(pixels)  # the array's own buffer: no copy
    return f"sha256:{digest.hexdigest()}"
