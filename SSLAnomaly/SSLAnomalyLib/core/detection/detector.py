"""The object a user holds: a detector loaded from a model folder that turns a radiograph (or a
volume, slice by slice) into a calibrated score, a heatmap on the input's own grid and findings."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import torch

from SSLAnomalyLib.core.anatomy.lung_network import PRIOR_SUPPORT, LungFields, LungSegmenter, bundled_segmenter
from SSLAnomalyLib.core.detection.regions import Finding, agree_with_verdict, diffuse_finding, find_regions
from SSLAnomalyLib.core.model.acquisition import AcquisitionDirections
from SSLAnomalyLib.core.model.calibration import Calibration
from SSLAnomalyLib.core.model.device import select_device
from SSLAnomalyLib.core.model.encoder import build_encoder
from SSLAnomalyLib.core.model.heatmap import to_input_grid
from SSLAnomalyLib.core.model.preprocess import to_model_input
from SSLAnomalyLib.core.model.reconstruction import Reconstruction
from SSLAnomalyLib.core.model.reference import NormalReference
from SSLAnomalyLib.core.model.scoring import SCORE_CHUNK, Scorer
from SSLAnomalyLib.core.model_files import model_folder, registry
from SSLAnomalyLib.core.model_files.manifest import ANOMALY, Manifest
from SSLAnomalyLib.core.reading.image import Radiograph
from SSLAnomalyLib.core.results.findings_json import findings_document

OUT_OF_RANGE_WARNING = ("score far beyond every calibration normal: if this is not a frontal chest radiograph "
                        "the result means nothing; if it is, it is strongly abnormal")


def other_lungs_warning(manifest: Manifest | None, anatomy: LungSegmenter) -> str | None:
    """What a reader is told when the lung network drawing the fields is not the one the model's
    reference and thresholds were fitted with (a model fitted before the bundled network changed, or
    under another SSLANOMALY_LUNGS): scored as if nothing had changed, its percentiles would be wrong."""
    fitted = manifest.lungs if manifest is not None else None
    if fitted is None or fitted == anatomy.model_id:
        return None
    return (f"this model was fitted on lung fields drawn by the lung network {fitted}, but {anatomy.model_id} drew "
            "them here: its score and thresholds do not hold; refit it on its normals "
            "(sslanomaly train --start-from MODEL --minutes 0 --normals DIR --out NEW)")


def reference_problem(scorer: Scorer, lung_prior: np.ndarray | None, manifest: Manifest) -> str | None:
    """Why a model's reference arrays cannot score what its encoder gives (the reference of another
    encoder, input size or views) or are not what its manifest says was fitted (positions
    standardised, the lung prior every model is made with), naming the array: found on loading, with
    one blank input, not image by image (each failed on its own with a broadcasting error) nor
    silently (standardisation dropped; without the prior, a lung field drawn on the arm is not
    mirrored and findings are no longer kept to where lungs lie). The blank input costs 10 to 25 ms
    of CPU on one thread with a bundled model, 1 to 2 % of a process's first load of it: a real
    forward pass, which also finds acquisition directions that do not fit."""
    size, fitted = scorer.config.input_size, scorer.reference.distance_mean is not None
    try:
        pooled, patches = scorer.features(np.zeros((1, size, size), np.float32), np.ones((1, size, size), bool))
    except RuntimeError as e:  # acquisition directions as wide as patch means of another encoder
        return f"its encoder's patch features do not fit its acquisition directions ({' '.join(str(e).split())})"
    problem = scorer.reference.misfit(pooled.shape[1], tuple(patches.shape[1:]))
    if problem is None and lung_prior is None:
        problem = "reference.lung_prior (the training normals' mean lung field) is missing"
    if problem is None and lung_prior.shape != (size, size):
        problem = f"reference.lung_prior has shape {lung_prior.shape}, not the input's {(size, size)}"
    standardised = manifest.section("reference").get("positions_standardised")
    if problem is None and standardised is not None and bool(standardised) != fitted:
        problem = (f"the manifest says positions_standardised {standardised}, but reference.distance_mean and "
                   f"distance_std are {'missing' if standardised else 'there'}")
    return problem


def detection_threads() -> int:
    """Torch threads while detecting on the CPU: the cores a prefetch thread (or a GUI) leaves. One
    128-pixel image is too little work to split, and threads that wait for a busy core cost more than
    they give: on the 2-core machine, with another process running, 2 threads encoded 60x slower than 1."""
    return max(1, (os.cpu_count() or 2) - 1)


class NonFiniteScore(ValueError):
    """A score that is NaN or infinite: never reported as `abnormal: false`."""


@dataclass
class DetectionResult:
    score: float
    threshold: float
    abnormal: bool
    percentile: float
    heatmap: Radiograph
    pixel_threshold: float
    findings: list[Finding]
    model_id: str
    model_sha256: str = ""  # the model folder's seal (manifest_sha256): its weights and calibration, not just its id
    lung_network: str = ""  # the model_id of the lung network that drew the fields the score and findings lie in
    lung_network_sha256: str = ""  # and its folder's seal
    slice_scores: list[float] = field(default_factory=list)
    top_slice: int = 0  # the slice whose score is the image's (the overlay's), blank slices never
    components: dict[str, float] = field(default_factory=dict)  # z-scores of the highest-scoring slice
    warnings: list[str] = field(default_factory=list)
    lungs: Radiograph | None = None  # uint8 0/1 lung fields on the input's grid, when asked for
    image_id: str = ""  # Radiograph.identity of the input: what a review of it is keyed by

    def to_dict(self, input_path: str) -> dict:
        """The findings document (core/results/findings_json.py) of this result."""
        return findings_document(input_path, self.image_id, self.score, self.threshold, self.abnormal,
                                 self.percentile, self.model_id, self.pixel_threshold, self.components,
                                 self.warnings, [f.to_dict() for f in self.findings],
                                 model_sha256=self.model_sha256 or None, lung_network=self.lung_network or None,
                                 lung_network_sha256=self.lung_network_sha256 or None)


@dataclass
class PreparedSlice:
    image01: np.ndarray
    fields: LungFields

    @property
    def lung(self) -> np.ndarray:
        return self.fields.mask


class AnomalyDetector:
    def __init__(self, scorer: Scorer, calibration: Calibration, lung_prior: np.ndarray | None,
                 model_id: str, manifest: Manifest | None = None, anatomy: LungSegmenter | None = None,
                 population: registry.Population | None = None):
        self.scorer, self.calibration, self.lung_prior = scorer, calibration, lung_prior
        self.model_id, self.manifest, self.population = model_id, manifest, population
        self.anatomy = anatomy if anatomy is not None else bundled_segmenter()
        self.lungs_warning = other_lungs_warning(manifest, self.anatomy)

    @property
    def lung_support(self) -> np.ndarray | bool:
        """Where lungs can be at all (the training normals' lung prior): a dark gap between arm and
        chest that an image's own mask mistook for lung yields no finding."""
        return True if self.lung_prior is None else self.lung_prior >= PRIOR_SUPPORT

    def limit_cpu_threads(self) -> None:
        """On the CPU, use `detection_threads()` torch threads (a process-wide torch setting)."""
        if self.scorer.device.type == "cpu":
            torch.set_num_threads(detection_threads())

    @property
    def model_sha256(self) -> str:
        """The seal of the model folder it was loaded from (covering the SHA-256 of its weights and its
        calibration): a folder written again under the same model_id has another. "" without a manifest."""
        return self.manifest.seal if self.manifest is not None else ""

    @property
    def input_size(self) -> int:
        return self.scorer.config.input_size

    @classmethod
    def load(cls, model: str | os.PathLike = "default", device: str = "auto") -> "AnomalyDetector":
        """Load and verify a model: a bundled model's name ('default' is the adult one) or a folder."""
        loaded = model_folder.load(model, kind=ANOMALY)
        manifest = loaded.manifest
        try:
            net = build_encoder(manifest.encoder)
            net.load_state_dict(loaded.encoder_state)
            reference = NormalReference.from_arrays(loaded.arrays)
            acquisition = AcquisitionDirections.from_arrays(loaded.arrays)
            if not manifest.component_stats:
                raise ValueError("the manifest has no scoring.component_stats")
            reconstruction = (Reconstruction.from_state(loaded.decoder_state, manifest.reconstruction, manifest.encoder)
                              if manifest.reconstruction is not None else None)
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            raise model_folder.ModelError(loaded.path, f"manifest or weights are inconsistent ({e})") from None
        scorer = Scorer(net, manifest.encoder, select_device(device), reference=reference,
                        component_stats=manifest.component_stats, sides=manifest.sides, reconstruction=reconstruction,
                        acquisition=acquisition)
        problem = reference_problem(scorer, loaded.arrays.get("lung_prior"), manifest)
        if problem:
            raise model_folder.ModelError(loaded.path, f"{model_folder.WEIGHTS} does not fit its encoder or manifest: "
                                                       f"{problem}")
        return cls(scorer, manifest.calibration, loaded.arrays.get("lung_prior"), manifest.model_id, manifest,
                   population=registry.population_of(model, manifest))

    def prepare(self, image: Radiograph, slices: range | None = None) -> list[PreparedSlice]:
        """Model inputs and lung fields of `slices` (every slice by default)."""
        slices = range(image.shape[0]) if slices is None else slices
        xs = np.stack([to_model_input(image.shown(k), self.input_size) for k in slices])  # detect flips maps back
        return [PreparedSlice(x, fields) for x, fields in zip(xs, self.anatomy.fields(xs, self.lung_prior))]

    def prepare_ahead(self, image: Radiograph) -> list[PreparedSlice]:
        """What a prefetch thread prepares while another image is scored: the first chunk of slices."""
        return self.prepare(image, range(min(image.shape[0], SCORE_CHUNK)))

    def detect(self, image: Radiograph, prepared: list[PreparedSlice] | None = None,
               lungs: bool = False) -> DetectionResult:
        """Score every slice; the image score is the highest slice score of those not blank. `prepared` holds the first
        slices already prepared (a prefetch); the rest are prepared and scored `SCORE_CHUNK` at a
        time, so a volume costs its heatmap and nothing per slice beyond it. With `lungs`, the result
        also holds the lung fields on the input's grid."""
        n, rows, cols = image.shape
        prepared = prepared or []
        heat = np.empty(image.shape, np.float32)
        lung_grid = np.empty(image.shape, np.uint8) if lungs else None
        scores, standardised, findings, field_warnings = [], [], [], {}
        top_slice = None  # (score, index, grid map, lung fields) of the slice that drives the image score
        pixel_threshold = self.calibration.pixel_threshold
        display = image.display  # the slices were prepared as shown: their maps go back to the file's grid
        shown_shape = display.shown_shape(rows, cols)
        for start in range(0, n, SCORE_CHUNK):
            chunk = range(start, min(n, start + SCORE_CHUNK))
            part = prepared[start:chunk.stop]
            if len(part) < len(chunk):
                part += self.prepare(image, range(start + len(part), chunk.stop))
            batch = self.scorer.score(np.stack([p.image01 for p in part]), np.stack([p.lung for p in part]))
            if not np.all(np.isfinite(batch.score)) or not np.all(np.isfinite(batch.grid_maps)):
                raise NonFiniteScore(f"the score of {image.source or 'this image'} is not a finite number (a broken "
                                     "model or input); no result is given rather than a wrong one")
            for k, p, grid, s in zip(chunk, part, batch.grid_maps, batch.score):
                if k in image.blank_slices:  # nothing to score: no heat, no finding, no say in the verdict
                    heat[k] = 0
                    if lung_grid is not None:
                        lung_grid[k] = 0
                    continue
                grid, lung = display.stored(grid), display.stored(p.lung & self.lung_support)
                heat[k] = to_input_grid(grid, rows, cols)
                findings += find_regions(grid, lung, pixel_threshold, image, k)
                if top_slice is None or s > top_slice[0]:
                    top_slice = (s, k, grid, lung)
                if lung_grid is not None:
                    lung_grid[k] = display.stored(p.fields.on_grid(*shown_shape))
                if p.fields.warning:
                    field_warnings[p.fields.warning] = None
            scores.append(batch.score)
            standardised.append(batch.standardised)
        scores = np.concatenate(scores)
        _, top, grid, lung = top_slice  # the first slice of the highest score
        top_components = standardised[top // SCORE_CHUNK]
        score = float(scores[top])
        warnings = list(image.warnings)
        warnings += [w if n == 1 else f"{w} (on some slices)" for w in field_warnings]
        if self.lungs_warning:
            warnings.append(self.lungs_warning)
        population = registry.population_warning(image.dicom, self.population)
        if population:
            warnings.append(population)
        if self.calibration.far_beyond_normals(score):
            warnings.append(OUT_OF_RANGE_WARNING)
        abnormal = score > self.calibration.threshold
        findings = agree_with_verdict(findings, abnormal, diffuse_finding(grid, lung, image, top))
        return DetectionResult(score=score, threshold=self.calibration.threshold, abnormal=abnormal,
                               percentile=self.calibration.percentile(score), heatmap=image.with_pixels(heat),
                               pixel_threshold=pixel_threshold, findings=findings,
                               model_id=self.model_id, model_sha256=self.model_sha256,
                               lung_network=self.anatomy.model_id, lung_network_sha256=self.anatomy.model_sha256,
                               slice_scores=[float(s) for s in scores], top_slice=top,
                               components={c: float(z[top % SCORE_CHUNK]) for c, z in top_components.items()},
                               warnings=warnings, image_id=image.identity,
                               lungs=None if lung_grid is None else image.with_pixels(lung_grid))
