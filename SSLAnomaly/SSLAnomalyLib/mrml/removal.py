"""An input volume deleted from the scene (Data module, Delete key, console) takes what detection made
for it along: its heatmap, left as the slice views' foreground, showed the deleted patient's heat and
finding boxes over the next image loaded. A heatmap deleted alone takes the sensitivity slider along: the
findings it hid show again (case.follow_heatmap_removed). The review autosaved on disk is not touched: the reader's
decisions stay to be restored when the image is loaded again. A finding's ROI deleted alone leaves its volume's
findings table at once (case.follow_finding_removed; its review's autosave follows: review.BoxWatch).

Only `slicer` and `vtk` are imported here: the Logic sets this up when the module loads, before the
packages detection needs may be installed (mrml.case, which knows what a case holds, is imported when
a node of the module's is removed, and only such nodes exist once they are).
"""

from __future__ import annotations

import vtk

PREFIX = "SSLAnomaly."  # of the references the module's nodes hold (input -> heatmap, finding -> input, ...)
_observed = set()  # scenes observed: once each, however many Logics are made


def remove_derived_with_inputs(scene) -> None:
    """Observe `scene` so that removing a volume removes the nodes derived from it."""
    if scene not in _observed:
        _observed.add(scene)
        scene.AddObserver(scene.NodeRemovedEvent, _node_removed)


@vtk.calldata_type(vtk.VTK_OBJECT)
def _node_removed(scene, _event, node) -> None:
    """A scene being closed or cleared, or read into, removes every node itself: nothing to follow."""
    if scene.IsClosing() or scene.IsImporting() or not any(
            node.GetNthNodeReferenceRole(i).startswith(PREFIX) for i in range(node.GetNumberOfNodeReferenceRoles())):
        return
    from SSLAnomalyLib.mrml.case import follow_finding_removed, follow_heatmap_removed, remove_derived
    from SSLAnomalyLib.mrml.volumes import is_heatmap

    remove_derived(scene, node)
    if is_heatmap(node):
        follow_heatmap_removed(scene, node)
    follow_finding_removed(scene, node)
