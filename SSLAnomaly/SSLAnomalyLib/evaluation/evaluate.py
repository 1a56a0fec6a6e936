"""Measuring a model: image-level AUROC/AP on labelled folders and localisation against lesion boxes.

These figures are for reporting only; nothing in training or calibration reads them.
"""

from __future__ import annotations

import csv
import os
import sys
import time
from collections import defaultdict
from pathlib import Path, PurePath

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score
from tqdm import tqdm

from SSLAnomalyLib.core.detection.detector import NonFiniteScore
from SSLAnomalyLib.core.files.atomic import atomic_path
from SSLAnomalyLib.core.files.errors import writing
from SSLAnomalyLib.core.model.reconstruction import RECONSTRUCTION
from SSLAnomalyLib.core.model.scoring import COMPONENTS, SIDES
from SSLAnomalyLib.core.reading.chest_view import refuse_other_view
from SSLAnomalyLib.core.reading.image import Radiograph
from SSLAnomalyLib.core.reading.images import (DICOM_SUFFIXES, ITK_SUFFIXES, RASTER_SUFFIXES, ReadError, list_inputs,
                                                read_radiograph)
from SSLAnomalyLib.core.reading.walk import refuse_special
from SSLAnomalyLib.core.results.spreadsheet import cell

REPORTED = (*COMPONENTS, RECONSTRUCTION, SIDES)  # each one's AUROC alone, where the model scores it
FEW_IMAGES = 20  # below this, a share flagged moves by 5 points or more per image, and an AUROC is coarse
IMAGE_SUFFIXES = (*sorted(DICOM_SUFFIXES | RASTER_SUFFIXES | ITK_SUFFIXES), ".nii.gz")


def score_folder(detector, folder, progress: bool = True, transform=None) -> tuple[list[dict], list[str]]:
    """The score, its standardised components and the verdict for every readable image of a folder
    (each first passed through `transform(image, index)` when given), and the errors of the others
    (an image the model gives no finite score is one of them, not the end of the evaluation; so is one
    whose DICOM header says it is no frontal chest radiograph, whose score means nothing)."""
    rows, errors = [], []
    for i, f in enumerate(tqdm(list_inputs([folder]), desc=f"scoring {Path(folder).name}", unit="img",
                               disable=not progress)):
        try:
            image = read_radiograph(f)
            refuse_other_view(image, f)
            result = detector.detect(transform(image, i) if transform is not None else image)
        except (ReadError, NonFiniteScore) as e:
            errors.append(str(e))
            continue
        rows.append(score_row(result, f))
    return rows, errors


def nothing_scored(folder, what: str, errors: list[str]) -> ReadError:
    """The refusal when no image could be scored, with the files' own reasons (the first three): "none
    could be read" alone left the user to guess which file and why."""
    why = "; ".join(errors[:3]) + (f"; and {len(errors) - 3} more" if len(errors) > 3 else "")
    return ReadError(folder, f"{what} ({why})" if errors else what)


def score_row(result, file) -> dict:
    """What the figures and the scores CSV need of one detection."""
    return dict(result.components, score=result.score, abnormal=result.abnormal, n_findings=len(result.findings),
                percentile=result.percentile, file=str(file), image_id=result.image_id)


def duplicate_warnings(normal: list[dict], abnormal: list[dict]) -> list[str]:
    """The same image (the same pixels, or the same DICOM instance) in both folders, which makes
    its label contradict itself, or more than once in one, which counts it as several radiographs."""
    copies = defaultdict(list)
    for label, rows in (("normal", normal), ("abnormal", abnormal)):
        for r in rows:
            copies[r["image_id"]].append((label, r["file"]))
    found = []
    for same in (c for c in copies.values() if len(c) > 1):
        labels = sorted({label for label, _ in same})
        where = "in both the normal and the abnormal folder" if len(labels) == 2 else \
            f"{len(same)} times in the {labels[0]} folder"
        found.append(f"the same image is {where} ({', '.join(f for _, f in same)}): each copy is counted, "
                     "so the figures are not those of distinct radiographs")
    return found


def few_images_warning(n: int, of: str, share: str, option: str) -> list[str]:
    """A figure on a handful of images reads as precise (an AUROC of 1.0 on one normal): say it is not.
    `of` names the images, `share` the share flagged that one image moves, `option` where to give more."""
    if n >= FEW_IMAGES:
        return []
    return [f"only {n} {of} image(s): {share} moves by {100 / n:.0f} points per image and the AUROC is coarse; "
            f"give {option} at least {FEW_IMAGES} (40 or more for the figures docs/model.md reports)"]


