"""Finding a model's acquisition directions (core/model/acquisition.py) from the site's normals and
normals of other acquisitions, both read from disk (or a normals pack), a seeded subset of each."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from SSLAnomalyLib.core.anatomy.lung_network import bundled_segmenter
from SSLAnomalyLib.core.model.acquisition import AcquisitionDirections, lung_field_means
from SSLAnomalyLib.core.model.encoder import EncoderConfig
from SSLAnomalyLib.core.model.scoring import Scorer
from SSLAnomalyLib.core.reading.images import ReadError, as_folders
from SSLAnomalyLib.training.feature_cache import normal_files, source_batches

MAX_NORMALS = 256  # of each source: the directions are means and a few leading axes, which this many pin down


def find_acquisition_directions(net: torch.nn.Module, config: EncoderConfig, device, normals, other_normals,
                                k: int, seed: int = 0, progress: bool = False
                                ) -> tuple[AcquisitionDirections, list[str]]:
    """The k directions in which `other_normals` (folders) differ from `normals` (folders or a pack)
    through this encoder, read from at most MAX_NORMALS of each (seeded), and the other-source files
    that could not be read ("file: reason"), for the manifest and the run to name."""
    scorer = Scorer(net, config, device=device)
    site, _ = _lung_field_means(scorer, normals, seed, progress)  # the site's unread are named by the fit
    other, unread = _lung_field_means(scorer, other_normals, seed, progress)
    try:
        return AcquisitionDirections.between(site, other, k), unread
    except ValueError as e:  # too few readable other normals, or the site's own again
        raise ReadError(", ".join(as_folders(other_normals)), str(e)) from None


def check_other_sources(other_normals, normals, k: int) -> None:
    """Refuse, before anything is trained, other-source folders without images, with fewer images than
    the `k` directions asked, or that are the site's own normal folders (nothing would separate the
    two sets but chance)."""
    files = normal_files(other_normals)
    if len(files) < k:
        raise ReadError(", ".join(as_folders(other_normals)), f"{len(files)} image(s) cannot give {k} acquisition "
                                                               "directions (give more, or fewer --acquisition-directions)")
    if hasattr(normals, "images01"):  # a normals pack: no folder to compare
        return
    own = {Path(f).resolve() for f in as_folders(normals)}
    for folder in as_folders(other_normals):
        if Path(folder).resolve() in own:
            raise ReadError(folder, "is one of the site's --normals folders; other-source normals come from "
                                    "another acquisition (another hospital, scanner, digitiser or export)")


def _lung_field_means(scorer: Scorer, source, seed: int, progress: bool) -> tuple[np.ndarray, list[str]]:
    """(n, channels) lung-field mean patch features of a seeded subset of at most MAX_NORMALS of `source`,
    and the files of it that could not be read ("file: reason"; skipped, as the fit skips them)."""
    _, batches = source_batches(source, scorer.config.input_size, progress, at_most=MAX_NORMALS, seed=seed)
    means, unread = [], []
    for _, images, skipped, _ in batches:
        unread += skipped
        if len(images):
            lungs = bundled_segmenter().masks(images)
            means.append(lung_field_means(scorer.features(images, lungs)[1], lungs))
    return (np.concatenate(means) if means else np.empty((0, 0))), unread
