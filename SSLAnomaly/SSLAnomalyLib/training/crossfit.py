"""The normal reference fitted streaming on every normal, with cross-fitted calibration.

Thresholds set on the scores of normals the reference was fitted on are too high for new normals
(they sit closer to a reference that holds them): the adult model's 5 % threshold flagged none of
the new normals of its own site. Here every normal is in the final reference, and every normal is
also scored as a new one would be: the normals are split into k folds, and each is scored by the
reference fitted without its fold (the total sums minus that fold's: `ReferenceStats`), with each
position's normal distance and each score component's standardisation also fitted without it.
The thresholds are set on these out-of-fold scores. The passes read the encoded normals back from
a temporary file (`FeatureCache`), so what the fit keeps in memory does not grow with the number of
normals (the process's peak does a little, through glibc's heap: docs/benchmarks.md, Scale).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from SSLAnomalyLib.core.files.errors import with_left_out
from SSLAnomalyLib.core.model.acquisition import AcquisitionDirections
from SSLAnomalyLib.core.model.encoder import EncoderConfig
from SSLAnomalyLib.core.model.reconstruction import Reconstruction
from SSLAnomalyLib.core.model.reference import NormalReference
from SSLAnomalyLib.core.model.reference_stats import (MomentSums, NeighbourMeans, PositionSums, ReferenceStats,
                                                      residual_sums)
from SSLAnomalyLib.core.model.scoring import Scorer, SidesRule, component_stats
from SSLAnomalyLib.core.reading.images import ReadError, as_folders
from SSLAnomalyLib.training.feature_cache import (CALIBRATION_ONLY, ORIGINAL, REFERENCE_VIEW, FeatureCache, augmented,
                                                  source_batches)

FOLDS = 5
ALL = -1  # the reference on every fold


@dataclass
class Encoded:
    """The first pass: each fold's sums, and what was read."""

    fold_stats: list[ReferenceStats]
    n_normals: int
    skipped: list[str]
    files_digest: str
    lung_prior: np.ndarray  # the normals' mean lung mask
    marks: list[frozenset[bytes]]  # each normal's marks (reference_normals.py; none for a pack's)

    @property
    def total(self) -> ReferenceStats:
        return sum(self.fold_stats[1:], self.fold_stats[0])


@dataclass
class CrossFit:
    scorer: Scorer        # the reference on every normal; positions and standardisation out-of-fold
    stats: ReferenceStats # the exact sums of that reference
    scores: np.ndarray    # out-of-fold image scores of the normals (and calibration-only images)
    peaks: np.ndarray     # their in-lung heatmap peaks
    names: list[str]      # their file names, in the same order
    encoded: Encoded


def fold_of(n: int, folds: int, seed: int) -> np.ndarray:
    """Each of n files' fold, seeded and balanced."""
    return np.random.default_rng([seed, 29]).permutation(n) % folds


def digest(names) -> str:
    """A short hash of a file list (names only): which normals, never what they show. Hashed as the
    names' bytes (os.fsencode), so that a name that is not UTF-8 (b'caf\\xe9.png') is hashed too."""
    return hashlib.sha256(os.fsencode("\n".join(sorted(Path(f).name for f in names)))).hexdigest()[:16]


