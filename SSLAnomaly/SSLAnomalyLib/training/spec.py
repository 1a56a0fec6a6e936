"""What a training run is asked for (`TrainingSpec`), and the recipe it then follows (`Recipe`).

The policy lives here rather than in the command line, so that `train_model(spec, start=...)` from
Python trains exactly as `sslanomaly train` does: a run started from a model keeps that model's
recipe (input size, heatmap and image-level layers, what the image level is pooled over, pretext,
reference and calibration views, positions standardised, foreign-object share, the `sides` offset, and
the false-positive rate its thresholds were set for: its operating point) for every option left unset (None), and fine-tunes at FINE_TUNE_LR unless a learning rate is given; a run
from scratch takes the defaults. The starting model's acquisition directions (core/model/acquisition.py)
are kept where the encoder they belong to stays as it is and no other-source normals ask for new ones.
The manifest records which values were inherited, and which an option set otherwise than the
starting model (with its value).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from SSLAnomalyLib.core.model.acquisition import DEFAULT_DIRECTIONS, AcquisitionDirections
from SSLAnomalyLib.core.model.calibration import DEFAULT_FPR
from SSLAnomalyLib.core.model.encoder import EncoderConfig
from SSLAnomalyLib.core.model.reconstruction import Reconstruction
from SSLAnomalyLib.core.model.scoring import SIDES_OFFSET
from SSLAnomalyLib.core.model_files import model_folder
from SSLAnomalyLib.core.model_files.manifest import ANOMALY, Manifest
from SSLAnomalyLib.training.defaults import FINE_TUNE_LR, LR
from SSLAnomalyLib.training.objectives import MAE, Pretext

INHERITABLE = ("input_size", "patch_layers", "pooled_layers", "pooled_views", "pretext", "reference_views",
               "calibration_views", "standardise_positions", "foreign_objects", "sides_offset", "fpr")
DEFAULTS = {"input_size": EncoderConfig.input_size, "patch_layers": EncoderConfig.patch_layers,
            "pooled_layers": EncoderConfig.pooled_layers, "pooled_views": EncoderConfig.pooled_views,
            "pretext": Pretext(), "reference_views": 0, "calibration_views": 0, "standardise_positions": False,
            "foreign_objects": 0.0, "sides_offset": SIDES_OFFSET, "fpr": DEFAULT_FPR}


def recipe_of(manifest: Manifest) -> dict:
    """The inheritable values a model folder's manifest records (those it lacks keep the defaults)."""
    reference, pretext = manifest.section("reference"), manifest.section("pretext")
    found = {"input_size": manifest.encoder.input_size, "patch_layers": manifest.encoder.patch_layers,
             "pooled_layers": manifest.encoder.pooled_layers, "pooled_views": manifest.encoder.pooled_views,
             "pretext": Pretext.from_dict(pretext) if pretext else None,
             "reference_views": reference.get("augmented_views_per_normal"),
             "calibration_views": reference.get("calibration_augmented_views_per_normal"),
             "standardise_positions": reference.get("positions_standardised"),
             "foreign_objects": manifest.section("training").get("foreign_objects"),
             "sides_offset": manifest.section("scoring").get("sides_offset"),
             "fpr": manifest.section("calibration").get("false_positive_rate")}
    return {k: v for k, v in found.items() if v is not None}


@dataclass
class StartingEncoder:
    """The encoder of an existing model folder, to fine-tune on other normals or, with no training
    steps, only to refit the normal reference and calibration there (minutes on a CPU); with the
    recipe it was made with, which a run started from it keeps, MAE's decoder where it has one
    (kept by a run that trains on with `mae`, or trains not at all) and its acquisition directions
    where it has them (`kept_acquisition`)."""

    config: EncoderConfig
    state: dict[str, torch.Tensor]
    model_id: str
    folder: str
    recipe: dict = field(default_factory=dict)
    reconstruction: Reconstruction | None = None
    acquisition: AcquisitionDirections | None = None

    @classmethod
    def load(cls, model) -> "StartingEncoder":
        """From a verified model folder ('default' is the bundled model)."""
        loaded = model_folder.load(model, kind=ANOMALY)
        try:
            recipe = recipe_of(loaded.manifest)
            acquisition = AcquisitionDirections.from_arrays(loaded.arrays)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise model_folder.ModelError(loaded.path, f"manifest has no usable encoder ({e})") from None
        reconstruction = (Reconstruction.from_state(loaded.decoder_state, loaded.manifest.reconstruction,
                                                    loaded.manifest.encoder) if loaded.decoder_state else None)
        return cls(loaded.manifest.encoder, loaded.encoder_state, loaded.manifest.model_id, str(loaded.path), recipe,
                   reconstruction, acquisition)

    def describe(self) -> dict:
        return {"model_id": self.model_id, "folder": self.folder}


