"""Measuring a model: image-level AUROC/AP on labelled folders and localisation against lesion boxes.

These figures are for reporting only; nothing in training or calibration reads them.
"""

from __future__ import annotations

import csv
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score
from tqdm import tqdm

from .io import ReadError, list_inputs, read_radiograph
from .scoring import COMPONENTS


def score_folder(detector, folder, progress: bool = True) -> tuple[list[dict[str, float]], list[str]]:
    """The score and its standardised components for every readable image of a folder, and the
    errors of the others."""
    scores, errors = [], []
    for f in tqdm(list_inputs([folder]), desc=f"scoring {Path(folder).name}", unit="img", disable=not progress):
        try:
            result = detector.detect(read_radiograph(f))
        except ReadError as e:
            errors.append(str(e))
            continue
        scores.append(dict(result.components, score=result.score))
    return scores, errors


def _auroc_ap(y: np.ndarray, s: np.ndarray) -> dict:
    return {"auroc": round(float(roc_auc_score(y, s)), 4), "ap": round(float(average_precision_score(y, s)), 4)}


def evaluate_images(detector, normal_dir, abnormal_dir, progress: bool = True) -> dict:
    """AUROC and AP of the image score, and of each of its components alone (image-level density,
    patch-level map) so that the parts can be compared with the whole on the same run."""
    t0 = time.time()
    normal, err_n = score_folder(detector, normal_dir, progress)
    abnormal, err_a = score_folder(detector, abnormal_dir, progress)
    if not normal or not abnormal:
        raise ReadError(normal_dir if not normal else abnormal_dir, "no readable images to evaluate")
    y = np.r_[np.zeros(len(normal)), np.ones(len(abnormal))]
    rows = normal + abnormal
    return {**_auroc_ap(y, np.array([r["score"] for r in rows])),
            "n_normal": len(normal), "n_abnormal": len(abnormal),
            "seconds_per_image": round((time.time() - t0) / len(rows), 4), "model": detector.model_id,
            "components": {c: _auroc_ap(y, np.array([r[c] for r in rows])) for c in COMPONENTS},
            "errors": err_n + err_a}


def read_boxes(csv_path) -> dict[str, list[tuple[float, float, float, float]]]:
    boxes = defaultdict(list)
    with open(csv_path, newline="") as f:
        for row in csv.DictReader(f):
            boxes[row["image"]].append(tuple(float(row[k]) for k in ("x0", "y0", "x1", "y1")))
    return boxes


def box_mask(shape: tuple[int, int], boxes) -> np.ndarray:
    mask = np.zeros(shape, bool)
    for x0, y0, x1, y1 in boxes:
        mask[int(np.floor(y0)):int(np.ceil(y1)) + 1, int(np.floor(x0)):int(np.ceil(x1)) + 1] = True
    return mask


def evaluate_boxes(detector, boxes_csv, images_dir, progress: bool = True) -> dict:
    """Pointing game (heatmap maximum inside a box), pixel AUROC inside vs outside boxes, and the
    random-heatmap baseline of the pointing game (the share of image area inside boxes)."""
    hits, aurocs, areas, errors = [], [], [], []
    for name, boxes in tqdm(sorted(read_boxes(boxes_csv).items()), desc="localisation", unit="img",
                            disable=not progress):
        try:
            image = read_radiograph(Path(images_dir) / name)
        except ReadError as e:
            errors.append(str(e))
            continue
        heat = detector.detect(image).heatmap.pixels[0]
        mask = box_mask(heat.shape, boxes)
        hits.append(bool(mask.ravel()[np.argmax(heat)]))
        areas.append(float(mask.mean()))
        if 0 < mask.sum() < mask.size:
            aurocs.append(roc_auc_score(mask.ravel(), heat.ravel()))
    if not hits:
        raise ReadError(images_dir, "none of the images named in the box file could be read")
    return {"pointing_game": round(float(np.mean(hits)), 4), "box_auroc": round(float(np.mean(aurocs)), 4),
            "n_images": len(hits), "random_pointing_baseline": round(float(np.mean(areas)), 4),
            "model": detector.model_id, "errors": errors}
