"""The review held on a volume's finding nodes <-> the core's review file (review.py), so that each
decision is also autosaved outside the scene and a review can be restored after a crash, or onto a
new detection of the same image."""

from __future__ import annotations

import contextlib

import slicer
import vtk

from SSLAnomalyLib.core.files.digest import sha256
from SSLAnomalyLib.core.results.review import check_same_image, load_review, review_path, save_review
from SSLAnomalyLib.mrml.case import case_result
from SSLAnomalyLib.mrml.clones import own_results
from SSLAnomalyLib.mrml.finding_rois import (READER, VOLUME_REFERENCE, add_missed_finding, engine_of, finding_nodes,
                                             finding_record, mark_decided, model_of, move_finding, reader_touched,
                                             restore_decisions, restore_model_finding, review_finding,
                                             untouched)
from SSLAnomalyLib.mrml.geometry import follow_geometry
from SSLAnomalyLib.mrml.review_files import hold, keep_deleted, keep_unheld
from SSLAnomalyLib.mrml.table import TABLE_REFERENCE, sync_findings_table
from SSLAnomalyLib.mrml.volumes import image_identity_of, source_of


def review_of(volume_node) -> dict:
    """The review of `volume_node` in the review file's form, keyed by the image its findings were detected on."""
    result = case_result(volume_node) or {}
    return {"input": source_of(volume_node), "image_id": result.get("image_id") or image_identity_of(volume_node),
            "model": result.get("model", ""), "findings": [_saved_form(n) for n in finding_nodes(volume_node)]}


def restore_review(volume_node, path) -> int:
    """Apply the review saved in `path` (`apply_review`), refused where it is another image's (ReviewError), onto
    the volume's own findings (a clone's are copied first: the findings it adds or replaces are not the other's).
    Its decisions are then in the scene, so the volume holds the file: its autosave may write over it."""
    digest = sha256(path)  # before reading: a file written meanwhile is not taken as held, so it would be kept
    review = load_review(path)
    check_same_image(review, image_identity_of(volume_node), path)
    own_results(volume_node)
    applied = apply_review(volume_node, review)
    hold(volume_node, path, digest)
    return applied


def apply_review(volume_node, review: dict) -> int:
    """Put a saved review's decisions onto the current findings of `volume_node`. A saved finding is
    matched (`_match`) by its box and slice as detected, a model finding also by its model (a review of
    before without one: the review's), and moved where the reader moved it. A finding in the scene the
    reader has already decided on, noted, relabelled or moved keeps what the reader made of it (it is
    newer than the file); a saved finding with anything of the reader's that no finding takes is put
    back as its own finding beside it (a model finding as its model made it, replacing the current
    detection's untouched finding at that place), so nothing is dropped or put onto another finding.
    Returns how many saved findings were applied."""
    applied, abnormal = 0, (case_result(volume_node) or {}).get("abnormal")
    for saved in review["findings"]:
        saved = dict(saved, model=saved.get("model") or review["model"])  # a review of before: its model
        here = [node for node in finding_nodes(volume_node) if _match(_saved_form(node)) == _match(saved)]
        own = [node for node in here if saved["origin"] == READER or model_of(node) == saved["model"]]
        node = next((n for n in own if _holds(n, saved)), None) or next((n for n in own if untouched(n)), None)
        if node is None:
            if saved["origin"] != READER and not reader_touched(saved):
                continue  # nothing of the reader's on it to keep
            for untouched_node in filter(untouched, here):
                slicer.mrmlScene.RemoveNode(untouched_node)
            node = (add_missed_finding(volume_node, saved["bbox_ijk"], saved.get("slice_index", 0), saved["label"])
                    if saved["origin"] == READER else restore_model_finding(volume_node, saved, abnormal))
        if saved["bbox_ijk"] != finding_record(node)["bbox_ijk"]:
            move_finding(node, saved["bbox_ijk"], saved.get("slice_index", 0))
        review_finding(node, status=saved["status"], label=_reader_label(saved), note=saved["note"])
        restore_decisions(node, saved)  # the reader's, of then
        applied += 1
    return applied


def _saved_form(node) -> dict:
    """A finding node as the review file holds it."""
    return dict(finding_record(node), **engine_of(node))


def _holds(node, saved: dict) -> bool:
    """Whether a finding in the scene already is `saved` as the reader left it (a restore again)."""
    record = finding_record(node)
    label = _reader_label(saved)
    return all(record[key] == saved[key] for key in ("status", "note", "bbox_ijk")) and label in (None, record["label"])


def _reader_label(saved: dict) -> str | None:
    """The label the reader gave a saved finding; None where it is the detector's, which follows the
    verdict of the detection it is restored onto (`follow_verdict`), not the one it was saved under. A
    review saved before the detector's label was kept: its label, which may be the reader's."""
    if saved["origin"] == READER or saved["label"] != saved.get("engine_label"):
        return saved["label"]
    return None


def _match(record: dict) -> tuple:
    """What makes a saved finding the same as one in the scene: a reader's by its box, a model
    finding by the box the detector gave it (a review file saved before that was kept: its box)."""
    box = record["bbox_ijk"] if record["origin"] == READER else record.get("engine_bbox_ijk", record["bbox_ijk"])
    return record["origin"], tuple(box), record.get("slice_index", 0)


def autosave(volume_node, folder) -> None:
    """After a review change: the table follows, and the review is autosaved in `folder` (None: not), a
    review there that the volume does not hold kept aside first (`keep_unheld`)."""
    sync_findings_table(volume_node)
    if folder is not None:
        review = review_of(volume_node)
        path = review_path(folder, volume_node.GetName(), review["image_id"])
        keep_unheld(volume_node, path)
        keep_deleted(volume_node, path, review)
        save_review(path, review)
        hold(volume_node, path, sha256(path))


