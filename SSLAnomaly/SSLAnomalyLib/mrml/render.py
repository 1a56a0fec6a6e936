"""An offscreen picture of a slice view: Slicer's own slice pipeline (slice logic blending the
layers, displayable managers drawing markups and segmentations) on a render window with no display.
Used for regression pictures and report figures where no Qt view exists; without an X display it
uses EGL (Mesa's software renderer is enough).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import slicer
import vtk
from vtk.util.numpy_support import vtk_to_numpy

from SSLAnomalyLib.core.results.outputs import write_picture
from SSLAnomalyLib.mrml.headless import application_logic, is_desktop_slicer
from SSLAnomalyLib.mrml.heatmap import view_facing

DISPLAYABLE_MANAGERS = ("vtkMRMLMarkupsDisplayableManager", "vtkMRMLSegmentationsDisplayableManager2D")


def render_slice_view(volume_node, path=None, size: tuple[int, int] = (600, 600), view: str | None = None):
    """Render the slice view that faces `volume_node` (or the named `view`) fitted to it; returns
    the picture as a (rows, cols, 3) uint8 array (top row first) and writes it as PNG if `path`."""
    if not is_desktop_slicer() and not os.environ.get("DISPLAY"):
        os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
    app_logic = application_logic()
    slice_logic = app_logic.GetSliceLogicByLayoutName(view or view_facing(volume_node))
    slice_node = slice_logic.GetSliceNode()
    slice_node.SetDimensions(size[0], size[1], 1)
    slice_logic.FitSliceToAll()

    window = vtk.vtkRenderWindow()
    window.SetOffScreenRendering(1)
    window.SetSize(*size)
    renderer = vtk.vtkRenderer()
    window.AddRenderer(renderer)
    interactor = vtk.vtkGenericRenderWindowInteractor()  # displayable managers' widgets need one
    interactor.SetRenderWindow(window)
    mapper = vtk.vtkImageMapper()  # the blended layers first: the managers' actors draw over them
    mapper.SetInputConnection(slice_logic.GetImageDataConnection())
    mapper.SetColorWindow(255)
    mapper.SetColorLevel(127.5)
    actor = vtk.vtkActor2D()
    actor.SetMapper(mapper)
    renderer.AddViewProp(actor)
    factory = slicer.vtkMRMLSliceViewDisplayableManagerFactory.GetInstance()
    factory.SetMRMLApplicationLogic(app_logic)
    for name in DISPLAYABLE_MANAGERS:
        if not factory.IsDisplayableManagerRegistered(name):
            factory.RegisterDisplayableManager(name)
    managers = factory.InstantiateDisplayableManagers(renderer)
    managers.SetMRMLDisplayableNode(slice_node)
    try:
        window.Render()
        grab = vtk.vtkWindowToImageFilter()
        grab.SetInput(window)
        grab.Update()
        image = grab.GetOutput()
        width, height, _ = image.GetDimensions()
        pixels = vtk_to_numpy(image.GetPointData().GetScalars()).reshape(height, width, -1)[::-1, :, :3].copy()
    finally:
        managers.SetMRMLDisplayableNode(None)
        window.Finalize()
    if path is not None:
        write_picture(pixels, Path(path))
    return pixels


def ras_to_picture(volume_node, ras, view: str | None = None) -> tuple[int, int]:
    """(row, column) in the picture `render_slice_view` made of the given RAS point."""
    slice_node = application_logic().GetSliceLogicByLayoutName(view or view_facing(volume_node)).GetSliceNode()
    xy = np.linalg.inv(slicer.util.arrayFromVTKMatrix(slice_node.GetXYToRAS())) @ [*ras, 1.0]
    return int(round(slice_node.GetDimensions()[1] - 1 - xy[1])), int(round(xy[0]))
