"""A normal reference fitted across sites without any image leaving its site.

Each site encodes its own normals with the same model and writes sums (`ReferenceStats`): the
pooled embeddings' moments, the per-position patch sums, and the patch residuals' moments. Merged,
they give the reference a fit on all the sites' normals together would give, up to rounding.

The residuals are taken against the nearest of the *merged* patch means, which no site knows in
the first round, and the nearest-mean choice is not a sum of anything a site could send first.
So the exact fit takes two rounds:
1. each site: `sslanomaly reference-stats --model M --normals DIR --out A.stats` (residuals against
   its own means); `sslanomaly merge --model M --stats A.stats B.stats --out ROUND1` already gives a
   usable model whose pooled Gaussian and patch means are exact and whose patch covariance is the
   sum of the sites' own-mean residual moments (approximate, and said so in its manifest and card);
2. each site: `sslanomaly reference-stats --model M --means ROUND1 --normals DIR --out A2.stats`;
   `merge` of those is exact (checked: the residuals' means digest equals the merged means').

What a stats file reveals: the number of normals, a hash of their file names, the lung network's id
that drew their lung fields (every site's must be the same), and sums over all of
them (no pixels, no per-image value); at least MIN_SITE_NORMALS normals, so that no sum is one image's
features, and at most MAX_SITE_NORMALS. It gets the usual file mode (0644 under the usual umask), as a
model trained on those normals does, whose reference holds the same kind of sums: the site's umask and
folders decide who reads it. Position standardisation, score standardisation and thresholds stay at
each site: `sslanomaly calibrate` on the merged model.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load_file, save

from SSLAnomalyLib.core.files.atomic import atomic_write_bytes, remove_leftovers
from SSLAnomalyLib.core.files.errors import PathError, with_left_out
from SSLAnomalyLib.core.anatomy.lung_network import bundled_segmenter
from SSLAnomalyLib.core.model.acquisition import ARRAY as ACQUISITION_ARRAY
from SSLAnomalyLib.core.model.acquisition import AcquisitionDirections
from SSLAnomalyLib.core.model.encoder import build_encoder
from SSLAnomalyLib.core.model.reference import NormalReference
from SSLAnomalyLib.core.model.reference_stats import MomentSums, ReferenceStats
from SSLAnomalyLib.core.model.scoring import Scorer
from SSLAnomalyLib.core.model_files import model_folder
from SSLAnomalyLib.core.model_files.manifest import ANOMALY
from SSLAnomalyLib.core.model_files.model_card import model_card
from SSLAnomalyLib.core.reading.images import as_folders
from SSLAnomalyLib.training.crossfit import ALL, digest, encode, residual_pass
from SSLAnomalyLib.training.feature_cache import FeatureCache

FORMAT = "sslanomaly-reference-stats"
VERSION = 3  # 3: names the lung network that drew them; 2: normals encoded with their lung fields (1: by none)
MIN_SITE_NORMALS = 20
# More normals than any site holds (the largest public chest radiograph sets hold under a million): the
# merge weighs each site by its count, and a count inflated with its sums (k copies of each image sum to
# the file times k, so the sums cannot tell) would make one site's reference everyone's
MAX_SITE_NORMALS = 10 ** 8
HEADER_TEXT = ("model_id", "files_sha256_16", "means_from", "lungs")
KEPT_ARRAYS = ("lung_prior", ACQUISITION_ARRAY)  # the model's, carried into a merge (the sites' sums are projected)


class StatsError(PathError):
    """A stats file that cannot be merged, with the file and the reason."""

    prefix = "reference statistics "


@dataclass
class SiteStats:
    stats: ReferenceStats
    model_id: str        # the model whose encoder made the features
    files_digest: str    # hash of the normals' file names
    means_from: str      # the model id whose patch means the residuals were taken against ("own": the site's)
    lungs: str           # the lung network that drew the normals' lung fields (the features framed by them)
    unread: tuple[str, ...] = ()  # "file: reason" of each normal that could not be read (told, never saved)

    def save(self, path) -> Path:
        header = {"format": FORMAT, "version": VERSION, "model_id": self.model_id, "n_images": self.stats.n_images,
                  "files_sha256_16": self.files_digest, "means_digest": self.stats.means_digest,
                  "means_from": self.means_from, "lungs": self.lungs,
                  "reveals": "sums over all the site's normals (pooled embedding moments, per-position patch sums, "
                             "patch residual moments), their number, a hash of their file names and the lung network's "
                             "id; no pixels, no per-image value"}
        path = check_target(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_leftovers(path.parent, path.name)  # a write of it killed outright (SIGKILL) left its temporary
        # written as bytes: safetensors' own file writer makes it 0600, not the usual mode (module docstring)
        return atomic_write_bytes(path, save({k: np.ascontiguousarray(v) for k, v in self.stats.arrays().items()},
                                             metadata={"sslanomaly": json.dumps(header)}))

    @classmethod
    def load(cls, path) -> "SiteStats":
        """A stats file as written, or StatsError naming what is wrong with it (its sums are checked
        against the model's feature sizes by `check`, at the merge)."""
        try:
            header = _header(path)
            if header.get("version") != VERSION:
                raise StatsError(path, f"is a stats file of format version {header.get('version')}, not {VERSION}: "
                                       "run reference-stats again with this SSLAnomaly")
            missing = [k for k in HEADER_TEXT if not isinstance(header.get(k), str)]
            if missing:
                raise StatsError(path, f"is not a complete stats file: its header has no {', '.join(missing)}")
            arrays = load_file(str(path))
            _check_arrays(path, arrays)
            stats = ReferenceStats.from_arrays(arrays, header.get("means_digest"))
        except (OSError, SafetensorError, json.JSONDecodeError, KeyError, IndexError, ValueError, TypeError) as e:
            raise StatsError(path, f"is not a readable stats file ({e})") from None
        if stats.residual is None:
            raise StatsError(path, "is not a complete stats file: it has no residual sums")
        if header.get("n_images") != stats.n_images:
            raise StatsError(path, f"cannot be merged: its header counts {header.get('n_images')} normals and its sums "
                                   f"{stats.n_images} (an edited or damaged file?)")
        return cls(stats, header["model_id"], header["files_sha256_16"], header["means_from"], header["lungs"])

    def check(self, path, pooled_size: int, patch_shape: tuple[int, int, int]) -> None:
        """Refuse sums that no `site_stats` run of this model could have written."""
        n = self.stats.n_images
        problem = self.stats.problem(pooled_size, patch_shape)
        if problem is None and n < MIN_SITE_NORMALS:
            problem = f"it sums {n} normals; a site sends sums of at least {MIN_SITE_NORMALS}"
        if problem is None and n > MAX_SITE_NORMALS:
            problem = (f"it counts {n} normals, more than any site holds (at most {MAX_SITE_NORMALS}); the merge "
                       "weighs each site by its count, so these sums would outweigh every other site's")
        if problem is not None:
            raise StatsError(path, f"cannot be merged: {problem} (an edited or damaged file?)")


def _means_named(means_from: str) -> str:
    return "the site's own means (round 1)" if means_from == "own" else f"the means of merge {means_from} (round 2)"


def _check_arrays(path, arrays: dict[str, np.ndarray]) -> None:
    """Only the arrays `SiteStats.save` writes, in its types: counts int64, sums float64 (a float32
    copy loses the digits a merge of thousands of normals needs; a count of 22.7 counts no images)."""
    expected = set(ReferenceStats.zeros(1, (1, 1, 1)).arrays()) | set(MomentSums.zeros(1).arrays("residual"))
    unknown = sorted(set(arrays) - expected)
    if unknown:
        raise StatsError(path, f"cannot be merged: it holds arrays no stats file has ({', '.join(unknown)})")
    for name, value in arrays.items():
        wanted = np.int64 if name == "n_images" or name.endswith(".n") else np.float64
        if value.dtype != wanted:
            raise StatsError(path, f"cannot be merged: {name} is {value.dtype}, not {np.dtype(wanted)} "
                                   "(an edited or damaged file?)")


def _header(path) -> dict:
    """A stats file's header (StatsError where it has none)."""
    with safe_open(str(path), "np") as f:
        header = json.loads((f.metadata() or {}).get("sslanomaly", "{}"))
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise StatsError(path, "is not an SSLAnomaly stats file (its header)")
    return header


def check_target(path) -> Path:
    """Where a stats file may be written: nowhere yet, or over an earlier stats file; never over a
    folder or another file (an --out naming one of the normals replaced the image)."""
    path = Path(path)
    if path.is_dir():
        raise StatsError(path, "is a folder; --out names the stats file to write")
    if path.exists():
        try:
            _header(path)  # a stats file of any version is replaced
        except (StatsError, OSError, SafetensorError, json.JSONDecodeError):
            raise StatsError(path, "exists and is not a stats file; it is never written over: choose another "
                                   "name") from None
    return path


def site_stats(model, normals, means_model=None, device="cpu", progress: bool = False) -> SiteStats:
    """A site's statistics of its normals under `model`'s encoder; residuals against the patch means
    of `means_model` (a merged model of the first round) when given, else against its own."""
    loaded = model_folder.load(model, kind=ANOMALY)
    manifest, config = loaded.manifest, loaded.manifest.encoder
    means_from = "own"
    if means_model is not None:  # refused before an hour of encoding, not after
        merged = model_folder.load(means_model)
        if merged.manifest.section("federated").get("encoder_of") != manifest.model_id:
            raise StatsError(means_model, f"is not a merge made with model {manifest.model_id}")
        means_from = merged.manifest.model_id
    net = build_encoder(config)
    net.load_state_dict(loaded.encoder_state)
    cache = FeatureCache.create()
    try:
        scorer = Scorer(net, config, device=device, acquisition=AcquisitionDirections.from_arrays(loaded.arrays))
        encoded = encode(scorer, cache, normals, folds=1, seed=0, progress=progress)
        if encoded.n_normals < MIN_SITE_NORMALS:
            raise StatsError(", ".join(as_folders(normals)), with_left_out(
                f"{encoded.n_normals} readable normals; a site sends sums of at least {MIN_SITE_NORMALS}, so that no "
                "sum is one image's features", encoded.skipped))
        total = encoded.total
        means = total.patch_means() if means_model is None else merged.arrays["patch_means"]
        stats = residual_pass(cache, {ALL: total}, {ALL: means})[ALL]
    finally:
        cache.close()
    return SiteStats(stats, manifest.model_id, encoded.files_digest, means_from, bundled_segmenter().model_id,
                     tuple(encoded.skipped))


def merge(model, stats_paths, out_dir, overwrite: bool = False) -> Path:
    """A verified model folder: `model`'s encoder with the reference of all the sites' sums."""
    model_folder.refuse_source(out_dir, model)
    loaded = model_folder.load(model, kind=ANOMALY)
    manifest = loaded.manifest
    model_folder.refuse_existing(out_dir, overwrite)
    sites = [SiteStats.load(p) for p in stats_paths]
    pooled_size, patch_shape = len(loaded.arrays["pooled_mean"]), tuple(np.shape(loaded.arrays["patch_means"]))
    for i, (path, site) in enumerate(zip(stats_paths, sites)):
        if site.model_id != manifest.model_id:
            raise StatsError(path, f"was computed with model {site.model_id}, not {manifest.model_id}")
        site.check(path, pooled_size, patch_shape)
        first = next((p for p, s in zip(stats_paths[:i], sites) if s.stats.same_normals(site.stats)), None)
        if first is not None:  # a site counted twice would weigh its normals double
            raise StatsError(path, f"holds the same normals' sums as {first}: each site's statistics are merged once")
    for path, site in zip(stats_paths[1:], sites[1:]):  # a mixture is neither round: merged, it was "round 1" unsaid
        if site.means_from != sites[0].means_from:
            raise StatsError(path, f"holds residuals against {_means_named(site.means_from)} and {stats_paths[0]} "
                                   f"against {_means_named(sites[0].means_from)}: merge the files of one round")
        if site.lungs != sites[0].lungs:  # features framed by other lung fields: sums of two references
            raise StatsError(path, f"was computed with the lung fields of the lung network {site.lungs} and "
                                   f"{stats_paths[0]} with those of {sites[0].lungs}: every site computes its "
                                   "statistics with the same lung network (the same SSLAnomaly, SSLANOMALY_LUNGS unset)")
    total = sum((s.stats for s in sites[1:]), sites[0].stats)
    exact = total.exact
    if not exact:  # first round: each site's residuals against its own means, summed
        residual = sum((s.stats.residual for s in sites[1:]), sites[0].stats.residual)
        total = total.with_residuals(residual, total.patch_means())
    reference = NormalReference.from_stats(total)
    new_arrays = dict(reference.to_arrays(), **{k: v for k, v in loaded.arrays.items() if k in KEPT_ARRAYS})
    federated = {"encoder_of": manifest.model_id, "exact": exact, "n_sites": len(sites),
                 "n_normals": total.n_images, "sites": [{"n_normals": s.stats.n_images, "files_sha256_16":
                                                         s.files_digest, "means_from": s.means_from} for s in sites],
                 "when": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                 "calibrated": False}
    out = manifest.replaced(
        # a site calibration of `model` is kept: it says whose the thresholds, kept too until calibrated, are
        files=None, format_version=None, measured=None, manifest_sha256=None,
        # named by the sites' sums, not only their file names: a re-merge of changed sums is another model, and
        # `detect --resume` never keeps a result of the earlier one
        model_id=f"{manifest.model_id}-fed{digest(s.files_digest + s.stats.fingerprint() for s in sites)[:8]}"
                 + ("" if exact else "-r1"),
        reference=dict(manifest.section("reference"), positions_standardised=False), federated=federated,
        anatomy=dict(manifest.section("anatomy"), lungs=sites[0].lungs))  # the network the sites' fields were drawn by
    return model_folder.save(out_dir, loaded.encoder_state, new_arrays, out, model_card(out), overwrite=overwrite,
                             decoder_state=loaded.decoder_state)
