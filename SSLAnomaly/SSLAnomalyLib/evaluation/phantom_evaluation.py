"""`sslanomaly evaluate --phantoms`: seeded phantoms (evaluation/phantoms.py) drawn on each normal
radiograph at its own resolution, placed by the lung fields the product draws on the unaltered image,
scored by the detector and reported per kind and size: the share flagged at the model's threshold,
AUROC against the unaltered normals, and the pointing game on the phantom's region.

A figure for reporting only; nothing in training or calibration reads it.
"""

from __future__ import annotations

import sys
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score
from tqdm import tqdm

from SSLAnomalyLib.core.detection.detector import NonFiniteScore
from SSLAnomalyLib.core.reading.chest_view import refuse_other_view
from SSLAnomalyLib.core.reading.image import Radiograph
from SSLAnomalyLib.core.reading.images import ReadError, list_inputs, read_radiograph
from SSLAnomalyLib.evaluation.evaluate import (duplicate_warnings, few_images_warning, nothing_scored, score_row,
                                               write_scores_csv)
from SSLAnomalyLib.evaluation.phantoms import HELD_OUT_KINDS, SIZES, Phantom, draw_phantom

FIGURES = ("auroc", "tpr_at_threshold", "fpr_at_threshold", "pointing_game", "random_pointing_baseline",
           "abnormal_without_finding", "mean_score")


@dataclass
class Tally:
    """One kind and size's detections over the normals."""

    scores: list[float] = field(default_factory=list)
    flagged: list[bool] = field(default_factory=list)
    hits: list[bool] = field(default_factory=list)    # heatmap maximum inside the phantom's region
    areas: list[float] = field(default_factory=list)  # region area / image area
    without_finding: int = 0                          # flagged ABNORMAL with no finding

    def add(self, result, region: np.ndarray) -> None:
        heat = result.heatmap.pixels[0]
        self.scores.append(result.score)
        self.flagged.append(result.abnormal)
        self.hits.append(bool(region.ravel()[np.argmax(heat)]))
        self.areas.append(float(region.mean()))
        self.without_finding += int(result.abnormal and not result.findings)

    def figures(self, normal_scores: list[float], fpr: float) -> dict:
        if not self.scores:  # drawn on no normal (see "errors"): no figure rather than a NaN
            return {"n": 0, **dict.fromkeys(FIGURES), "fpr_at_threshold": fpr, "abnormal_without_finding": 0}
        y = np.r_[np.zeros(len(normal_scores)), np.ones(len(self.scores))]
        return {"n": len(self.scores),
                "auroc": round(float(roc_auc_score(y, np.r_[normal_scores, self.scores])), 4),
                "tpr_at_threshold": round(float(np.mean(self.flagged)), 4),
                "fpr_at_threshold": fpr,
                "pointing_game": round(float(np.mean(self.hits)), 4),
                "random_pointing_baseline": round(float(np.mean(self.areas)), 4),
                "abnormal_without_finding": self.without_finding,
                "mean_score": round(float(np.mean(self.scores)), 4)}


def phantom_seed(seed: int, kind: str, size: str, index: int) -> np.random.Generator:
    """The generator of the phantom of `kind` and `size` on the `index`-th normal."""
    return np.random.default_rng([seed, zlib.crc32(f"{kind}:{size}".encode()), index])


def phantom_on(image: Radiograph, kind: str, size: str, lungs: np.ndarray, rng: np.random.Generator
               ) -> tuple[Radiograph, Phantom]:
    """The 2D radiograph with a phantom of `kind` and `size` drawn in its lung fields `lungs` (on the
    slice as viewers show it, `shown_lungs`), and the phantom. It is drawn on the shown slice, where
    the apex is up and the patient's right on the left as the generator assumes (a NIfTI/NRRD may
    store it upside down or mirrored: reading/display.py), on the pixels scaled to [0, 1], and put back
    on the file's grid and grey range, so the pixels outside the phantom's region are the file's own;
    the phantom returned is on the file's grid too. ValueError where none can be drawn (a flat image,
    or lung fields that leave no place for it)."""
    display = image.display
    px = image.shown(0).astype(np.float32)
    lo, hi = float(px.min()), float(px.max())
    if not hi > lo:
        raise ValueError("a flat image")
    phantom = draw_phantom(kind, size, (px - lo) / (hi - lo), lungs, rng)
    drawn = np.where(phantom.region_mask, phantom.image * (hi - lo) + lo, px).astype(np.float32)
    on_file = replace(phantom, image=display.stored(phantom.image), region_mask=display.stored(phantom.region_mask))
    return image.with_pixels(display.stored(drawn)[None]), on_file


