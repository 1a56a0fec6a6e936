"""The review held on a volume's finding nodes <-> the core's review file (review.py), so that each
decision is also autosaved outside the scene and a review can be restored after a crash, or onto a
new detection of the same image."""

from __future__ import annotations

from SSLAnomalyLib.mrml.case import case_result
from SSLAnomalyLib.mrml.finding_rois import (READER, add_missed_finding, engine_of, finding_nodes, finding_record,
                                             move_finding, reader_touched, restore_model_finding, review_finding)
from SSLAnomalyLib.mrml.volumes import image_identity_of, source_of


def review_of(volume_node) -> dict:
    """The review of `volume_node` in the review file's form."""
    result = case_result(volume_node) or {}
    return {"input": source_of(volume_node), "image_id": image_identity_of(volume_node),
            "model": result.get("model", ""),
            "findings": [dict(finding_record(n), **engine_of(n)) for n in finding_nodes(volume_node)]}


def apply_review(volume_node, review: dict) -> int:
    """Put a saved review's decisions onto the current findings of `volume_node`: a model finding
    is matched by its box and slice as detected (and moved where the reader moved it), a reader's
    finding is added unless one with the same box is there, and so is a model finding the reader
    decided on, noted, relabelled or moved that the current detection does not make. Returns how
    many saved findings were applied."""
    current = {_match(dict(finding_record(node), **engine_of(node))): node for node in finding_nodes(volume_node)}
    applied = 0
    for saved in review["findings"]:
        slice_index = saved.get("slice_index", 0)
        node = current.get(_match(saved))
        if node is None and saved["origin"] == READER:
            node = add_missed_finding(volume_node, saved["bbox_ijk"], slice_index, saved["label"])
        elif node is None:
            if not reader_touched(saved):
                continue  # nothing of the reader's on it, and the model no longer finds it here
            node = restore_model_finding(volume_node, saved)
        if saved["bbox_ijk"] != finding_record(node)["bbox_ijk"]:
            move_finding(node, saved["bbox_ijk"], slice_index)
        review_finding(node, status=saved["status"], label=saved["label"], note=saved["note"])
        applied += 1
    return applied


def _match(record: dict) -> tuple:
    """What makes a saved finding the same as one in the scene: a reader's by its box, a model
    finding by the box the detector gave it (a review file saved before that was kept: its box)."""
    box = record["bbox_ijk"] if record["origin"] == READER else record.get("engine_bbox_ijk", record["bbox_ijk"])
    return record["origin"], tuple(box), record.get("slice_index", 0)
