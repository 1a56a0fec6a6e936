"""A clone of a volume that has results (Slicer's Clone, Data module), once its geometry is no longer its original's.

Clone copies a volume's node references: the clone shares its original's heatmap, lung fields, findings and table
(case.remove_derived keeps them for the other when either is deleted). That is right while the two have one
geometry; once either is edited (spacing, origin, directions, a transform) the results cannot lie on both images'
pixels. They stay with the volume they belong to (`results_owner`), and the clone is given its own copy of them,
the reader's review included, which then follows the clone (geometry.follow_geometry): neither image's results move
onto the other's pixels.
"""

from __future__ import annotations

import slicer

from SSLAnomalyLib.mrml.finding_rois import FINDING_REFERENCE, finding_nodes
from SSLAnomalyLib.mrml.heatmap import HEATMAP_REFERENCE, heatmap_node
from SSLAnomalyLib.mrml.lungs import LUNGS_REFERENCE, lung_node
from SSLAnomalyLib.mrml.table import TABLE_REFERENCE, sync_findings_table
from SSLAnomalyLib.mrml.volumes import VOLUME_REFERENCE


def results_owner(volume_node):
    """The volume the results `volume_node` shows belong to (the volume its heatmap, findings or lung fields refer
    back to); None where none refers back (no results, or a scene saved before the heatmap did, without findings)."""
    derived = (heatmap_node(volume_node), *finding_nodes(volume_node), lung_node(volume_node))
    return next((node.GetNodeReference(VOLUME_REFERENCE) for node in derived
                 if node is not None and node.GetNodeReference(VOLUME_REFERENCE) is not None), None)


def take_own_results(volume_node) -> None:
    """Give `volume_node` its own copy of the results it shares with the volume they belong to, as they are (on
    that volume's pixels and geometry), with its own findings table."""
    heat, lungs, findings = heatmap_node(volume_node), lung_node(volume_node), finding_nodes(volume_node)
    modifying = volume_node.StartModify()  # one change of the volume: its results are whole when it is reported
    for role in (HEATMAP_REFERENCE, LUNGS_REFERENCE, TABLE_REFERENCE, FINDING_REFERENCE):
        volume_node.RemoveNodeReferenceIDs(role)
    if heat is not None:
        volume_node.SetNodeReferenceID(HEATMAP_REFERENCE, _copy(heat, volume_node).GetID())
    if lungs is not None:
        volume_node.SetNodeReferenceID(LUNGS_REFERENCE, _copy(lungs, volume_node).GetID())
    for node in findings:
        volume_node.AddNodeReferenceID(FINDING_REFERENCE, _copy(node, volume_node).GetID())
    sync_findings_table(volume_node)
    volume_node.EndModify(modifying)


def _copy(node, volume_node):
    """A copy of `node` (its data, attributes and display; Slicer's own copy) belonging to `volume_node`."""
    copy = slicer.mrmlScene.AddNewNodeByClass(node.GetClassName(), node.GetName())
    copy.CopyContent(node, True)
    copy.CreateDefaultDisplayNodes()
    copy.GetDisplayNode().CopyContent(node.GetDisplayNode())
    copy.SetAndObserveTransformNodeID(node.GetTransformNodeID())
    copy.SetNodeReferenceID(VOLUME_REFERENCE, volume_node.GetID())
    return copy