def shown_lungs(image: Radiograph, fields) -> np.ndarray:
    """The lung fields `fields` (drawn on the shown slice) on the radiograph's shown grid."""
    return fields.on_grid(*image.display.shown_shape(*image.shape[1:])).astype(bool)


def drawn_lungs(detector, image: Radiograph) -> np.ndarray:
    """The lung fields a phantom is drawn in: the detector's own, on the radiograph's shown grid."""
    return shown_lungs(image, detector.prepare(image)[0].fields)


def evaluate_phantoms(detector, normal_dir, kinds: list[str], seed: int = 0, progress: bool = True,
                      scores_csv=None) -> dict:
    """Every size of every kind in `kinds` drawn once on each normal of `normal_dir` (seeded by `seed`,
    the kind, the size and the normal's place in the sorted folder) and scored with the unaltered
    normals as the negatives."""
    t0 = time.time()
    conditions = [(k, s) for k in kinds for s in SIZES[k]]
    tallies = {c: Tally() for c in conditions}
    normal, table, errors, sources = [], [], [], Counter()
    files = list_inputs([normal_dir])
    for i, f in enumerate(tqdm(files, desc="phantoms", unit="normal", disable=not progress)):
        try:
            image = read_radiograph(f)
            if image.shape[0] != 1:
                raise ReadError(f, "phantoms are drawn on 2D radiographs, not volumes")
            refuse_other_view(image, f)
        except ReadError as e:
            errors.append(str(e))
            continue
        prepared = detector.prepare(image)
        fields = prepared[0].fields
        sources[fields.source] += 1
        lungs = shown_lungs(image, fields)
        if np.ptp(image.pixels[0]) == 0:
            errors.append(f"{f}: a flat image, no phantom can be drawn")
            continue
        try:  # a NaN on one image is that image's error, not the end of the evaluation
            result = detector.detect(image, prepared=prepared)
        except NonFiniteScore as e:
            errors.append(str(e))
            continue
        normal.append(score_row(result, f))
        table.append(("clean", "normal", normal[-1]))
        for kind, size in conditions:
            try:
                drawn, phantom = phantom_on(image, kind, size, lungs, phantom_seed(seed, kind, size, i))
            except ValueError as e:  # lung fields that leave no place for it
                errors.append(f"{f}: no {kind} {size} drawn ({e})")
                continue
            try:
                result = detector.detect(drawn)
            except NonFiniteScore as e:
                errors.append(f"{f}: {kind} {size}: {e}")
                continue
            tallies[kind, size].add(result, phantom.region_mask)
            table.append((f"{kind}:{size}", "phantom", score_row(result, f)))
    if not normal:
        raise nothing_scored(normal_dir, "no readable normal images to draw phantoms on", errors)
    # a copy of a normal is two negatives and two phantoms: said, as evaluate on two folders says it
    warnings = duplicate_warnings(normal, []) + few_images_warning(len(normal), "normal", "each phantom's share flagged",
                                                                   "--normal")
    for warning in warnings:
        tqdm.write(f"warning: {warning}", file=sys.stderr)
    normal_scores = [r["score"] for r in normal]
    fpr = round(float(np.mean([r["abnormal"] for r in normal])), 4)
    report = {k: {s: tallies[k, s].figures(normal_scores, fpr) for s in SIZES[k]} for k in kinds}
    if scores_csv is not None:
        write_scores_csv(scores_csv, table)
    return {"model": detector.model_id, "n_normal": len(normal), "seed": seed,
            "threshold": round(detector.calibration.threshold, 6), "fpr_at_threshold": fpr,
            "kinds": report, "held_out_kinds": [k for k in HELD_OUT_KINDS if k in kinds],
            "drawn_at": "each normal's own resolution", "lung_field_sources": dict(sources),
            "seconds_per_image": round((time.time() - t0) / (len(normal) * (1 + len(conditions))), 4),
            "normal_folder": str(Path(normal_dir)), "errors": errors, "warnings": warnings}

