"""Findings as markups ROI nodes, and the radiologist's review stored on them.

Each finding is one ROI node, box-aligned with the image axes, referenced from the input volume.
Everything a review decides (status, label, note, a finding the model missed) is a node attribute,
so it is saved with the scene and survives a `.mrb` round trip; nothing lives only in Python.
The ROI's current box is the truth: a box the radiologist moved or resized exports where it is.
"""

from __future__ import annotations

import json
import re

import numpy as np
import slicer

from SSLAnomalyLib.core.detection.regions import label_for_verdict
from SSLAnomalyLib.core.results.review import ORIGINS, STATUSES, decision, decisions_of, now
from SSLAnomalyLib.mrml.heatmap import heatmap_node
from SSLAnomalyLib.mrml.volumes import VOLUME_REFERENCE, ijk_to_ras_matrix

FINDING_REFERENCE = "SSLAnomaly.Finding"  # input volume -> each finding ROI
MODEL, READER = ORIGINS                   # who made the finding: the detector or the radiologist
MISSED_LABEL = "missed finding"
STATUS_COLORS = {"unreviewed": (1.0, 0.75, 0.0), "confirmed": (0.2, 1.0, 0.3), "rejected": (0.55, 0.55, 0.55)}
_A = "SSLAnomaly."  # attribute prefix


def finding_nodes(volume_node) -> list:
    """The finding ROIs of a volume, in id order."""
    nodes = [volume_node.GetNthNodeReference(FINDING_REFERENCE, i)
             for i in range(volume_node.GetNumberOfNodeReferences(FINDING_REFERENCE))]
    return sorted((n for n in nodes if n is not None), key=lambda n: int(n.GetAttribute(_A + "FindingID")))


def show_findings(volume_node, findings, model_id: str, abnormal: bool) -> list:
    """ROIs for the findings of model `model_id`. A repeated detection replaces only the model's findings
    nobody has touched, and keeps every reviewed, annotated, relabelled, moved or reader-added one, with
    the model that made it (a finding it already holds is not added twice) and a label that follows the
    new verdict `abnormal` (`follow_verdict`)."""
    kept = []
    for node in finding_nodes(volume_node):
        if untouched(node):
            slicer.mrmlScene.RemoveNode(node)
        else:
            follow_verdict(node, abnormal)
            kept.append(node)
    known = {(n.GetAttribute(_A + "EngineBox"), n.GetAttribute(_A + "SliceIndex")) for n in kept}
    next_id = max((int(n.GetAttribute(_A + "FindingID")) for n in kept), default=0)
    for finding in findings:
        f = finding.to_dict() if hasattr(finding, "to_dict") else dict(finding)
        if (json.dumps(list(f["bbox_ijk"])), str(f.get("slice_index", 0))) in known:
            continue
        next_id = f["id"] if not kept else next_id + 1
        _add_finding_node(volume_node, dict(f, id=next_id, model=model_id), MODEL, "unreviewed")
    return finding_nodes(volume_node)


def untouched(node) -> bool:
    """A model finding as the engine made it: not reviewed, annotated, relabelled or moved."""
    record = finding_record(node)
    return record["origin"] == MODEL and not reader_touched(dict(record, **engine_of(node)))


def reader_touched(record: dict) -> bool:
    """Whether the reader decided on, noted, relabelled or moved a finding: a record beside what the
    detector made of it (`engine_of`; a review file saved before those were kept: its own label and box)."""
    return (record["status"] != "unreviewed" or bool(record["note"])
            or record["label"] != record.get("engine_label", record["label"])
            or record["bbox_ijk"] != record.get("engine_bbox_ijk", record["bbox_ijk"]))