_watches = {}  # scene -> the BoxWatch that watches the volumes added to it (the latest made: one Logic a module)


class BoxWatch:
    """Calls `moved(volume_node)` when a finding's box is dragged in a view or edited in the Markups
    module, or a finding the reader touched is deleted by hand (Data module): no button reports that change, so
    the table and the autosave (hence a crash, or a restore after detecting again) would otherwise miss it. A drag
    is reported once, as it ends."""

    def __init__(self, moved) -> None:
        self._moved, self._paused, self._dragged = moved, False, set()
        self._deleted = {}  # finding node being deleted by hand -> its volume, reported once the node is gone
        self._boxes = {}  # finding node -> its box and slice as last seen
        self._volumes = set()  # volumes whose geometry edits are followed (geometry.follow_geometry)

    def watch(self, volume_node) -> None:
        """Watch the finding nodes of `volume_node` not watched yet (those of a closed scene are let go), and its
        geometry: an edit (Volumes module, a transform) takes what detection made along, which is reported too. So
        is the geometry of each volume added to its scene after: a clone (Data module) shares the results."""
        self._boxes = {node: box for node, box in self._boxes.items() if node.GetScene() is not None}
        scene = volume_node.GetScene()
        if scene not in _watches:
            scene.AddObserver(scene.NodeAddedEvent, _volume_added)
            scene.AddObserver(scene.NodeAboutToBeRemovedEvent, _node_removing)
            scene.AddObserver(scene.NodeRemovedEvent, _node_removed)
        _watches[scene] = self
        self.watch_geometry(volume_node)
        for node in finding_nodes(volume_node):
            if node not in self._boxes:
                node.AddObserver(slicer.vtkMRMLMarkupsNode.PointModifiedEvent, self._modified)
                node.AddObserver(slicer.vtkMRMLMarkupsNode.PointStartInteractionEvent, self._drag_started)
                node.AddObserver(slicer.vtkMRMLMarkupsNode.PointEndInteractionEvent, self._drag_ended)
                self._boxes[node] = _box(node)

    def watch_geometry(self, volume_node) -> None:
        """Follow the geometry of `volume_node`; volumes removed since are let go (a batch adds and removes many)."""
        self._volumes = {volume for volume in self._volumes if volume.GetScene() is not None}
        if volume_node not in self._volumes:
            self._volumes.add(volume_node)
            for event in (vtk.vtkCommand.ModifiedEvent, slicer.vtkMRMLTransformableNode.TransformModifiedEvent):
                volume_node.AddObserver(event, self._geometry_edited)
            self._geometry_edited(volume_node, None)  # an edit made before it was watched (a scene just loaded)

    @contextlib.contextmanager
    def paused(self):
        """Boxes moved by the block (a restore) are taken as they end up, reported by the caller once."""
        was_paused, self._paused = self._paused, True
        try:
            yield
        finally:
            self._paused = was_paused
            if not was_paused:
                self._boxes = {node: _box(node) for node in self._boxes if node.GetScene() is not None}

    def _geometry_edited(self, volume_node, _event) -> None:
        """The boxes follow the image on the same pixels, a move of no one's (paused: each box passes through
        other pixels as its matrix, then its size, is set). A scene being read is followed once read (loadScene)."""
        scene = volume_node.GetScene()
        with self.paused():
            followed = scene is not None and not scene.IsImporting() and follow_geometry(volume_node)
        if followed:
            self._moved(volume_node)

    def _drag_started(self, node, _event) -> None:
        self._dragged.add(node)

    def _drag_ended(self, node, _event) -> None:
        self._dragged.discard(node)
        self._modified(node, _event)

    def _removing(self, node) -> None:
        """A finding of the reader's or that the reader touched, deleted by hand: not an untouched one (a detection
        again or a restore replaces it), nor one removed with its volume (whose table goes first: case.remove_derived)
        or given up for a copy (clones.own_results: the volume holds the copy)."""
        volume, scene = node.GetNodeReference(VOLUME_REFERENCE), node.GetScene()
        if self._paused or node not in self._boxes or volume is None or scene.IsClosing() or scene.IsImporting() \
                or volume.GetNodeReference(TABLE_REFERENCE) is None or node not in finding_nodes(volume) \
                or untouched(node):
            return
        self._deleted[node] = volume

    def _removed(self, node) -> None:
        self._boxes.pop(node, None)
        volume = self._deleted.pop(node, None)
        if volume is not None:
            self._moved(volume)

    def _modified(self, node, _event) -> None:
        if self._paused or node in self._dragged or node not in self._boxes \
                or node.GetNodeReference(VOLUME_REFERENCE) is None:
            return  # a restore, a drag going on, or the finding of a volume since deleted
        box = _box(node)
        if box != self._boxes[node]:
            self._boxes[node] = box
            mark_decided(node)
            self._moved(node.GetNodeReference(VOLUME_REFERENCE))


@vtk.calldata_type(vtk.VTK_OBJECT)
def _volume_added(scene, _event, node) -> None:
    if node.IsA("vtkMRMLScalarVolumeNode") and not node.IsA("vtkMRMLLabelMapVolumeNode"):
        _watches[scene].watch_geometry(node)


@vtk.calldata_type(vtk.VTK_OBJECT)
def _node_removing(scene, _event, node) -> None:
    _watches[scene]._removing(node)


@vtk.calldata_type(vtk.VTK_OBJECT)
def _node_removed(scene, _event, node) -> None:
    _watches[scene]._removed(node)


def _box(node) -> tuple:
    record = finding_record(node)
    return tuple(record["bbox_ijk"]), record["slice_index"]
