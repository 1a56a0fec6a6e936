"""One detection on one volume as the scene holds it: the heatmap node (carrying the image-level
result as attributes), the finding ROIs and the findings table, all reached from the input volume
by node references, so that a saved and reloaded scene is a complete case again."""

from __future__ import annotations

import json

import slicer

from SSLAnomalyLib.mrml.clones import derived_nodes, let_go, own_results
from SSLAnomalyLib.mrml.finding_rois import apply_sensitivity, finding_nodes, follow_slider, show_findings
from SSLAnomalyLib.mrml.heatmap import DEFAULT_OPACITY, heatmap_node, set_heatmap_threshold, show_heatmap
from SSLAnomalyLib.mrml.lungs import show_lung_fields
from SSLAnomalyLib.mrml.table import TABLE_REFERENCE, sync_findings_table
from SSLAnomalyLib.mrml.volumes import VOLUME_REFERENCE, image_identity_of

RESULT_KEYS = ("score", "threshold", "abnormal", "percentile", "pixel_threshold", "model")
_A = "SSLAnomaly."


def show_detection(volume_node, result, opacity: float = DEFAULT_OPACITY):
    """Put a `DetectionResult` into the scene for `volume_node` (and its lung fields, when it holds
    them); returns the heatmap node. A volume removed from the scene while it was scored is refused:
    its heatmap and boxes would be left in the scene attached to nothing, over the next image. Results the volume
    shares with another (a clone and its original) stay the other's as they are, its review included: the volume
    detected refills its own copy of them (clones.own_results). So is a result of other voxels than the volume holds
    now (a sequence stepped to another frame while it was scored): it would be shown on another image."""
    if volume_node.GetScene() is None:
        raise ValueError(f"'{volume_node.GetName()}' was removed from the scene while it was being scored: "
                         "its result is not shown")
    if result.image_id and result.image_id != image_identity_of(volume_node):
        raise ValueError(f"'{volume_node.GetName()}' holds another image than the one scored (its voxels changed while "
                         "it was being scored, e.g. its sequence was stepped to another frame): its result is not shown; "
                         "detect anomalies on it again")
    own_results(volume_node)
    heat = show_heatmap(volume_node, result.heatmap, result.pixel_threshold, opacity)
    if result.lungs is not None:
        show_lung_fields(volume_node, result.lungs.pixels)
    values = {"score": result.score, "threshold": result.threshold, "abnormal": result.abnormal,
              "percentile": result.percentile, "pixel_threshold": result.pixel_threshold,
              "model": result.model_id, "model_sha256": result.model_sha256, "lung_network": result.lung_network,
              "lung_network_sha256": result.lung_network_sha256, "warnings": list(result.warnings),
              "components": result.components, "image_id": result.image_id}
    for key, value in values.items():
        heat.SetAttribute(_A + key, json.dumps(value))
    heat.SetAttribute(_A + "sensitivity", json.dumps(result.pixel_threshold))
    show_findings(volume_node, result.findings, result.model_id, result.abnormal)
    sync_findings_table(volume_node)
    return heat


def case_result(volume_node) -> dict | None:
    """The image-level result stored for `volume_node` (None before detection): score, threshold,
    abnormal, percentile, pixel_threshold, model, warnings, sensitivity, the score's standardised
    components, the model folder's seal `model_sha256` and the lung network's id and seal (`lung_network`,
    `lung_network_sha256`), by which `detect --resume` keeps an exported review, and the `image_id` detected (empty for
    scenes saved before they were stored)."""
    heat = heatmap_node(volume_node)
    if heat is None or heat.GetAttribute(_A + "score") is None:
        return None
    result = {key: json.loads(heat.GetAttribute(_A + key)) for key in (*RESULT_KEYS, "warnings", "sensitivity")}
    result["components"] = json.loads(heat.GetAttribute(_A + "components") or "{}")
    for key in ("model_sha256", "lung_network", "lung_network_sha256", "image_id"):
        result[key] = json.loads(heat.GetAttribute(_A + key) or '""')
    return result