def add_missed_finding(volume_node, bbox_ijk=None, slice_index: int = 0, label: str = MISSED_LABEL,
                       note: str = ""):
    """A finding the model missed, drawn by the reader (confirmed by definition). Without a box,
    a small one in the image centre, for the reader to move onto the lesion."""
    slices, rows, cols = slicer.util.arrayFromVolume(volume_node).shape[:3]
    if bbox_ijk is None:
        bbox_ijk = [cols * 7 // 16, rows * 7 // 16, cols * 9 // 16, rows * 9 // 16]
    i0, j0, i1, j1 = (int(v) for v in bbox_ijk)
    if not (0 <= i0 <= i1 < cols and 0 <= j0 <= j1 < rows):
        raise ValueError(f"box {bbox_ijk} is not inside the {cols}x{rows} image '{volume_node.GetName()}'")
    if not 0 <= int(slice_index) < slices:  # -1 was taken (numpy's last slice), beyond the last an IndexError
        raise ValueError(f"slice {slice_index} is not one of the {slices} slice(s) (0 to {slices - 1}) of "
                         f"'{volume_node.GetName()}'")
    spacing = volume_node.GetSpacing()
    center = ijk_to_ras_matrix(volume_node) @ [(i0 + i1) / 2, (j0 + j1) / 2, slice_index, 1]
    finding = {"id": _next_id(volume_node), "label": label, "score": _heatmap_peak(volume_node, [i0, j0, i1, j1], slice_index),
               "bbox_ijk": [i0, j0, i1, j1], "slice_index": int(slice_index),
               "centroid_ras": [round(float(v), 3) for v in center[:3]],
               "area_mm2": round((i1 - i0 + 1) * (j1 - j0 + 1) * spacing[0] * spacing[1], 2)}
    return _add_finding_node(volume_node, finding, READER, "confirmed", note)


def restore_model_finding(volume_node, record: dict, abnormal: bool | None):
    """A model finding of a saved review that the current detection does not make (another model or
    threshold), put back as its model (`record["model"]`) had made it, under a new id and labelled for
    the current verdict `abnormal` (None: no detection, as saved); `apply_review` then puts the reader's
    box, label, decision and note back on it, so no decision is dropped."""
    detected = dict(record, id=_next_id(volume_node), label=record.get("engine_label", record["label"]),
                    bbox_ijk=record.get("engine_bbox_ijk", record["bbox_ijk"]))
    node = _add_finding_node(volume_node, detected, MODEL, "unreviewed")
    if abnormal is not None:
        follow_verdict(node, abnormal)
    return node


def follow_verdict(node, abnormal: bool) -> None:
    """A model finding kept through a detection again (at other thresholds, or with another model) labelled
    for the image's verdict now (`label_for_verdict`), as the engine would label it: else it said "image
    within normal range" beside ABNORMAL. A label the reader gave stays."""
    label = node.GetAttribute(_A + "Label")
    if node.GetAttribute(_A + "Origin") != MODEL or label != node.GetAttribute(_A + "EngineLabel"):
        return
    for key in ("Label", "EngineLabel"):
        node.SetAttribute(_A + key, label_for_verdict(label, abnormal))
    _update_appearance(node)


def engine_of(node) -> dict:
    """What the detector made of a finding (its label and box), beside what the reader made of it."""
    return {"engine_label": node.GetAttribute(_A + "EngineLabel"),
            "engine_bbox_ijk": json.loads(node.GetAttribute(_A + "EngineBox"))}


def move_finding(node, bbox_ijk, slice_index: int = 0) -> None:
    """Put a finding's ROI on `bbox_ijk` of slice `slice_index` (a box the reader had moved, restored)."""
    _set_roi_box(node, node.GetNodeReference(VOLUME_REFERENCE), bbox_ijk, int(slice_index))


def keep_on_pixels(node, volume_node, old_ijk_to_ras: np.ndarray) -> None:
    """Put a finding placed on `volume_node` when its IJK-to-RAS matrix was `old_ijk_to_ras` back on the same
    pixels under its geometry now, and its transform: the box, and the detector's centroid and area of it."""
    bbox, slice_index, _ = _roi_box_ijk(node, volume_node, old_ijk_to_ras)
    new = ijk_to_ras_matrix(volume_node)
    pixel = np.linalg.inv(old_ijk_to_ras) @ [*json.loads(node.GetAttribute(_A + "CentroidRAS")), 1]
    area = float(node.GetAttribute(_A + "AreaMM2")) * _pixel_area(new) / _pixel_area(old_ijk_to_ras)
    node.SetAttribute(_A + "CentroidRAS", json.dumps([round(float(v), 3) for v in (new @ pixel)[:3]]))
    node.SetAttribute(_A + "AreaMM2", repr(round(area, 2)))
    node.SetAndObserveTransformNodeID(volume_node.GetTransformNodeID())
    _set_roi_box(node, volume_node, bbox, slice_index)


def placed_on(node, heatmap_grid: np.ndarray | None) -> np.ndarray | None:
    """The IJK-to-RAS matrix of the volume's geometry when the finding's box was placed on its pixels: where it is
    when that geometry is edited (geometry.follow_geometry). A scene saved before it was recorded: the heatmap's
    grid, `heatmap_grid` (None: not known)."""
    placed = node.GetAttribute(_A + "PlacedOn")
    return np.array(json.loads(placed)) if placed else heatmap_grid


def _pixel_area(ijk_to_ras: np.ndarray) -> float:
    return float(np.linalg.norm(np.cross(ijk_to_ras[:3, 0], ijk_to_ras[:3, 1])))


def _next_id(volume_node) -> int:
    return max((int(n.GetAttribute(_A + "FindingID")) for n in finding_nodes(volume_node)), default=0) + 1


def review_finding(node, status: str | None = None, label: str | None = None, note: str | None = None):
    """Confirm or reject a finding, relabel it or note on it; what is not given is kept. The decision is dated now
    (`mark_decided`). One the sensitivity slider hid, reviewed from the findings table, shows again: a finding the
    reader touched is never hidden, and is exported as shown."""
    if status is not None and status not in STATUSES:
        raise ValueError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
    label, note = (None if text is None else scene_text(text) for text in (label, note))
    if label is not None and not label.strip():
        raise ValueError("a finding's label cannot be empty")
    for key, value in (("ReviewStatus", status), ("Label", label and label.strip()), ("Note", note)):
        if value is not None:
            node.SetAttribute(_A + key, value)
    if (status, label, note) != (None, None, None):
        mark_decided(node)
    _update_appearance(node)
    follow_slider(node)
    return node


def follow_slider(node) -> None:
    """Show or hide a finding as the sensitivity slider's threshold now asks (`shown_now`): without a detection (its
    heatmap deleted by hand) nothing hides it, so the views show what the table, `logic.findings` and exports say."""
    node.GetDisplayNode().SetVisibility(shown_now(node))


def _slider_threshold(node) -> float | None:
    """The sensitivity slider's threshold on a finding's volume now; None without a detection."""
    heat = heatmap_node(node.GetNodeReference(VOLUME_REFERENCE))
    threshold = heat and heat.GetAttribute(_A + "sensitivity")
    return json.loads(threshold) if threshold else None


def shown_now(node) -> bool:
    """Whether the reader sees a finding at the slider's threshold now (`shown`); without a detection, nothing hides it."""
    threshold = _slider_threshold(node)
    return threshold is None or shown(node, threshold)


def seen_record(node) -> dict:
    """`finding_record` with `shown` (`shown_now`): a finding as the findings table, `logic.findings` and the
    exports give it, so that each tells the findings the slider hides from those the reader sees."""
    return dict(finding_record(node), shown=shown_now(node))


def mark_decided(node) -> None:
    """Date the reader's decision on a finding (a review, a box moved, a finding drawn) now: its `decided`, and one
    more of its `decisions` (the audit trail: what each decision made of it, when), the earlier ones kept. Kept on
    the node, so a saved scene, the review file and every export carry them."""
    when, record = now(), finding_record(node)
    node.SetAttribute(_A + "Decisions", json.dumps([*record["decisions"], decision(record, when)]))
    node.SetAttribute(_A + "Decided", when)


def restore_decisions(node, saved: dict) -> None:
    """Give a finding the dated decisions of the saved finding `saved` restored onto it (`decisions_of`)."""
    node.SetAttribute(_A + "Decisions", json.dumps(decisions_of(saved)))
    node.SetAttribute(_A + "Decided", saved.get("decided", ""))


def scene_text(text: str) -> str:
    """A label or note as the scene's XML holds it and gives it back: a control character (pasted
    vertical tab, form feed, escape...; a tab would come back as a space) becomes a space, where one
    of them would make the saved scene unreadable. Line breaks are kept."""
    return re.sub(r"[\x00-\x09\x0b\x0c\x0e-\x1f\ufffe\uffff]", " ", text)


def finding_record(node) -> dict:
    """One finding as exported: the contract's fields plus the review, and a model finding's `model_of`.
    Box, slice and area come from the ROI as it is now; centroid and area are the engine's while the box is
    where it put it."""
    volume = node.GetNodeReference(VOLUME_REFERENCE)
    bbox, slice_index, center_ras = _roi_box_ijk(node, volume)
    engine_box = (node.GetAttribute(_A + "EngineBox"), node.GetAttribute(_A + "SliceIndex"))
    if engine_box == (json.dumps(bbox), str(slice_index)):
        centroid = json.loads(node.GetAttribute(_A + "CentroidRAS"))
        area = float(node.GetAttribute(_A + "AreaMM2"))
    else:
        spacing = volume.GetSpacing()
        centroid = [round(float(v), 3) for v in center_ras]
        area = round((bbox[2] - bbox[0] + 1) * (bbox[3] - bbox[1] + 1) * spacing[0] * spacing[1], 2)
    record = {"id": int(node.GetAttribute(_A + "FindingID")), "label": node.GetAttribute(_A + "Label"),
            "score": float(node.GetAttribute(_A + "Score")), "bbox_ijk": bbox, "slice_index": slice_index,
            "centroid_ras": centroid, "area_mm2": area, "status": node.GetAttribute(_A + "ReviewStatus"),
            "extent": node.GetAttribute(_A + "Extent") or "focal",
            "origin": node.GetAttribute(_A + "Origin"), "note": node.GetAttribute(_A + "Note") or "",
            "decided": node.GetAttribute(_A + "Decided") or "",
            **({"model": model_of(node)} if node.GetAttribute(_A + "Origin") == MODEL else {})}
    decisions = node.GetAttribute(_A + "Decisions")  # none: a scene saved before they were kept
    return dict(record, decisions=json.loads(decisions) if decisions else decisions_of(record))


def model_of(node) -> str:
    """The id of the model whose detection made a model finding: a detection again with another model keeps
    the findings the reader touched, so the case's model is not theirs. A scene saved before it was recorded:
    the case's model (on its heatmap, as case.show_detection put it)."""
    return node.GetAttribute(_A + "EngineModel") or json.loads(
        heatmap_node(node.GetNodeReference(VOLUME_REFERENCE)).GetAttribute(_A + "model"))


def apply_sensitivity(volume_node, threshold: float) -> None:
    """Show the findings `shown` at the sensitivity `threshold`, hide the others (the slider)."""
    for node in finding_nodes(volume_node):
        node.GetDisplayNode().SetVisibility(shown(node, threshold))


def shown(node, threshold: float) -> bool:
    """Whether the reader sees a finding at the sensitivity `threshold`: a model finding nobody touched shows
    where its peak reaches it; a finding the reader has touched or added, and the diffuse finding of an ABNORMAL
    image (the verdict's region, below any focal threshold by construction), always show (a review is never
    hidden by a slider). The export states the same (export.py)."""
    return (not untouched(node) or node.GetAttribute(_A + "Extent") == "diffuse"
            or float(node.GetAttribute(_A + "Score")) >= threshold)


def _add_finding_node(volume_node, f: dict, origin: str, status: str, note: str = ""):
    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLMarkupsROINode")
    node.CreateDefaultDisplayNodes()
    node.SetAndObserveTransformNodeID(volume_node.GetTransformNodeID())
    label, note = scene_text(f["label"]), scene_text(note)
    for key, value in (("FindingID", str(f["id"])), ("Label", label), ("EngineLabel", label),
                       ("Score", repr(float(f["score"]))),
                       ("EngineBox", json.dumps([int(v) for v in f["bbox_ijk"]])),
                       ("SliceIndex", str(int(f.get("slice_index", 0)))),
                       ("CentroidRAS", json.dumps(f["centroid_ras"])), ("AreaMM2", repr(float(f["area_mm2"]))),
                       ("Extent", f.get("extent", "focal")), ("Origin", origin), ("ReviewStatus", status),
                       ("Note", note), ("EngineModel", f.get("model", ""))):
        node.SetAttribute(_A + key, value)
    _set_roi_box(node, volume_node, f["bbox_ijk"], int(f.get("slice_index", 0)))
    node.SetNodeReferenceID(VOLUME_REFERENCE, volume_node.GetID())
    volume_node.AddNodeReferenceID(FINDING_REFERENCE, node.GetID())
    if origin == READER:  # drawn: the reader's first decision on it
        mark_decided(node)
    _update_appearance(node)
    return node


def _update_appearance(node) -> None:
    """Name, description and colour follow the review, so the views show it at a glance."""
    fid, label, status = (node.GetAttribute(_A + k) for k in ("FindingID", "Label", "ReviewStatus"))
    note = node.GetAttribute(_A + "Note")
    node.SetName(f"F{fid} {label}")
    node.SetNthControlPointLabel(0, f"F{fid} {label}")
    node.SetNthControlPointDescription(0, f"score {float(node.GetAttribute(_A + 'Score')):.3g}, {status}"
                                          + (f": {note}" if note else ""))
    display = node.GetDisplayNode()
    display.SetSelectedColor(*STATUS_COLORS[status])
    display.SetColor(*STATUS_COLORS[status])
    display.SetOpacity(0.4 if status == "rejected" else 1.0)
    display.SetFillOpacity(0.0)


def _set_roi_box(node, volume_node, bbox_ijk, slice_index: int) -> None:
    """ROI covering the pixels i0..i1, j0..j1 (inclusive) of slice k, along the image's own axes."""
    i0, j0, i1, j1 = bbox_ijk
    ijk_to_ras = ijk_to_ras_matrix(volume_node)
    spacing = np.array(volume_node.GetSpacing())
    axes = ijk_to_ras[:3, :3] / spacing
    if np.linalg.det(axes) < 0:  # a left-handed image: the box is symmetric, so flip its k axis
        axes[:, 2] *= -1
    object_to_node = np.eye(4)
    object_to_node[:3, :3] = axes
    object_to_node[:3, 3] = (ijk_to_ras @ [(i0 + i1) / 2, (j0 + j1) / 2, slice_index, 1])[:3]
    node.SetAndObserveObjectToNodeMatrix(slicer.util.vtkMatrixFromArray(object_to_node))
    node.SetSize(*((np.array([i1 - i0 + 1, j1 - j0 + 1, 1]) * spacing).tolist()))
    node.SetAttribute(_A + "PlacedOn", json.dumps(ijk_to_ras.tolist()))


def _roi_box_ijk(node, volume_node, ijk_to_ras: np.ndarray | None = None) -> tuple[list[int], int, np.ndarray]:
    """(bbox [i0, j0, i1, j1] clipped to the image, slice index, centre RAS) of an ROI on the volume's pixels
    (placed by `ijk_to_ras`, default the volume's geometry now)."""
    object_to_node = slicer.util.arrayFromVTKMatrix(node.GetObjectToNodeMatrix())
    half = np.array(node.GetSize()) / 2
    corners = np.array([[sx, sy, sz, 1] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]) * [*half, 1]
    ijk_to_ras = ijk_to_ras_matrix(volume_node) if ijk_to_ras is None else ijk_to_ras
    ijk = (np.linalg.inv(ijk_to_ras) @ object_to_node @ corners.T)[:3]
    _, rows, cols = slicer.util.arrayFromVolume(volume_node).shape[:3]
    lo, hi = np.round(ijk.min(axis=1) + 0.5), np.round(ijk.max(axis=1) - 0.5)
    bbox = [int(np.clip(lo[0], 0, cols - 1)), int(np.clip(lo[1], 0, rows - 1)),
            int(np.clip(hi[0], 0, cols - 1)), int(np.clip(hi[1], 0, rows - 1))]
    return bbox, int(round(ijk[2].mean())), object_to_node[:3, 3]


def _heatmap_peak(volume_node, bbox, slice_index: int) -> float:
    """The heatmap's maximum inside a box (a reader-drawn finding's score); 0 without a heatmap."""
    heat = heatmap_node(volume_node)
    if heat is None:
        return 0.0
    i0, j0, i1, j1 = bbox
    return float(slicer.util.arrayFromVolume(heat)[slice_index, j0:j1 + 1, i0:i1 + 1].max())