def encode(scorer: Scorer, cache: FeatureCache, normals, folds: int, seed: int, reference_views: int = 0,
           calibration_views: int = 0, calibration_normals=None, progress: bool = False) -> Encoded:
    """Read and encode the normals (with their augmented copies) into `cache`, summing each fold's
    first-pass statistics; `calibration_normals` are encoded to be scored only, never fitted on. A
    calibration normal with the pixels of a normal (saved again in another format: the byte check of
    held_back.py passes it) is left out, named: the reference was fitted on it."""
    size = scorer.config.input_size
    rng = np.random.default_rng([seed, 11])
    fold_stats, skipped, n_normals, first = [None] * folds, [], 0, {}
    names, marks, lung_sum = [], [], np.zeros((size, size))
    for source, kind in ((normals, ORIGINAL), (calibration_normals, CALIBRATION_ONLY)):
        if source is None:
            continue
        files, batches = source_batches(source, size, progress, first=first)
        fold = fold_of(len(files), folds, seed + kind)
        for kept, images, bad, marked in batches:
            skipped += bad
            f = fold[kept]
            named = [Path(files[i]).name for i in kept]
            pooled, patches = cache.add(scorer, images, f, [kind] * len(kept), named)
            if kind == ORIGINAL and len(kept):
                n_normals += len(kept)
                names += named
                marks += marked
                _add_stats(fold_stats, f, pooled, patches)
                lung_sum += cache.last_lungs.sum(0)
            views = augmented(images, reference_views if kind == ORIGINAL else 0, rng)
            if len(views):
                vf = np.tile(f, reference_views)
                _add_stats(fold_stats, vf, *cache.add(scorer, views, vf, [REFERENCE_VIEW] * len(views)))
            views = augmented(images, calibration_views, rng)
            cache.add(scorer, views, np.tile(f, calibration_views), [CALIBRATION_ONLY] * len(views),
                      [f"{n} (augmented view)" for n in named] * calibration_views)
    if None in fold_stats:
        where = "the normals" if hasattr(normals, "images01") else ", ".join(as_folders(normals))
        raise ReadError(where, with_left_out(f"{n_normals} readable normal(s) cannot fill {folds} folds", skipped))
    return Encoded(fold_stats, n_normals, skipped, digest(names),
                   (lung_sum / max(n_normals, 1)).astype(np.float32), marks)


def _add_stats(fold_stats: list, folds: np.ndarray, pooled: np.ndarray, patches: torch.Tensor) -> None:
    for j in np.unique(folds):
        s = ReferenceStats.of(pooled[folds == j], patches[torch.from_numpy(folds == j)])
        fold_stats[j] = s if fold_stats[j] is None else fold_stats[j] + s


def residual_pass(cache: FeatureCache, sets: dict[int, ReferenceStats], means: dict[int, np.ndarray]
                  ) -> dict[int, ReferenceStats]:
    """The second pass: each set's residual sums against its means (set ALL holds every fold,
    set j every fold but j)."""
    sums = {r: MomentSums.zeros(next(iter(means.values())).shape[0]) for r in sets}
    neighbours = {r: NeighbourMeans(means[r]) for r in sets}
    for b in cache.batches():
        fitted = b.kinds != CALIBRATION_ONLY
        for r in sets:
            sel = fitted & (b.folds != r)
            if sel.any():
                sums[r] = sums[r] + residual_sums(b.patches[torch.from_numpy(sel)], neighbours[r])
    return {r: sets[r].with_residuals(sums[r], means[r]) for r in sets}