def changed_since_detection(volume_node) -> str | None:
    """Why the result of `volume_node` is not of the image it holds now, or None: its voxels were replaced since it
    was detected (a sequence browser stepped to another frame, a filter run in place), so its score, heatmap and
    findings are another image's (a scene saved before the image was recorded is taken as it is)."""
    result = case_result(volume_node)
    if result is None or not result["image_id"] or result["image_id"] == image_identity_of(volume_node):
        return None
    return (f"the voxels of '{volume_node.GetName()}' changed since its detection (e.g. its sequence was stepped to "
            "another frame): its score, heatmap and findings are of the image it held then; show that image again, "
            "or detect anomalies on this one")


def no_result(volume_node) -> str:
    """Why `volume_node` has no result to show, set or export (`case_result` is None), as the reader is told: no
    detection yet, or its heatmap (which holds the score and thresholds) deleted by hand while its findings,
    reviewed ones included, are still in the scene; detecting again brings them back and keeps what the reader
    made of the findings (finding_rois.show_findings)."""
    name, findings = volume_node.GetName(), finding_nodes(volume_node)
    if not findings or heatmap_node(volume_node) is not None:
        return f"no detection has been run on '{name}'"
    return (f"the anomaly heatmap of '{name}' was removed from the scene, and with it the score and thresholds of "
            f"its detection; its {len(findings)} finding(s) and their review are still in the scene: detect "
            f"anomalies on '{name}' again (the findings the reader reviewed, noted, moved or added are kept)")


def sensitivity_range(volume_node) -> tuple[float, float, float]:
    """(minimum, maximum, current) for the sensitivity slider: up to the heatmap's peak, at least twice the
    calibrated pixel threshold."""
    result = case_result(volume_node)
    if result is None:
        raise ValueError(no_result(volume_node))
    peak = float(heatmap_node(volume_node).GetImageData().GetScalarRange()[1])
    return 0.0, max(peak, 2.0 * result["pixel_threshold"]), result["sensitivity"]


def set_sensitivity(volume_node, threshold: float) -> None:
    """Move the heatmap's display threshold and show the findings that reach it (the slider); the findings table's
    *Shown* follows."""
    if case_result(volume_node) is None:
        raise ValueError(no_result(volume_node))
    heat = heatmap_node(volume_node)
    heat.SetAttribute(_A + "sensitivity", json.dumps(float(threshold)))
    set_heatmap_threshold(heat, threshold)
    apply_sensitivity(volume_node, threshold)
    sync_findings_table(volume_node)


def remove_derived(scene, volume_node) -> None:
    """Remove what detection made for `volume_node`: its heatmap leaves the slice views with it. A node that another
    volume references too stays, with that volume: Slicer's Clone (Data module) copies a volume's references, so the
    clone and its original share one heatmap, findings and table, and deleting either must not take the reader's
    findings and review from the other (what was the removed volume's becomes the other's: clones.let_go)."""
    let_go(scene, volume_node, derived_nodes(scene, volume_node))


def follow_heatmap_removed(scene, heat) -> None:
    """A heatmap deleted by hand (Data module) takes the sensitivity slider with it (`no_result`): the findings
    the slider hid show again and the table says so, as `shown_now` has it without a detection, so the views,
    the table and `logic.findings` agree until the volume is detected again."""
    volume = scene.GetNodeByID(heat.GetNodeReferenceID(VOLUME_REFERENCE) or "")
    if volume is None or heatmap_node(volume) is not None:  # removed with its volume, or the volume has its own
        return
    for node in finding_nodes(volume):
        follow_slider(node)
    sync_findings_table(volume)


def follow_finding_removed(scene, node) -> None:
    """A finding's ROI deleted by hand (Data module) leaves its volume's findings table at once, so that the table
    agrees with `logic.findings` and the exports (a row's position is then its finding's). Removed with its volume,
    whose table goes first (remove_derived), no table is made anew."""
    volume = scene.GetNodeByID(node.GetNodeReferenceID(VOLUME_REFERENCE) or "")
    if node.GetAttribute(_A + "FindingID") is not None and volume is not None \
            and volume.GetNodeReference(TABLE_REFERENCE) is not None:
        sync_findings_table(volume)


def remove_case(volume_node) -> None:
    """Remove a volume and everything detection made for it (batch runs over files do this once a
    case is exported, so that memory does not grow with the number of inputs)."""
    remove_derived(slicer.mrmlScene, volume_node)
    slicer.mrmlScene.RemoveNode(volume_node)
