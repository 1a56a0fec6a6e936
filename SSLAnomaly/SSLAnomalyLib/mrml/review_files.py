"""Which review files a volume's review holds, so that its autosave never writes over one it does not.

The autosave file of an image may hold a review this scene never saw: one of an earlier session whose
restore the reader declined (or never asked for), of the same image in another scene or Slicer, or one
written since a scene bundle was saved. Its decisions are in no scene, so writing over it would lose them:
it is kept aside first (`keep_aside`), and the reader is told where (Slicer's log and status bar). A
file the volume wrote or restored (its decisions are then in the scene) is recorded with its digest on
the volume node (so a saved scene knows it too), and is written over while it is unchanged.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import slicer

from SSLAnomalyLib.core.files.digest import sha256
from SSLAnomalyLib.core.results.review import keep_aside
from SSLAnomalyLib.mrml.headless import is_desktop_slicer

HELD = "SSLAnomaly.ReviewFiles"  # JSON {review file: its SHA-256 as the volume last wrote or restored it}


def hold(volume_node, path, digest: str) -> None:
    """Record that the review of `volume_node` holds the file `path` as it was when `digest` was taken."""
    held = _held(volume_node)
    held[_name(path)] = digest
    volume_node.SetAttribute(HELD, json.dumps(held))


def keep_unheld(volume_node, path) -> None:
    """Before the review of `volume_node` is autosaved to `path`: a file there that it does not hold is
    kept aside, and the reader told where."""
    path = Path(path)
    if not path.exists() or _held(volume_node).get(_name(path)) == sha256(path):
        return
    kept = keep_aside(path)
    logging.warning(f"SSL Anomaly: the review of '{volume_node.GetName()}' saved earlier in {path} was not restored "
                    f"into this scene; it is kept, unchanged, as {kept}, and the review made here is autosaved in "
                    f"{path}. To add the kept decisions to it, in the Python console: slicer.util.getModuleLogic("
                    f"'SSLAnomaly').restoreReview(slicer.util.getNode('{volume_node.GetID()}'), r'{kept}')")
    if is_desktop_slicer():
        slicer.util.showStatusMessage(f"SSL Anomaly: an earlier review of '{volume_node.GetName()}' that was not "
                                      f"restored is kept as {kept} (details: View > Error Log)")


def _held(volume_node) -> dict:
    return json.loads(volume_node.GetAttribute(HELD) or "{}")


def _name(path) -> str:
    return str(Path(path).resolve())