def cross_fit(net: torch.nn.Module, config: EncoderConfig, device, normals, calibration_normals=None,
              folds: int = FOLDS, seed: int = 0, reference_views: int = 0, calibration_views: int = 0,
              standardise_positions: bool = False, progress: bool = False,
              sides: SidesRule = SidesRule(), reconstruction: Reconstruction | None = None,
              acquisition: AcquisitionDirections | None = None) -> CrossFit:
    """The final scorer on every normal of `normals`, and out-of-fold scores and peaks for the
    thresholds (of `calibration_normals` too, scored like the normals but never fitted on), all
    scored with the `sides` rule (and MAE's `reconstruction`, where given); the patch features
    without the `acquisition` directions, where given (the cache holds them projected)."""
    base = Scorer(net, config, device=device, acquisition=acquisition)
    cache = FeatureCache.create()
    try:
        encoded = encode(base, cache, normals, folds, seed, reference_views, calibration_views,
                         calibration_normals, progress=progress)
        total = encoded.total
        sets = {ALL: total, **{j: total - s for j, s in enumerate(encoded.fold_stats)}}
        sets = residual_pass(cache, sets, {r: s.patch_means() for r, s in sets.items()})
        refs = {r: NormalReference.from_stats(s) for r, s in sets.items()}
        positions = _positions(cache, refs, folds) if standardise_positions else None
        scorers = {j: Scorer(net, config, device=device, reference=refs[j].with_positions(
            None if positions is None else positions[ALL] - positions[j]), sides=sides, reconstruction=reconstruction)
            for j in range(folds)}
        components, fold, kind = _raw_components(cache, scorers, config.input_size)
        original = kind == ORIGINAL
        for j, stats in fold_component_stats(components, fold, original, folds).items():
            scorers[j].component_stats = stats
        scores, peaks, names = _scores(cache, scorers, config.input_size)
    finally:
        cache.close()
    final = Scorer(net, config, device=device,
                   reference=refs[ALL].with_positions(None if positions is None else positions[ALL]),
                   component_stats=component_stats({c: v[original] for c, v in components.items()}),
                   sides=sides, reconstruction=reconstruction, acquisition=acquisition)
    return CrossFit(final, sets[ALL], scores, peaks, names, encoded)


def fold_component_stats(components: dict[str, np.ndarray], fold: np.ndarray, fitted: np.ndarray,
                         folds: int) -> dict[int, dict[str, list[float]]]:
    """Each fold's score standardisation: the components' mean and spread on the `fitted` items of
    the other folds."""
    return {j: component_stats({c: v[fitted & (fold != j)] for c, v in components.items()}) for j in range(folds)}


def _positions(cache: FeatureCache, refs: dict[int, NormalReference], folds: int) -> dict[int, PositionSums]:
    """Out-of-fold patch distance sums per fold (and ALL, their total): each normal's distance map
    against the reference without its fold, as a new normal's would be."""
    sums = {}
    for b in cache.batches():
        for j in np.unique(b.folds):
            sel = torch.from_numpy((b.folds == j) & (b.kinds == ORIGINAL))
            if sel.any():
                s = PositionSums.of(refs[j].raw_patch_map(b.patches[sel]).numpy())
                sums[j] = s + sums[j] if j in sums else s
    sums[ALL] = sum((sums[j] for j in range(1, folds)), sums[0])
    return sums


def _scored(cache: FeatureCache):
    """(batch, fold, selection) of every scored item (not the reference-only augmented copies)."""
    for b in cache.batches():
        for j in np.unique(b.folds):
            sel = (b.folds == j) & (b.kinds != REFERENCE_VIEW)
            if sel.any():
                yield b, j, sel


def _raw_components(cache: FeatureCache, scorers: dict[int, Scorer], size: int):
    """Raw components of every scored item, by the scorer of its fold, with its fold and kind."""
    components, folds, kinds = {}, [], []
    for b, j, sel in _scored(cache):
        s = scorers[j]._score_features(b.pooled[sel], b.patches[torch.from_numpy(sel)], b.lungs[sel], size,
                                       b.images[sel])
        for c, v in s.components.items():
            components.setdefault(c, []).append(v)
        folds.append(b.folds[sel])
        kinds.append(b.kinds[sel])
    return {c: np.concatenate(v) for c, v in components.items()}, np.concatenate(folds), np.concatenate(kinds)


def _scores(cache: FeatureCache, scorers: dict[int, Scorer], size: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Image scores, in-lung heatmap peaks and names of every scored item, by the scorer of its fold
    with that fold's standardisation (which also decides a lung field's raise on the heatmap)."""
    scores, peaks, names = [], [], []
    for b, j, sel in _scored(cache):
        s = scorers[j].finish(scorers[j]._score_features(b.pooled[sel], b.patches[torch.from_numpy(sel)], b.lungs[sel],
                                                         size, b.images[sel]))
        scores.append(s.score)
        peaks.append(s.peaks)
        names += list(b.names[sel])
    return np.concatenate(scores), np.concatenate(peaks), names
