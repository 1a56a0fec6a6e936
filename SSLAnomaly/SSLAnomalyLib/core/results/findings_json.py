"""The one findings document, `<name>.findings.json`: written by `sslanomaly detect` and by the
Slicer export alike, the export adding the radiologist's review to the same document. Its JSON
Schema is Resources/Schemas/findings.schema.json (the README documents it; a test validates both
writers' output against it).

    {"schema_version", "input", "image_id", "score", "threshold", "abnormal", "percentile", "model",
     "model_sha256" (the model folder's seal, which `--resume` compares), "lung_network" and "lung_network_sha256"
     (the lung network that drew the fields, and its seal, which `--resume` compares too), "pixel_threshold",
     "score_components": {component: z}, "warnings": [...],
     "findings": [{"id", "label", "score", "bbox_ijk", "centroid_ras", "area_mm2", "slice_index", "extent"
                   (+ with a review: "status", "origin", "note", "decided", "decisions", "shown", and a model finding's "model")}],
     "review": {"sensitivity"}  (the Slicer export only: the pixel threshold the reader set)}
"""

from __future__ import annotations

from pathlib import Path

from SSLAnomalyLib.core.files.json_text import dumps
from SSLAnomalyLib.core.results.figures import rounded_apart, rounded_together

SCHEMA_VERSION = 1
SCHEMA = Path(__file__).resolve().parents[3] / "Resources" / "Schemas" / "findings.schema.json"


def findings_document(input_path, image_id: str, score: float, threshold: float, abnormal: bool,
                      percentile: float, model: str, pixel_threshold: float, score_components: dict,
                      warnings: list, findings: list[dict], review: dict | None = None,
                      model_sha256: str | None = None, lung_network: str | None = None,
                      lung_network_sha256: str | None = None) -> dict:
    score, threshold, _ = rounded_apart(score, threshold, 6)  # 6 decimals, more where they would look equal
    # the pixel threshold, the reader's sensitivity and the findings' scores together, so that they compare
    # as they did when the findings were found and shown: a score just above the threshold stays above it
    sensitivity = review["sensitivity"] if review is not None else pixel_threshold
    (pixel_threshold, sensitivity, *scores), _ = rounded_together(
        [pixel_threshold, sensitivity, *(f["score"] for f in findings)], 6)
    document = {"schema_version": SCHEMA_VERSION, "input": str(input_path), "image_id": image_id,
                "score": score, "threshold": threshold, "abnormal": bool(abnormal),
                "percentile": round(float(percentile), 2), "model": model,
                **({"model_sha256": model_sha256} if model_sha256 else {}),
                **({"lung_network": lung_network} if lung_network else {}),
                **({"lung_network_sha256": lung_network_sha256} if lung_network_sha256 else {}),
                "pixel_threshold": pixel_threshold,
                "score_components": {c: round(float(z), 6) for c, z in score_components.items()},
                "warnings": list(warnings), "findings": [{**f, "score": s} for f, s in zip(findings, scores)]}
    if review is not None:
        document["review"] = {**review, "sensitivity": sensitivity}
    return document


def to_json(document: dict) -> str:
    """Strict JSON: a NaN or an infinity is an error here, never written; a file name's byte that is not
    UTF-8 is written as \\xNN (json_text)."""
    return dumps(document, indent=1, allow_nan=False)
