"""`sslanomaly calibrate`: a model's score standardisation, percentiles and thresholds re-derived
from a site's own normal radiographs, the encoder and normal reference unchanged.

A model calibrated at one hospital is miscalibrated at the next one (other detectors, exposure,
field of view): its "5 % false positives" threshold may flag a third of that site's normals. A few
hundred of the site's normals fix the scale in seconds. The new folder is a complete, verified
model with its own id and a card that says what it was calibrated on, when, and how many.

The site's normals are new to the reference, but the score standardisation is fitted on them too:
it is cross-fitted (each normal's score standardised by the other folds' normals), and the
thresholds are set by rank on those scores, with the false-positive rate they imply on new
normals and its interval (`Calibration.expected_fpr`). That holds only for normals new to the
reference: a normal the reference was fitted on scores low, and thresholds set on such normals flag
more of the site's new normals than they state. Where the model records its reference normals
(core/model_files/reference_normals.py), those among the site's are set aside, each named.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from SSLAnomalyLib.core.detection.detector import AnomalyDetector
from SSLAnomalyLib.core.files.errors import with_left_out
from SSLAnomalyLib.core.model.calibration import DEFAULT_FPR, Calibration
from SSLAnomalyLib.core.model_files import model_folder, reference_normals, registry
from SSLAnomalyLib.core.model_files.model_card import model_card
from SSLAnomalyLib.core.reading.images import ReadError, as_folders
from SSLAnomalyLib.training.crossfit import FOLDS
from SSLAnomalyLib.training.crossfit import digest as files_digest
from SSLAnomalyLib.training.crossfit import fold_component_stats, fold_of
from SSLAnomalyLib.training.feature_cache import normal_files, normal_image
from SSLAnomalyLib.training.progress import progress_over

MIN_NORMALS = 20  # below this a 5 % threshold is the single highest normal, and percentiles are coarse
BATCH = 32


@dataclass
class LeftOut:
    """A normal given and not used: its file, for the card to name, and the reason."""

    file: str
    reason: str

    def __str__(self) -> str:  # "file: reason", as printed and in the manifest's `skipped`
        return f"{self.file}: {self.reason}"


@dataclass
class NormalScores:
    components: dict[str, np.ndarray]  # raw components of each readable file
    scores: np.ndarray                 # image scores, under `fold_stats` where given
    peaks: np.ndarray                  # in-lung heatmap peaks, likewise
    kept: list[str]
    unreadable: list[LeftOut]
    copies: list[LeftOut]              # files whose image an earlier file already gave, left out
    in_reference: list[LeftOut]        # files whose image the model's reference was fitted on, left out


def score_normals(detector: AnomalyDetector, files: list[Path], progress: bool = True,
                  fold: np.ndarray | None = None, fold_stats: dict | None = None,
                  reference: frozenset[bytes] | None = None) -> NormalScores:
    """Scores of every readable radiograph (the errors of the other files), each image once: a copy of one
    already read is left out (`copies`), since twenty copies of one radiograph are one normal whose
    spread of zero made every other image score millions of deviations; so is an image whose marks
    are among `reference`'s (`in_reference`). With `fold_stats`, file i is scored under the
    standardisation of its fold `fold[i]` (which also decides a lung field's raise on the heatmap,
    so its peak too)."""
    components, scores, peaks, kept, unreadable, copies, in_reference, first = {}, [], [], [], [], [], [], {}
    batch = []

    def flush():
        if not batch:
            return
        groups = {None: batch} if fold_stats is None else {j: [b for b in batch if fold[b[0]] == j]
                                                            for j in dict.fromkeys(fold[i] for i, _, _ in batch)}
        for j, items in groups.items():
            if j is not None:
                detector.scorer.component_stats = fold_stats[j]
            s = detector.scorer.score(np.stack([p.image01 for _, _, p in items]), np.stack([p.lung for _, _, p in items]))
            for c, v in s.components.items():
                components.setdefault(c, []).extend(v.tolist())
            scores.extend(s.score.tolist())
            peaks.extend(s.peaks.tolist())
            kept.extend(str(f) for _, f, _ in items)
        batch.clear()

    for i, f in enumerate(progress_over(files, "calibrating", "img", show=progress)):
        try:
            image = normal_image(f)  # a volume is left out, named, as train leaves it
        except ReadError as e:
            unreadable.append(LeftOut(e.path, e.reason))
            continue
        if first.setdefault(image.identity, f) != f:
            copies.append(LeftOut(str(f), f"the same image as {first[image.identity]}, counted once"))
            continue
        if reference is not None and reference_normals.image_marks(image) & reference:
            in_reference.append(LeftOut(str(f), "one of the normals the model's reference was fitted on (it scores "
                                                "lower than a new normal)"))
            continue
        batch.extend((i, f, p) for p in detector.prepare(image, range(1)))
        if len(batch) >= BATCH:
            flush()
    flush()
    return NormalScores({c: np.asarray(v) for c, v in components.items()}, np.asarray(scores), np.asarray(peaks),
                        kept, unreadable, copies, in_reference)


def too_few(dirs: list[str], counted: str, skipped: list[str]) -> ReadError:
    """The refusal of normals that leave fewer than MIN_NORMALS to set the thresholds on, each normal
    left out named."""
    return ReadError(", ".join(dirs), with_left_out(f"{counted}; calibration needs at least {MIN_NORMALS} (a few "
                                                    "hundred give stable thresholds)", skipped))


def calibration_tag(files_digest16: str, calibration: Calibration) -> str:
    """8 hex digits naming one calibration: the normals' file list and what they set (rate, scores,
    thresholds). The file list alone gave two calibrations of a model at two rates one id, and a
    findings JSON names the model that scored it by its id."""
    text = files_digest16 + json.dumps(calibration.to_dict(), sort_keys=True, default=float)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def calibrate_model(model, normals_dir, out_dir, fpr: float = DEFAULT_FPR, progress: bool = True,
                    overwrite: bool = False) -> Path:
    """Write a new model folder calibrated on the normals of `normals_dir`; returns it. A model already
    in `out_dir` is replaced only with `overwrite`."""
    source, out_dir = model_folder.resolve(model), Path(out_dir)
    model_folder.refuse_source(out_dir, model)
    model_folder.refuse_existing(out_dir, overwrite)  # before the normals are scored
    loaded = model_folder.load(source)  # the weights and reference as they are, verified
    reference = reference_normals.recorded(loaded.arrays)
    detector = AnomalyDetector.load(model, device="cpu")
    detector.limit_cpu_threads()
    dirs = as_folders(normals_dir)
    files = normal_files(dirs)
    raw = score_normals(detector, files, progress, reference=reference)
    kept, skipped = raw.kept, [str(x) for x in raw.unreadable + raw.copies + raw.in_reference]
    if len(kept) < MIN_NORMALS:
        left_out = [f"{len(raw.copies)} copies of them"] if raw.copies else []
        left_out += [f"{len(raw.in_reference)} in the model's normal reference"] if raw.in_reference else []
        left_out = f" ({' and '.join(left_out)} left out)" if left_out else ""
        raise too_few(dirs, f"{len(kept)} distinct readable normal radiograph(s){left_out}", skipped)
    fold = fold_of(len(kept), FOLDS, seed=0)
    out_of_fold = score_normals(detector, [Path(f) for f in kept], False, fold,
                                fold_component_stats(raw.components, fold, np.ones(len(kept), bool), FOLDS))
    stats = detector.scorer.standardise_on(raw.components).component_stats
    calibration = Calibration.of_normals(out_of_fold.scores, out_of_fold.peaks, fpr,
                                      [Path(f).name for f in out_of_fold.kept])
    if len(calibration.normal_scores) < MIN_NORMALS:  # the thresholds are set on those left
        raise too_few(dirs, f"{len(kept)} distinct readable normal radiograph(s), {len(calibration.set_aside)} set aside "
                            f"as scoring far beyond the others ({', '.join(calibration.set_aside_files)}: likely "
                            f"abnormal, review them), leave {len(calibration.normal_scores)}", skipped)
    digest = files_digest(kept)
    old = detector.manifest
    merged = {"federated": dict(old.section("federated"), calibrated=True)} if old.section("federated") else {}
    manifest = old.replaced(**merged,
        files=None, format_version=None, measured=None,
        population=registry.population_of(model, old),
        model_id=f"{old.model_id}-cal{calibration_tag(digest, calibration)}",
        scoring=dict(old.section("scoring"), component_stats=stats),
        calibration=calibration,
        site_calibration={"normals": os.pathsep.join(dirs), "n_normals": len(kept), "files_sha256_16": digest,
                          "skipped": skipped, "n_in_reference": None if reference is None else len(raw.in_reference),
                          "left_out": {"unreadable": [x.file for x in raw.unreadable],  # the card counts and names them
                                       "copies": [x.file for x in raw.copies],
                                       "in_reference": [x.file for x in raw.in_reference]},
                          "from_model": old.model_id, "from_folder": str(source),
                          "when": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")})
    return model_folder.save(out_dir, loaded.encoder_state, loaded.arrays, manifest, model_card(manifest),
                             overwrite=overwrite, decoder_state=loaded.decoder_state)
