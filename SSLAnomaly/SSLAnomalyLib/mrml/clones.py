"""A volume that shares its results with another: Slicer's Clone (Data module) of a volume that has results.

Clone copies a volume's node references: the clone shares its original's heatmap, lung fields, findings and table.
That is right while the two have one geometry and one detection. Once either is edited (spacing, origin, directions,
a transform; geometry.follow_geometry), detected again (case.show_detection), or given a finding the reader adds
(logic.addMissedFinding) or a saved review's (review.restore_review: the shared table listed such a finding for the
other, whose row then picked its own finding of that id), the results cannot be both images'.
So the volume edited or detected, the clone or its original, is given its own copy of them, the reader's review
included (`own_results`), which then follows it or is refilled, and the other keeps them as they were: neither
image's results move onto the other's pixels or are replaced by the other's detection. A volume deleted leaves what
it shares to the other (`let_go`, case.remove_derived).
"""

from __future__ import annotations

import slicer

from SSLAnomalyLib.mrml.finding_rois import FINDING_REFERENCE, finding_nodes
from SSLAnomalyLib.mrml.heatmap import HEATMAP_REFERENCE, heatmap_name, heatmap_node
from SSLAnomalyLib.mrml.lungs import LUNGS_REFERENCE, lung_fields_name, lung_node
from SSLAnomalyLib.mrml.table import TABLE_REFERENCE, sync_findings_table, table_name
from SSLAnomalyLib.mrml.volumes import VOLUME_REFERENCE

_ROLES = (HEATMAP_REFERENCE, LUNGS_REFERENCE, TABLE_REFERENCE, FINDING_REFERENCE)


def derived_nodes(scene, volume_node) -> list:
    """The nodes detection made for `volume_node` (heatmap, lung fields, table, finding ROIs) in `scene`,
    found by the IDs it references them by, which a volume just removed from the scene still holds."""
    ids = [volume_node.GetNthNodeReferenceID(role, i) for role in _ROLES
           for i in range(volume_node.GetNumberOfNodeReferences(role))]
    return [node for node in map(scene.GetNodeByID, ids) if node is not None]


def own_results(volume_node) -> bool:
    """Give `volume_node` its own copy of the results it shares with another volume (`take_own_results`) and leave
    those to the other as they are (`let_go`); returns whether it shared any."""
    scene = volume_node.GetScene()
    shared = derived_nodes(scene, volume_node)
    if all(_holder(scene, node, volume_node) is None for node in shared):
        return False
    take_own_results(volume_node)
    let_go(scene, volume_node, shared)
    return True


def let_go(scene, volume_node, nodes) -> None:
    """`volume_node` (deleted, or given its own results) lets go of `nodes`, results it held: each is removed, unless
    another volume holds it too, and then it becomes that volume's, named after it (nothing the reader made is lost
    with a clone)."""
    for node in nodes:
        holder = _holder(scene, node, volume_node)
        if holder is None:
            scene.RemoveNode(node)
        elif node.GetNodeReferenceID(VOLUME_REFERENCE) in (None, volume_node.GetID()):  # None: the scene dropped
            # the reference with the volume (or a scene saved before the heatmap and lung fields held one)
            node.SetNodeReferenceID(VOLUME_REFERENCE, holder.GetID())
            _name_after(node, holder)


def _holder(scene, node, volume_node):
    """A volume but `volume_node` in `scene` that holds `node` among its results, or None."""
    volumes = (scene.GetNthNodeByClass(i, "vtkMRMLScalarVolumeNode")
               for i in range(scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")))
    return next((volume for volume in volumes if volume.GetID() != volume_node.GetID()
                 and node.GetID() in {n.GetID() for n in derived_nodes(scene, volume)}), None)


def take_own_results(volume_node) -> None:
    """Give `volume_node` its own copy of the results it shows, as they are (on the pixels and geometry they were
    placed on), with its own findings table, named after it."""
    heat, lungs, findings = heatmap_node(volume_node), lung_node(volume_node), finding_nodes(volume_node)
    modifying = volume_node.StartModify()  # one change of the volume: its results are whole when it is reported
    for role in _ROLES:
        volume_node.RemoveNodeReferenceIDs(role)
    for node, role in ((heat, HEATMAP_REFERENCE), (lungs, LUNGS_REFERENCE),
                       *((finding, FINDING_REFERENCE) for finding in findings)):
        if node is not None:
            _copy(node, volume_node, role)
    sync_findings_table(volume_node)
    volume_node.EndModify(modifying)


def _copy(node, volume_node, role: str) -> None:
    """A copy of `node` (its data, attributes and display; Slicer's own copy) as `volume_node`'s `role`."""
    copy = slicer.mrmlScene.AddNewNodeByClass(node.GetClassName(), node.GetName())
    copy.CopyContent(node, True)
    copy.CreateDefaultDisplayNodes()
    copy.GetDisplayNode().CopyContent(node.GetDisplayNode())
    copy.SetAndObserveTransformNodeID(node.GetTransformNodeID())
    copy.SetNodeReferenceID(VOLUME_REFERENCE, volume_node.GetID())
    volume_node.AddNodeReferenceID(role, copy.GetID())
    _name_after(copy, volume_node)


def _name_after(node, volume_node) -> None:
    """Name `node`, the heatmap, lung fields or findings table of `volume_node`, after it, so that a reader tells a
    clone's from its original's in the Data module and in a saved scene's files (a finding is named by its own id)."""
    for role, name in ((HEATMAP_REFERENCE, heatmap_name), (LUNGS_REFERENCE, lung_fields_name),
                       (TABLE_REFERENCE, table_name)):
        if volume_node.GetNodeReferenceID(role) == node.GetID():
            node.SetName(name(volume_node))
