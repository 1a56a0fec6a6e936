"""The heatmap volume node, its colour map and display, and the slice views' layers.

The colour node is the module's own table, the hot ramp of the core's overlay picture (red at the
calibrated pixel threshold through orange and yellow to pale yellow at HOT_TOP times it, more opaque as it
rises), so the slice view and the overlay look alike in desktop Slicer and the slicer-core wheel;
pixels below the sensitivity threshold are transparent, so heat never darkens lung.
"""

from __future__ import annotations

import numpy as np
import slicer

from SSLAnomalyLib.core.reading.image import Radiograph
from SSLAnomalyLib.core.results.overlay import HOT_TOP, ramp_colours, ramp_opacity
from SSLAnomalyLib.mrml.headless import application_logic
from SSLAnomalyLib.mrml.volumes import ROLE, VOLUME_REFERENCE, ijk_to_ras_matrix, radiograph_to_volume_node

COLOR_NODE_NAME = "SSLAnomaly Heat"
HEATMAP_REFERENCE = "SSLAnomaly.Heatmap"  # input volume -> its heatmap volume
DEFAULT_OPACITY = 0.5


def heatmap_color_node():
    """The module's colour table, created once per scene (found again by name after reload)."""
    node = slicer.mrmlScene.GetFirstNode(COLOR_NODE_NAME, "vtkMRMLColorTableNode")
    if node is not None:
        return node
    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLColorTableNode", COLOR_NODE_NAME)
    node.SetTypeToUser()
    node.SetNumberOfColors(256)
    for i, ((r, g, b), a) in enumerate(zip(ramp_colours(256), ramp_opacity(256))):
        node.SetColor(i, f"level {i}", r, g, b, a)
    node.SetAttribute("Category", "SSLAnomaly")
    return node


def heatmap_node(volume_node):
    """The heatmap shown for `volume_node`, or None before detection."""
    return volume_node.GetNodeReference(HEATMAP_REFERENCE)


def heatmap_name(volume_node) -> str:
    """The heatmap's name in the Data module and a saved scene's files: its volume's (a clone's apart from its
    original's)."""
    return f"{volume_node.GetName()} anomaly heatmap"


def show_heatmap(volume_node, heatmap: Radiograph, pixel_threshold: float,
                 opacity: float = DEFAULT_OPACITY):
    """Create (or refill, on a repeated detection) the heatmap node of `volume_node` on its exact
    grid and transform, colour it, and show it over the input in every slice view."""
    node = heatmap_node(volume_node)
    node = radiograph_to_volume_node(heatmap, heatmap_name(volume_node), node)
    node.SetAndObserveTransformNodeID(volume_node.GetTransformNodeID())
    volume_node.SetNodeReferenceID(HEATMAP_REFERENCE, node.GetID())
    node.SetNodeReferenceID(VOLUME_REFERENCE, volume_node.GetID())
    node.SetAttribute(ROLE, "heatmap")
    display = node.GetDisplayNode()
    display.SetAndObserveColorNodeID(heatmap_color_node().GetID())
    display.SetAutoWindowLevel(0)
    display.SetWindowLevelMinMax(pixel_threshold, HOT_TOP * pixel_threshold)
    display.SetAutoThreshold(0)
    display.SetApplyThreshold(1)
    display.SetUpperThreshold(float(np.finfo(np.float32).max))
    set_heatmap_threshold(node, pixel_threshold)
    show_in_slice_views(volume_node, node, opacity)
    return node


def set_heatmap_threshold(node, threshold: float) -> None:
    """Hide heatmap pixels below `threshold` (the sensitivity slider)."""
    node.GetDisplayNode().SetLowerThreshold(float(threshold))


def slice_composite_nodes() -> list:
    scene = slicer.mrmlScene
    return [scene.GetNthNodeByClass(i, "vtkMRMLSliceCompositeNode")
            for i in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode"))]


def set_foreground_opacity(opacity: float) -> None:
    """Heatmap opacity over the radiograph in every slice view."""
    for composite in slice_composite_nodes():
        composite.SetForegroundOpacity(float(opacity))


def show_in_slice_views(background, foreground, opacity: float = DEFAULT_OPACITY) -> None:
    """Background and foreground layers of every slice view, fitted to the image; a radiograph's
    own plane is shown in the view looking at it."""
    for composite in slice_composite_nodes():
        composite.SetBackgroundVolumeID(background.GetID())
        composite.SetForegroundVolumeID(foreground.GetID() if foreground is not None else None)
        composite.SetForegroundOpacity(float(opacity))
    if background.GetImageData() is None:
        return
    slice_nodes = _slice_nodes()
    if background.GetImageData().GetDimensions()[2] == 1:
        facing = slice_nodes[view_facing(background)]
        if abs(_slice_normal(facing) @ _image_normal_ras(background)) < 0.999:  # oblique radiograph
            facing.RotateToVolumePlane(background)
    for logic in _slice_logics():
        logic.FitSliceToAll()


def view_facing(volume_node) -> str:
    """Layout name of the slice view whose normal is closest to the image's k axis: the view in
    which a radiograph is seen whole."""
    normal = _image_normal_ras(volume_node)
    return max(_slice_nodes().items(), key=lambda item: abs(_slice_normal(item[1]) @ normal))[0]


def _slice_logics() -> list:
    logics = application_logic().GetSliceLogics()
    return [logics.GetItemAsObject(i) for i in range(logics.GetNumberOfItems())]


def _slice_nodes() -> dict:
    return {logic.GetSliceNode().GetLayoutName(): logic.GetSliceNode() for logic in _slice_logics()}


def _image_normal_ras(volume_node) -> np.ndarray:
    k_axis = ijk_to_ras_matrix(volume_node)[:3, 2]
    return k_axis / np.linalg.norm(k_axis)


def _slice_normal(slice_node) -> np.ndarray:
    return slicer.util.arrayFromVTKMatrix(slice_node.GetSliceToRAS())[:3, 2]
