"""Which review files a volume's review holds, so that its autosave never writes over one it does not.

The autosave file of an image may hold a review this scene never saw: one of an earlier session whose
restore the reader declined (or never asked for), of the same image in another scene or Slicer, or one
written since a scene bundle was saved. Its decisions are in no scene, so writing over it would lose them:
it is kept aside first (`keep_aside`; one of an earlier session is added to the copy kept so before, so that they
make one file: `_keep_declined`), and the reader is told where (Slicer's log and status bar). A
file the volume wrote or restored (its decisions are then in the scene) is recorded with its digest on
the volume node (so a saved scene knows it too), and is written over while it is unchanged. The record names the
node it is of: Slicer's Clone (Data module) copies a volume's attributes, and a clone holds no file its original
wrote (renamed as the original, or left alone when it is deleted, it would write over the original's review).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import slicer

from SSLAnomalyLib.core.files.digest import sha256
from SSLAnomalyLib.core.results.review import (ReviewError, add_to_kept, is_kept_copy, keep_aside, kept_copies,
                                              load_review)
from SSLAnomalyLib.mrml.finding_rois import READER, reader_touched
from SSLAnomalyLib.mrml.headless import is_desktop_slicer

HELD = "SSLAnomaly.ReviewFiles"  # JSON {"volume": its node ID, "files": {review file: its SHA-256 as the volume
#                                   last wrote or restored it}}


def hold(volume_node, path, digest: str) -> None:
    """Record that the review of `volume_node` holds the file `path` as it was when `digest` was taken."""
    held = _held(volume_node)
    held[_name(path)] = digest
    volume_node.SetAttribute(HELD, json.dumps({"volume": volume_node.GetID(), "files": held}))


def keep_unheld(volume_node, path) -> None:
    """Before the review of `volume_node` is autosaved to `path`: a file there that it does not hold is
    kept aside, and the reader told where. A file another volume of the scene wrote (the same image under the
    same name) goes to that volume's copy (`_copy_of`), which it then holds, or to a new one."""
    path = Path(path)
    digest = sha256(path) if path.exists() else None
    if digest is None or _held(volume_node).get(_name(path)) == digest:
        return
    holder = next((v for v in _volumes(volume_node.GetScene()) if _held(v).get(_name(path)) == digest), None)
    if holder is not None:
        kept, how = _copy_of(holder, path), "unchanged"
        kept = path.replace(kept) if kept is not None else keep_aside(path)
        hold(holder, kept, digest)
    else:
        kept, how = _keep_declined(volume_node.GetScene(), path)
    whose = (f"is the review of '{holder.GetName()}', another volume of this image in this scene" if holder
             else "was not restored into this scene")
    _tell_kept(volume_node, kept,
               f"the review of '{volume_node.GetName()}' saved earlier in {path} {whose}; it is kept, {how}, as "
               f"{kept}, and the review made here is autosaved in {path}. To add the kept decisions to it",
               f"an earlier review of '{volume_node.GetName()}' that was not restored")


def keep_deleted(volume_node, path, review: dict) -> None:
    """Before `review`, the review of `volume_node`, is autosaved to `path` (its own, `keep_unheld`): where the file
    there holds a finding the reader added or decided on that the review no longer has (its ROI deleted by hand, so
    gone from the scene, the table and exports), that file is kept aside, unchanged, and the reader told where, so
    that a deletion made by mistake loses no decision: restoring the file brings the finding back."""
    path = Path(path)
    ids = {f["id"] for f in review["findings"]}
    gone = [f for f in (load_review(path) or {"findings": []})["findings"]
            if f["id"] not in ids and (f["origin"] == READER or reader_touched(f))]
    if not gone:
        return
    kept = keep_aside(path)
    named = ", ".join(f"{f['id']} ({f['status']}{', ' + repr(f['note']) if f['note'] else ''})" for f in gone)
    _tell_kept(volume_node, kept,
               f"finding(s) {named} of '{volume_node.GetName()}' deleted from the scene; the review that holds them is "
               f"kept, unchanged, as {kept}. To bring them back",
               f"the review before finding(s) {named} of '{volume_node.GetName()}' were deleted")


def _tell_kept(volume_node, kept, what: str, short: str) -> None:
    """The log line (`what`, then how to restore `kept` from the Python console) and, in desktop Slicer, the
    status bar (`short`): a reader told where a review set aside is, and how to bring its decisions back."""
    logging.warning(f"SSL Anomaly: {what}, in the Python console: slicer.util.getModuleLogic('SSLAnomaly')."
                    f"restoreReview(slicer.util.getNode('{volume_node.GetID()}'), r'{kept}')")
    if is_desktop_slicer():
        slicer.util.showStatusMessage(f"SSL Anomaly: {short} is kept as {kept} (details: View > Error Log)")


def _copy_of(volume_node, path) -> Path | None:
    """The copy of the image's review that `volume_node` holds unchanged beside `path` (kept aside when another volume
    of the image autosaved there), or None: the volume's newer review replaces it rather than pile up a copy per
    change (two volumes of one image in a scene take turns in the autosave file)."""
    return next((Path(name) for name, digest in _held(volume_node).items()
                 if is_kept_copy(name, _name(path)) and Path(name).exists() and sha256(name) == digest), None)


def _keep_declined(scene, path) -> tuple[Path, str]:
    """(where, how) the review in `path` that no volume of the scene holds (an earlier session's, its restore
    declined) is kept: added to the copy kept of such reviews before (one no volume holds either), so that they make
    one file however many sessions decline them, and nothing of them is lost; else (none, or a file that cannot be
    read) as a copy of its own."""
    volumes = _volumes(scene)
    earlier = next((copy for copy in kept_copies(path)
                    if not any(_held(v).get(_name(copy)) == sha256(copy) for v in volumes)), None)
    if earlier is not None:
        try:
            return add_to_kept(path, earlier), "its findings added first to the earlier reviews kept there"
        except ReviewError:
            pass  # the earlier copy (or this file) cannot be read: left as it is, and this one kept beside it
    return keep_aside(path), "unchanged"


def _volumes(scene) -> list:
    return [scene.GetNthNodeByClass(i, "vtkMRMLScalarVolumeNode")
            for i in range(scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode"))] if scene is not None else []


def _held(volume_node) -> dict:
    """{review file: digest} that `volume_node` holds; none where the record is another node's (a clone's copy)."""
    record = json.loads(volume_node.GetAttribute(HELD) or "{}")
    return record["files"] if record.get("volume") == volume_node.GetID() else {}


def _name(path) -> str:
    return str(Path(path).resolve())