@dataclass(frozen=True)
class TrainingSpec:
    """One training run as asked for; None means "the starting model's, else the default"."""

    minutes: float = 30.0
    max_steps: int | None = None
    seed: int = 0
    device: str = "auto"
    fpr: float | None = None
    lr: float | None = None
    input_size: int | None = None
    patch_layers: tuple[str, ...] | None = None
    pooled_layers: tuple[str, ...] | None = None
    pooled_views: tuple[str, ...] | None = None
    pretext: Pretext | None = None
    reference_views: int | None = None
    calibration_views: int | None = None
    standardise_positions: bool | None = None
    foreign_objects: float | None = None
    sides_offset: float | None = None  # deviations of `sides` beyond which it decides the image score (scoring.py)
    other_source_normals: tuple[str, ...] = ()  # normals of other acquisitions: find acquisition directions anew
    acquisition_directions: int = DEFAULT_DIRECTIONS  # how many (with other_source_normals)
    half_weights: bool = False  # store the encoder in float16 (half the size; fitted with exactly those weights)
    freeze_encoder: bool = False  # train only MAE's decoder on the starting model's encoder, which stays as it is
    keep_last_step: bool = False  # keep the last step's encoder, not the one the normal-only signal chooses
    restart: bool = False       # discard an unfinished run's checkpoints instead of resuming them
    overwrite: bool = False     # replace a model already in the output folder


@dataclass(frozen=True)
class Recipe:
    """The values a run follows once the spec is resolved against its starting model."""

    encoder: EncoderConfig
    pretext: Pretext
    lr: float
    reference_views: int
    calibration_views: int
    standardise_positions: bool
    foreign_objects: float
    sides_offset: float
    fpr: float  # the false-positive rate the thresholds are set for
    inherited: dict  # {name: value} taken from the starting model, as the manifest records it
    overridden: dict = field(default_factory=dict)  # {name: {"given", "starting"}}: an option set otherwise


def resolve(spec: TrainingSpec, start: StartingEncoder | None = None) -> Recipe:
    """Each inheritable value: the spec's, else the starting model's, else the default. A frozen
    encoder needs a starting model and the `mae` objective (its decoder is the only part trained)."""
    if spec.freeze_encoder and start is None:
        raise ValueError("--freeze-encoder keeps the starting model's encoder as it is: name it with --start-from")
    if spec.freeze_encoder and MAE not in (spec.pretext or start.recipe.get("pretext") or Pretext()).weights():
        raise ValueError("--freeze-encoder trains only MAE's decoder on the frozen encoder: add --pretext mae")
    inherited = {name: start.recipe[name] for name in INHERITABLE
                 if getattr(spec, name) is None and start is not None and name in start.recipe}
    value = {name: getattr(spec, name) if getattr(spec, name) is not None else inherited.get(name, DEFAULTS[name])
             for name in INHERITABLE}
    base = start.config if start is not None else EncoderConfig()
    encoder = replace(base, input_size=value["input_size"], patch_layers=tuple(value["patch_layers"]),
                      pooled_layers=tuple(value["pooled_layers"]), pooled_views=tuple(value["pooled_views"]))
    lr = spec.lr if spec.lr is not None else (FINE_TUNE_LR if start is not None else LR)
    overridden = {name: {"given": shown(getattr(spec, name)), "starting": shown(start.recipe[name])}
                  for name in INHERITABLE if getattr(spec, name) is not None and start is not None
                  and name in start.recipe and shown(getattr(spec, name)) != shown(start.recipe[name])}
    return Recipe(encoder, value["pretext"], lr, value["reference_views"], value["calibration_views"],
                  value["standardise_positions"], value["foreign_objects"], value["sides_offset"], value["fpr"],
                  {k: shown(v) for k, v in inherited.items()}, overridden)


def shown(value):
    """A recipe value as the manifest records it (JSON: a pretext's objectives, lists for tuples)."""
    return value.to_dict()["objectives"] if isinstance(value, Pretext) else list(value) if isinstance(value, tuple) else value


def kept_acquisition(spec: TrainingSpec, start: StartingEncoder | None) -> AcquisitionDirections | None:
    """The starting model's acquisition directions, where this run keeps them: it asks for none anew
    and leaves the encoder as it is (no training steps, or only MAE's decoder trained), so the patch
    features the directions were found in are unchanged. An encoder trained on drops them."""
    if spec.other_source_normals or start is None or (spec.minutes > 0 and not spec.freeze_encoder):
        return None
    return start.acquisition
