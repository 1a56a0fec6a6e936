"""The review held on a volume's finding nodes <-> the core's review file (review.py), so that each
decision is also autosaved outside the scene and a review can be restored after a crash, or onto a
new detection of the same image."""

from __future__ import annotations

from SSLAnomalyLib.mrml.case import case_result
from SSLAnomalyLib.mrml.finding_rois import (READER, add_missed_finding, finding_nodes, finding_record,
                                             restore_model_finding, review_finding)
from SSLAnomalyLib.mrml.volumes import image_identity_of, source_of


def review_of(volume_node) -> dict:
    """The review of `volume_node` in the review file's form."""
    result = case_result(volume_node) or {}
    return {"input": source_of(volume_node), "image_id": image_identity_of(volume_node),
            "model": result.get("model", ""), "findings": [finding_record(n) for n in finding_nodes(volume_node)]}


def apply_review(volume_node, review: dict) -> int:
    """Put a saved review's decisions onto the current findings of `volume_node`: a model finding
    is matched by its box and slice (as detected), a reader's finding is added unless one with
    the same box is there, and so is a model finding the reader decided on or noted that the
    current detection does not make. Returns how many saved findings were applied."""
    current = {}
    for node in finding_nodes(volume_node):
        record = finding_record(node)
        current[(record["origin"], tuple(record["bbox_ijk"]), record["slice_index"])] = node
    applied = 0
    for saved in review["findings"]:
        node = current.get((saved["origin"], tuple(saved["bbox_ijk"]), saved.get("slice_index", 0)))
        if node is None and saved["origin"] == READER:
            node = add_missed_finding(volume_node, saved["bbox_ijk"], saved.get("slice_index", 0), saved["label"])
        elif node is None:
            if saved["status"] == "unreviewed" and not saved["note"]:
                continue  # nothing of the reader's on it, and the model no longer finds it here
            node = restore_model_finding(volume_node, saved)
        review_finding(node, status=saved["status"], label=saved["label"], note=saved["note"])
        applied += 1
    return applied
