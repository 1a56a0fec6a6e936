"""Volume nodes <-> the core's `Radiograph`, with the geometry exact.

Slicer places voxels in RAS, the core (like ITK and DICOM) in LPS: the two differ by a sign flip of
x and y, applied to the whole IJK-to-physical matrix. Nothing is resampled either way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import slicer
import vtk

from SSLAnomalyLib.core.files.errors import ReadError
from SSLAnomalyLib.core.reading.chest_view import view_warnings
from SSLAnomalyLib.core.reading.dicom_reader import header_of, padding_of
from SSLAnomalyLib.core.reading.image import LPS_TO_RAS, Radiograph, image_identity
from SSLAnomalyLib.core.reading.images import read_radiograph, validated
from SSLAnomalyLib.core.reading.padding import shown_black
from SSLAnomalyLib.core.reading.value_range import within_float32

SOURCE_PATH = "SSLAnomaly.SourcePath"       # file the volume was read from (DICOM export needs it)
DICOM_INSTANCE_UIDS = "DICOM.instanceUIDs"  # Slicer's own attribute on volumes loaded from DICOM
IMAGE_ID = "SSLAnomaly.ImageId"            # "<voxel modified time>|<identity>", so it is hashed once
ROLE = "SSLAnomaly.Role"                    # "heatmap" on the module's heatmap volumes
VOLUME_REFERENCE = "SSLAnomaly.Volume"      # heatmap, lung fields, finding ROI -> the input volume they belong to
LUMINANCE = np.array([0.299, 0.587, 0.114])


def radiograph_to_volume_node(image: Radiograph, name: str = "", node=None):
    """Put `image` into `node` (a new scalar volume node if None) with its geometry and source."""
    if node is None:
        node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    node.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(image.ijk_to_ras()))
    slicer.util.updateVolumeFromArray(node, np.ascontiguousarray(image.pixels))
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    if image.source:
        node.SetAttribute(SOURCE_PATH, image.source)
    if image.dicom and image.dicom.get("SOPInstanceUID"):
        node.SetAttribute(DICOM_INSTANCE_UIDS, image.dicom["SOPInstanceUID"])
    return node


def volume_node_to_radiograph(node) -> Radiograph:
    """The voxels (a copy; colour volumes as luminance) and geometry of a volume node.

    A parent transform is not applied: the glue puts every derived node under the input's own
    transform, so results stay aligned with it. A volume from DICOM is warned of, or refused, as its
    file is when read (chest_view.py), and carries the attributes its header holds (the population
    warning needs PatientAge): neither is in the node."""
    name = f"volume {node.GetName()!r}" if node is not None else "volume"
    if node is None or node.GetImageData() is None or node.GetImageData().GetPointData().GetScalars() is None:
        raise ReadError(name, "has no image data")  # none, or an image data with no voxels (never allocated)
    if node.IsA("vtkMRMLLabelMapVolumeNode"):
        raise ReadError(name, "is a labelmap (a segmentation), not a radiograph: select the radiograph itself")
    if is_heatmap(node):
        raise ReadError(name, "is an anomaly heatmap this module made, not a radiograph: select the radiograph "
                              "it was made for")
    pixels = np.array(slicer.util.arrayFromVolume(node))
    if pixels.ndim == 4:  # vector volume, e.g. an RGB JPEG loaded in desktop Slicer
        pixels = pixels[..., :3] @ LUMINANCE[: pixels.shape[-1]] if pixels.shape[-1] >= 3 else pixels[..., 0]
    files = source_dicom_files(node)
    padding = _padding_left_by_slicers_dicom_reader(node, pixels.shape, files)
    if padding is not None:
        pixels = shown_black(pixels, padding)
    ijk_to_lps = LPS_TO_RAS @ ijk_to_ras_matrix(node)[:3]  # the flip is its own inverse
    spacing = np.array(node.GetSpacing())
    uids = node.GetAttribute(DICOM_INSTANCE_UIDS)  # from DICOM: scored as stored and named by its UIDs, as the CLI does
    header = header_of(files[0]) if files else None
    dicom = {**(header.dicom if header else {}), "SOPInstanceUID": uids} if uids else None
    pixels, scaled = within_float32(pixels)  # a double volume's 1e300 are no float32 values
    image = validated(Radiograph(pixels.astype(np.float32, copy=False), tuple(spacing), tuple(ijk_to_lps[:, 3]),
                                 ijk_to_lps[:, :3] / spacing, is_2d=pixels.shape[0] == 1, source=source_of(node),
                                 warnings=[scaled] if scaled else [], dicom=dicom), name)
    image.view_problems = header.view_problems if header else ()
    image.warnings += view_warnings(image.view_problems)
    return image


def _padding_left_by_slicers_dicom_reader(node, shape, files: list) -> np.ndarray | None:
    """The DICOM padding of a volume Slicer's DICOM module loaded (this module's reader shows it black
    already, and sets SOURCE_PATH): its one source file's padding (of `files`, its source files), where it
    fits the voxels."""
    if node.GetAttribute(SOURCE_PATH) or not node.GetAttribute(DICOM_INSTANCE_UIDS):
        return None
    mask = padding_of(files[0]) if len(files) == 1 else None
    return mask if mask is not None and mask.shape == shape else None


def is_heatmap(volume_node) -> bool:
    """True for the module's heatmap volumes (which are never inputs themselves)."""
    return volume_node.GetAttribute(ROLE) == "heatmap"


