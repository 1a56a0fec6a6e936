"""A volume whose geometry is edited after detection: its spacing, origin or directions changed in the Volumes
module, or the volume put under a transform (or one hardened into it) in the Data or Transforms module.

A detection is of pixels: the heatmap is made on the volume's own grid, the lung fields and each finding's box
cover pixels of it. Left where they were, the heatmap and the boxes lay over other pixels than they were found on,
and the export mixed the two (a box's bbox_ijk read on the new grid, its segment cut from the heatmap's, the lung
fields resampled off the image). So they follow the volume: what detection made stays on the same pixels under the
volume's geometry now (the heatmap, which keeps the geometry it was made on, says where they were), under the
volume's transform, and a finding's detector centroid and area are those of its pixels now. Coordinates exported
(centroid_ras, the files' geometry) are the image's own, as Slicer saves the image: a transform is not applied.
"""

from __future__ import annotations

import numpy as np
import slicer

from SSLAnomalyLib.mrml.finding_rois import finding_nodes, keep_on_pixels
from SSLAnomalyLib.mrml.heatmap import heatmap_node
from SSLAnomalyLib.mrml.lungs import lung_mask, lung_node, show_lung_fields
from SSLAnomalyLib.mrml.volumes import ijk_to_ras_matrix


def follow_geometry(volume_node) -> bool:
    """Put the heatmap, lung fields and findings of `volume_node` back on its pixels after its geometry or
    transform changed; returns whether anything moved. Without a heatmap (none yet, or deleted by hand) where
    they were is not known, and nothing moves."""
    heat = heatmap_node(volume_node)
    if heat is None:
        return False
    old, new = ijk_to_ras_matrix(heat), ijk_to_ras_matrix(volume_node)
    lungs, findings, transform = lung_node(volume_node), finding_nodes(volume_node), volume_node.GetTransformNodeID()
    derived = [node for node in (heat, lungs, *findings) if node is not None]
    if np.allclose(old, new, rtol=0, atol=1e-6) and all(node.GetTransformNodeID() == transform for node in derived):
        return False
    for node in findings:
        keep_on_pixels(node, volume_node, old)
    if lungs is not None:
        show_lung_fields(volume_node, lung_mask(volume_node, grid=heat), lungs.GetDisplayNode().GetVisibility())
    heat.SetIJKToRASMatrix(slicer.util.vtkMatrixFromArray(new))
    heat.SetAndObserveTransformNodeID(transform)
    return True
