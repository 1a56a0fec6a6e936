"""A volume whose geometry is edited after detection: its spacing, origin or directions changed in the Volumes
module, or the volume put under a transform (or one hardened into it) in the Data or Transforms module.

A detection is of pixels: the heatmap is made on the volume's own grid, the lung fields and each finding's box
cover pixels of it. Left where they were, the heatmap and the boxes lay over other pixels than they were found on,
and the export mixed the two (a box's bbox_ijk read on the new grid, its segment cut from the heatmap's, the lung
fields resampled off the image). So they follow the volume: what detection made stays on the same pixels under the
volume's geometry now, under the volume's transform, and a finding's detector centroid and area are those of its pixels now. Coordinates exported
(centroid_ras, the files' geometry) are the image's own, as Slicer saves the image: a transform is not applied.
Where each was placed is kept by each: the heatmap's own grid, the lung fields' reference geometry, a finding's
recorded geometry (finding_rois.placed_on), so they follow a volume whose heatmap was deleted by hand too. A volume
that shares its results with another (a clone and its original) gets its own copy of them first, and the other keeps
them where they are, on its pixels (clones.own_results).
"""

from __future__ import annotations

import numpy as np
import slicer

from SSLAnomalyLib.mrml.clones import own_results
from SSLAnomalyLib.mrml.finding_rois import finding_nodes, keep_on_pixels, placed_on
from SSLAnomalyLib.mrml.heatmap import heatmap_node
from SSLAnomalyLib.mrml.lungs import lung_mask, lung_node, placed_grid, show_lung_fields
from SSLAnomalyLib.mrml.volumes import ijk_to_ras_matrix


def follow_geometry(volume_node) -> bool:
    """Put the heatmap, lung fields and findings of `volume_node` back on its pixels after its geometry or
    transform changed; returns whether anything moved."""
    new, transform = ijk_to_ras_matrix(volume_node), volume_node.GetTransformNodeID()
    moved = [(node, old) for node, old in _placed(volume_node)
             if not np.allclose(old, new, rtol=0, atol=1e-6) or node.GetTransformNodeID() != transform]
    if not moved:
        return False
    if own_results(volume_node):  # shared with a clone (or its original): they stay with it, where they are
        return follow_geometry(volume_node)
    for node, old in moved:
        if node.IsA("vtkMRMLMarkupsROINode"):
            keep_on_pixels(node, volume_node, old)
        elif node.IsA("vtkMRMLSegmentationNode"):
            show_lung_fields(volume_node, lung_mask(volume_node, as_placed=True), node.GetDisplayNode().GetVisibility())
        else:
            node.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(new))
            node.SetAndObserveTransformNodeID(transform)
    return True


def _placed(volume_node) -> list:
    """(node, the IJK-to-RAS matrix it was placed on) of the heatmap, lung fields and findings of `volume_node`; a
    finding whose placing is not known (a scene saved before it was recorded, its heatmap deleted) is left out."""
    heat, lungs = heatmap_node(volume_node), lung_node(volume_node)
    grid = ijk_to_ras_matrix(heat) if heat is not None else None
    placed = [(node, placed_on(node, grid)) for node in finding_nodes(volume_node)]
    placed += [(heat, grid)] if heat is not None else []
    placed += [(lungs, placed_grid(lungs))] if lungs is not None else []
    return [(node, old) for node, old in placed if old is not None]