def _auroc_ap(y: np.ndarray, s: np.ndarray) -> dict:
    return {"auroc": round(float(roc_auc_score(y, s)), 4), "ap": round(float(average_precision_score(y, s)), 4)}


def figures(normal: list[dict], abnormal: list[dict]) -> dict:
    """AUROC and AP of the score and of each component alone; the share of normals (FPR) and of
    abnormals (TPR) above the model's own threshold; the normals' mean score (0 on calibration normals
    when the model is calibrated for these images)."""
    y = np.r_[np.zeros(len(normal)), np.ones(len(abnormal))]
    rows = normal + abnormal
    return {**_auroc_ap(y, np.array([r["score"] for r in rows])),
            "fpr_at_threshold": round(float(np.mean([r["abnormal"] for r in normal])), 4),
            "tpr_at_threshold": round(float(np.mean([r["abnormal"] for r in abnormal])), 4),
            "normal_mean_score": round(float(np.mean([r["score"] for r in normal])), 4),
            "normal_median_percentile": round(float(np.median([r["percentile"] for r in normal])), 2),
            "abnormal_without_finding": int(sum(r["abnormal"] and not r["n_findings"] for r in rows)),
            "components": {c: _auroc_ap(y, np.array([r[c] for r in rows])) for c in REPORTED
                           if all(c in r for r in rows)}}


def evaluate_images(detector, normal_dir, abnormal_dir, progress: bool = True, scores_csv=None,
                    perturb: list[str] = (), seed: int = 0) -> dict:
    """Figures of the image score on the folders as they are, and (`perturb`) again under each
    seeded acquisition perturbation family; `scores_csv` gets one row per image and condition."""
    from SSLAnomalyLib.evaluation.perturbations import perturb as apply

    t0 = time.time()
    normal, err_n = score_folder(detector, normal_dir, progress)
    abnormal, err_a = score_folder(detector, abnormal_dir, progress)
    if not normal or not abnormal:
        raise nothing_scored(normal_dir if not normal else abnormal_dir, "no readable images to evaluate",
                             err_n if not normal else err_a)
    result = {**figures(normal, abnormal), "n_normal": len(normal), "n_abnormal": len(abnormal),
              "seconds_per_image": round((time.time() - t0) / (len(normal) + len(abnormal)), 4),
              "model": detector.model_id, "threshold": round(detector.calibration.threshold, 6),
              "false_positive_rate": detector.calibration.false_positive_rate, "errors": err_n + err_a,
              "warnings": duplicate_warnings(normal, abnormal)
              + few_images_warning(len(normal), "normal", "the share of normals flagged", "--normal")
              + few_images_warning(len(abnormal), "abnormal", "the share of abnormals flagged", "--abnormal")}
    for warning in result["warnings"]:
        tqdm.write(f"warning: {warning}", file=sys.stderr)
    table = [("clean", "normal", r) for r in normal] + [("clean", "abnormal", r) for r in abnormal]
    if perturb:
        result["perturbations"] = {}
        result["perturbation_seed"] = seed
    for family in perturb:
        # the abnormal folder's images get other seeds than the normal folder's same positions
        pn, err_pn = score_folder(detector, normal_dir, progress, lambda im, i: apply(im, family, seed * 1_000_003 + i))
        pa, err_pa = score_folder(detector, abnormal_dir, progress,
                                  lambda im, i: apply(im, family, seed * 1_000_003 + 500_000 + i))
        if not pn or not pa:
            raise nothing_scored(normal_dir if not pn else abnormal_dir, f"no image could be scored under {family}",
                                 err_pn if not pn else err_pa)
        # an image scored clean and lost under the perturbation would change the figures unseen
        result["errors"] += [f"under {family}: {e}" for e in err_pn + err_pa if e not in err_n + err_a]
        result["perturbations"][family] = {**figures(pn, pa), "n_normal": len(pn), "n_abnormal": len(pa)}
        table += [(family, "normal", r) for r in pn] + [(family, "abnormal", r) for r in pa]
    if scores_csv is not None:
        write_scores_csv(scores_csv, table)
    return result