def image_identity_of(node) -> str:
    """`Radiograph.identity` of the image a volume node holds: its DICOM SOP Instance UID(s), else a
    digest of its voxels (recomputed only when the voxels change)."""
    uids = node.GetAttribute(DICOM_INSTANCE_UIDS)
    if uids:
        return image_identity(None, uids)
    modified = str(node.GetImageData().GetMTime())
    cached = (node.GetAttribute(IMAGE_ID) or "").split("|", 1)
    if cached[0] != modified or len(cached) != 2:
        cached = [modified, volume_node_to_radiograph(node).identity]
        node.SetAttribute(IMAGE_ID, "|".join(cached))
    return cached[1]


def source_of(node) -> str:
    """The file a volume was read from, or its name where the module did not read it."""
    return node.GetAttribute(SOURCE_PATH) or node.GetName()


def ijk_to_ras_matrix(node) -> np.ndarray:
    """4x4 IJK-to-RAS matrix of a volume node as a numpy array."""
    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return slicer.util.arrayFromVTKMatrix(m)


def load_volume(path) -> "slicer.vtkMRMLScalarVolumeNode":
    """Read any input the core reads (DICOM, PNG/JPEG, NRRD, NIfTI; `ReadError` names the file and
    the reason) into a new volume node named after the file. Slicer's own volume readers cannot
    read PNG/JPEG in every build, and the core's reader already applies DICOM LUTs and geometry."""
    from SSLAnomalyLib.core.results.outputs import \
        case_name  # here, not above: outputs needs matplotlib, the rest of this file does not

    image = read_radiograph(path)
    return radiograph_to_volume_node(image, case_name(path))


def source_dicom_files(node) -> list[Path]:
    """The DICOM files a volume came from: the DICOM file this module read it from, or the
    instances Slicer's DICOM browser recorded (looked up in Slicer's DICOM database)."""
    uids = (node.GetAttribute(DICOM_INSTANCE_UIDS) or "").split()
    source = node.GetAttribute(SOURCE_PATH)
    if uids and source and Path(source).is_file():
        return [Path(source)]
    database = getattr(slicer, "dicomDatabase", None)
    if not uids or database is None:
        return []
    files = [database.fileForInstance(uid) for uid in uids]
    return [Path(f) for f in files if f]

