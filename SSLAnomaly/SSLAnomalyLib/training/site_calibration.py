"""`sslanomaly calibrate`: a model's score standardisation, percentiles and thresholds re-derived
from a site's own normal radiographs, the encoder and normal reference unchanged.

A model calibrated at one hospital is miscalibrated at the next one (other detectors, exposure,
field of view): its "5 % false positives" threshold may flag a third of that site's normals. A few
hundred of the site's normals fix the scale in seconds. The new folder is a complete, verified
model with its own id and a card that says what it was calibrated on, when, and how many.
"""

from __future__ import annotations

import datetime
import hashlib
import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from SSLAnomalyLib.core import model_folder, registry
from SSLAnomalyLib.core.calibration import DEFAULT_FPR, Calibration
from SSLAnomalyLib.core.detector import AnomalyDetector
from SSLAnomalyLib.core.io import ReadError, as_folders, list_inputs, read_radiograph
from SSLAnomalyLib.core.model_card import model_card

MIN_NORMALS = 20  # below this a 5 % threshold is the single highest normal, and percentiles are coarse
BATCH = 32


def score_normals(detector: AnomalyDetector, files: list[Path], progress: bool = True):
    """Raw score components and in-lung heatmap peaks of every readable file, and the errors of the others."""
    components, peaks, kept, skipped = {}, [], [], []
    batch = []

    def flush():
        if not batch:
            return
        scores = detector.scorer.score(np.stack([p.image01 for _, p in batch]), np.stack([p.lung for _, p in batch]))
        for c, v in scores.components.items():
            components.setdefault(c, []).extend(v.tolist())
        peaks.extend(scores.peaks.tolist())
        kept.extend(str(f) for f, _ in batch)
        batch.clear()

    for f in tqdm(files, desc="calibrating", unit="img", disable=not progress):
        try:
            image = read_radiograph(f)
        except ReadError as e:
            skipped.append(str(e))
            continue
        batch.extend((f, p) for p in detector.prepare(image, range(1)))  # a volume's first slice
        if len(batch) >= BATCH:
            flush()
    flush()
    return {c: np.asarray(v) for c, v in components.items()}, np.asarray(peaks), kept, skipped


def calibrate_model(model, normals_dir, out_dir, fpr: float = DEFAULT_FPR, progress: bool = True,
                    overwrite: bool = False) -> Path:
    """Write a new model folder calibrated on the normals of `normals_dir`; returns it. A model already
    in `out_dir` is replaced only with `overwrite`."""
    source = model_folder.resolve(model)
    out_dir = Path(out_dir)
    if out_dir.resolve() == source.resolve():
        raise model_folder.ModelError(out_dir, "the calibrated model must go to a new folder, not over its source")
    model_folder.refuse_existing(out_dir, overwrite)  # before the normals are scored
    detector = AnomalyDetector.load(model, device="cpu")
    detector.limit_cpu_threads()
    dirs = as_folders(normals_dir)
    files = list_inputs(dirs)
    components, peaks, kept, skipped = score_normals(detector, files, progress)
    if len(kept) < MIN_NORMALS:
        raise ReadError(", ".join(dirs), f"{len(kept)} readable normal radiograph(s); calibration needs at least "
                                     f"{MIN_NORMALS} (a few hundred give stable thresholds)")
    stats = detector.scorer.standardise_on(components).component_stats
    calibration = Calibration(detector.scorer.combine(components), peaks, fpr)
    digest = hashlib.sha256("\n".join(sorted(Path(f).name for f in kept)).encode()).hexdigest()[:16]
    old = dict(detector.manifest)
    manifest = {k: v for k, v in old.items() if k not in ("files", "format_version", "measured")}
    population = registry.population_of(model, old)
    if population is not None:
        manifest["population"] = population.to_dict()
    manifest.update(
        model_id=f"{old.get('model_id', 'model')}-cal{digest[:8]}",
        scoring=dict(old["scoring"], component_stats=stats),
        calibration=calibration.to_dict(),
        site_calibration={"normals": os.pathsep.join(dirs), "n_normals": len(kept), "files_sha256_16": digest,
                          "skipped": skipped, "from_model": old.get("model_id"), "from_folder": str(source),
                          "when": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")})
    _, encoder, arrays = model_folder.load(source)  # the weights and reference as they are, verified
    return model_folder.save(out_dir, encoder, arrays, manifest, model_card(manifest), overwrite=overwrite)