def write_scores_csv(path, table) -> None:
    """One row per image and condition: condition, label, file, score, components (standardised;
    `sides` empty for a model that does not score it), percentile, abnormal, and `reconstruction`
    (last, so that readers of the earlier columns by position are unchanged; empty where not scored). A file
    that starts like a formula ('=a/x.png', a folder given as '=a') is written as text (spreadsheet.cell).
    Written whole or not at all: a full disk left an empty CSV in place of an earlier one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with writing(path), atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["condition", "label", "file", "score", *COMPONENTS, SIDES, "percentile", "abnormal",
                    RECONSTRUCTION])
        for condition, label, r in table:
            value = {c: f"{r[c]:.6f}" if c in r else "" for c in REPORTED}
            w.writerow([condition, label, cell(r["file"]), f"{r['score']:.6f}", *(value[c] for c in (*COMPONENTS, SIDES)),
                        f"{r['percentile']:.2f}", int(r["abnormal"]), value[RECONSTRUCTION]])


BOX_COLUMNS = ("image", "x0", "y0", "x1", "y1")


def read_boxes(csv_path) -> dict[str, list[tuple[float, float, float, float]]]:
    """{image: [(x0, y0, x1, y1), ...]} from a CSV with columns image,x0,y0,x1,y1[,label]; a bad file
    or row is a ReadError naming the line and what is wrong with it. A spreadsheet's byte-order mark
    and spaces after commas are read as a user sees them, and an image named two ways (`a.png`,
    `./a.png`) is one image with all its boxes, not two images with some of them each."""
    boxes = defaultdict(list)
    refuse_special(csv_path, "a box file")
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f, skipinitialspace=True)
            missing = [c for c in BOX_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:  # what was read: a header split on ';' or tabs looks right to the user, yet is one column
                read = f"its header reads {','.join(reader.fieldnames)!r}" if reader.fieldnames else "it is empty"
                raise ReadError(csv_path, f"the box file has no column(s) {', '.join(missing)} "
                                          f"(needs {','.join(BOX_COLUMNS)}[,label]; {read})")
            for row in reader:
                line = reader.line_num  # the file's line: blank lines are skipped, not numbered away
                try:
                    x0, y0, x1, y1 = (float(row[k]) for k in BOX_COLUMNS[1:])
                except (TypeError, ValueError):
                    raise ReadError(csv_path, f"line {line}: box coordinates must be numbers") from None
                if not all(np.isfinite(v) for v in (x0, y0, x1, y1)) or x1 < x0 or y1 < y0:
                    raise ReadError(csv_path, f"line {line}: a box needs finite x0 <= x1 and y0 <= y1")
                if not (row["image"] or "").strip():
                    raise ReadError(csv_path, f"line {line}: no image named")
                boxes[str(PurePath(row["image"].strip()))].append((x0, y0, x1, y1))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ReadError(csv_path, f"cannot read the box file ({e})") from None
    if not boxes:
        raise ReadError(csv_path, "the box file holds no boxes")
    return boxes


def box_mask(shape: tuple[int, int], boxes, block: int = 1) -> np.ndarray:
    """Pixels inside any box, each box clipped to the image (a box partly outside keeps its inside
    part; one wholly outside marks nothing). Boxes are in the pixels of the file as viewers show it, where
    they were drawn: upright as its EXIF orientation says (the grid the heatmap is on), and at full size, so on
    an image read reduced (`Radiograph.block` file pixels a side per pixel) a box marks the blocks its pixels
    fall in."""
    rows, cols = shape
    mask = np.zeros(shape, bool)
    for x0, y0, x1, y1 in boxes:
        c0, c1 = max(0, int(np.floor(x0)) // block), min(cols - 1, int(np.ceil(x1)) // block)
        r0, r1 = max(0, int(np.floor(y0)) // block), min(rows - 1, int(np.ceil(y1)) // block)
        if c0 <= c1 and r0 <= r1:
            mask[r0:r1 + 1, c0:c1 + 1] = True
    return mask


def boxes_outside(image: Radiograph, boxes) -> str | None:
    """Why the boxes cannot be this image's, where any lies wholly outside it: boxes of another
    resolution or another image, whose figures would mean nothing. One such box beside others that
    lie inside was dropped unsaid, and the image scored on the rest (which are as likely misplaced)."""
    outside = sum(not box_mask(image.shape[1:], [box], image.block).any() for box in boxes)
    if not outside:
        return None
    read_as = f", read in blocks of {image.block} x {image.block}" if image.block > 1 else ""
    size = f"{image.shape[2] * image.block} x {image.shape[1] * image.block} pixels{read_as}"
    if outside == len(boxes):
        return f"none of its {len(boxes)} box(es) lies inside the image ({size})"
    return f"{outside} of its {len(boxes)} boxes lie wholly outside the image ({size})"


def image_in(images_dir, name: str) -> Path:
    """`images_dir / name`, refused (ReadError) where the name leads outside the folder (absolute, or
    up through '..'): a box file names images inside --images, and must not make us read elsewhere.
    A name that is not there may lack its extension (`a` for `a.png`, as many datasets' tables give
    it): it is the one image of that name with an image extension."""
    relative = PurePath(name)
    if relative.is_absolute() or ".." in relative.parts:
        raise ReadError(name, f"the box file names an image outside {images_dir}; left out")
    path = Path(images_dir) / relative
    return path if path.exists() or path.is_symlink() else with_extension(path)


def with_extension(path: Path) -> Path:
    """The one image named `path` plus an image extension (in either case), else `path` itself (its
    reader says it does not exist); ReadError where several are, naming them."""
    found: list[Path] = []
    for suffix in IMAGE_SUFFIXES:
        for candidate in (path.with_name(path.name + suffix), path.with_name(path.name + suffix.upper())):
            # not any(samefile): on a case-insensitive disk (macOS) a.png and a.PNG are one file
            if candidate.exists() and not any(os.path.samefile(candidate, f) for f in found):
                found.append(candidate)
    if len(found) > 1:
        raise ReadError(path, f"no such file, and {len(found)} images have this name with an extension "
                              f"({', '.join(f.name for f in found)}): the box file must name one; left out")
    return found[0] if found else path


def boxes_by_file(boxes_csv, images_dir, errors: list[str]) -> dict[Path, list[tuple[float, float, float, float]]]:
    """The box file's boxes by the image file each row names, so that an image named with and without
    its extension (`a`, `a.png`) is one image with all its boxes; a name that `image_in` refuses is
    added to `errors`."""
    by_file = defaultdict(list)
    for name, boxes in read_boxes(boxes_csv).items():
        try:
            by_file[image_in(images_dir, name)] += boxes
        except ReadError as e:
            errors.append(str(e))
    return by_file


def evaluate_boxes(detector, boxes_csv, images_dir, progress: bool = True) -> dict:
    """Pointing game (heatmap maximum inside a box), pixel AUROC inside vs outside boxes, and the
    random-heatmap baseline of the pointing game (the share of image area inside boxes). An image
    that cannot be read, that lies outside `images_dir`, that is a volume or no frontal chest view, that any of its boxes lies
    wholly outside, or that the model gives no finite score, is an error of its own, left out."""
    hits, aurocs, areas, errors = [], [], [], []
    for path, boxes in tqdm(sorted(boxes_by_file(boxes_csv, images_dir, errors).items()), desc="localisation",
                            unit="img", disable=not progress):
        try:
            image = read_radiograph(path)
            refuse_other_view(image, path)
            if image.shape[0] != 1:  # its boxes would be laid on the first slice alone
                raise ReadError(path, f"a volume of {image.shape[0]} slices: boxes are placed on 2D radiographs; "
                                      "left out")
        except ReadError as e:
            errors.append(str(e))
            continue
        outside = boxes_outside(image, boxes)
        if outside:
            errors.append(f"{path}: {outside}; left out")
            continue
        mask = box_mask(image.shape[1:], boxes, image.block)
        try:  # a NaN on one image is that image's error, not the end of the evaluation
            heat = detector.detect(image).heatmap.pixels[0]
        except NonFiniteScore as e:
            errors.append(str(e))
            continue
        hits.append(bool(mask.ravel()[np.argmax(heat)]))
        areas.append(float(mask.mean()))
        if 0 < mask.sum() < mask.size:  # a box covering all (or none) of the image has no pixel AUROC
            aurocs.append(roc_auc_score(mask.ravel(), heat.ravel()))
    if not hits:
        raise nothing_scored(images_dir, "none of the images named in the box file could be scored", errors)
    box_auroc = round(float(np.mean(aurocs)), 4) if aurocs else None
    return {"pointing_game": round(float(np.mean(hits)), 4), "box_auroc": box_auroc,
            "n_images": len(hits), "random_pointing_baseline": round(float(np.mean(areas)), 4),
            "model": detector.model_id, "errors": errors}
