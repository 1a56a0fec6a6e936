"""The lung fields of a detection as a segment of a segmentation node: a semi-transparent outline
over the radiograph, toggled from the panel, saved with the scene and exported with the case.

The segmentation is referenced from the input volume (like the heatmap), so a reloaded scene finds
it again, and it is removed with the case in batch runs.
"""

from __future__ import annotations

import numpy as np
import slicer
import vtk
from vtk.util.numpy_support import vtk_to_numpy

from SSLAnomalyLib.mrml.volumes import VOLUME_REFERENCE, ijk_to_ras_matrix

LUNGS_REFERENCE = "SSLAnomaly.LungFields"  # input volume -> its lung-field segmentation
SEGMENT_NAME = "Lung fields"
COLOR = (0.35, 0.75, 1.0)
OUTLINE_OPACITY = 0.7


def oriented_labelmap(mask: np.ndarray, volume_node):
    """A (slices, rows, cols) uint8 mask as a labelmap placed like the volume."""
    labelmap = slicer.vtkOrientedImageData()
    labelmap.SetDimensions(*mask.shape[::-1])
    labelmap.AllocateScalars(vtk.VTK_UNSIGNED_CHAR, 1)
    labelmap.SetImageToWorldMatrix(slicer.util.vtkMatrixFromArray(ijk_to_ras_matrix(volume_node)))
    vtk_to_numpy(labelmap.GetPointData().GetScalars()).reshape(mask.shape)[:] = mask
    return labelmap


def lung_node(volume_node):
    """The lung-field segmentation of `volume_node`, or None before a detection made one."""
    return volume_node.GetNodeReference(LUNGS_REFERENCE)


def lung_fields_name(volume_node) -> str:
    """The lung fields' name in the Data module and a saved scene's files: their volume's."""
    return f"{volume_node.GetName()} lung fields"


def show_lung_fields(volume_node, lungs: np.ndarray, visible: bool = True):
    """Create (or refill, on a repeated detection or a geometry edit) the lung-field segment of `volume_node` from
    its (slices, rows, cols) mask, placed and transformed like the volume."""
    node = lung_node(volume_node)
    if node is None:
        node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", lung_fields_name(volume_node))
        node.CreateDefaultDisplayNodes()
        volume_node.SetNodeReferenceID(LUNGS_REFERENCE, node.GetID())
        node.SetNodeReferenceID(VOLUME_REFERENCE, volume_node.GetID())
    node.SetAndObserveTransformNodeID(volume_node.GetTransformNodeID())
    node.GetSegmentation().RemoveAllSegments()
    node.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
    mask = (np.asarray(lungs) > 0).astype(np.uint8)
    node.AddSegmentFromBinaryLabelmapRepresentation(oriented_labelmap(mask, volume_node), SEGMENT_NAME, COLOR)
    display = node.GetDisplayNode()
    display.SetVisibility2DFill(False)
    display.SetVisibility2DOutline(True)
    display.SetOpacity2DOutline(OUTLINE_OPACITY)
    display.SetVisibility(visible)
    return node


def set_lung_fields_visible(volume_node, visible: bool) -> None:
    node = lung_node(volume_node)
    if node is not None:
        node.GetDisplayNode().SetVisibility(bool(visible))


def lung_mask(volume_node, as_placed: bool = False) -> np.ndarray | None:
    """The lung fields as a (slices, rows, cols) uint8 array on the volume's grid, or None. `as_placed`: on the grid
    they were placed on (`placed_grid`), where they lie after the volume's geometry was edited."""
    node = lung_node(volume_node)
    if node is None:
        return None
    segment_id = node.GetSegmentation().GetSegmentIdBySegmentName(SEGMENT_NAME)
    if not as_placed:
        return np.asarray(slicer.util.arrayFromSegmentBinaryLabelmap(node, segment_id, volume_node), np.uint8)
    segment_ids = vtk.vtkStringArray()
    segment_ids.InsertNextValue(segment_id)
    labelmap = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
    try:
        slicer.modules.segmentations.logic().ExportSegmentsToLabelmapNode(
            node, segment_ids, labelmap, None, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY)
        return np.asarray(slicer.util.arrayFromVolume(labelmap), np.uint8)
    finally:
        if labelmap.GetDisplayNode() is not None:
            slicer.mrmlScene.RemoveNode(labelmap.GetDisplayNode().GetColorNode())
        slicer.mrmlScene.RemoveNode(labelmap)


def placed_grid(node) -> np.ndarray | None:
    """The IJK-to-RAS matrix of the grid the lung-field segmentation `node` was placed on: its reference geometry,
    which `show_lung_fields` sets to the volume's and a later edit of the volume's geometry leaves as it was. None
    while `show_lung_fields` is making it."""
    converter, segmentation = slicer.vtkSegmentationConverter, node.GetSegmentation()
    geometry = segmentation.GetConversionParameter(converter.GetReferenceImageGeometryParameterName())
    if not geometry or segmentation.GetSegmentIdBySegmentName(SEGMENT_NAME) == "":
        return None
    grid, matrix = slicer.vtkOrientedImageData(), vtk.vtkMatrix4x4()
    converter.DeserializeImageGeometry(geometry, grid)
    grid.GetImageToWorldMatrix(matrix)
    return slicer.util.arrayFromVTKMatrix(matrix)
