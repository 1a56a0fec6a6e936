"""A model's manifest as a typed object: the fields that code decides with (encoder, calibration,
component statistics, population, kind) parsed once when a folder is loaded, and the document
they came from kept whole, so that what the one writer (model_folder.save) puts back on disk is
exactly what was read, plus what a writer replaced (`Manifest.replaced`).

The descriptive sections (training summary, data, measured figures, software, the lung network's
shape) are read with `section(name)`; the model card renders the whole `document`.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from SSLAnomalyLib.core.model.calibration import Calibration
from SSLAnomalyLib.core.model.encoder import EncoderConfig
from SSLAnomalyLib.core.model.reconstruction import RECONSTRUCTION, MaskedPatches
from SSLAnomalyLib.core.model.scoring import COMPONENTS, FIELDS, SIDES, SidesRule
from SSLAnomalyLib.core.model_files.registry import Population
from SSLAnomalyLib.core.model_files.signing import SEAL

ANOMALY = "anomaly"                    # manifests without a "kind" are anomaly models
LUNG_SEGMENTATION = "lung-segmentation"
KIND_NAMES = {ANOMALY: "an anomaly model (made by train, calibrate or merge)",
              LUNG_SEGMENTATION: "a lung-field model (made by train-anatomy)"}


class ManifestFieldError(ValueError):
    """A manifest field that cannot be read as what it must be; `field` names it."""

    def __init__(self, name: str, why: str):
        super().__init__(f"field {name} {why}")
        self.field = name


@dataclass(frozen=True)
class Manifest:
    document: dict = field(repr=False)
    model_id: str
    kind: str
    encoder: EncoderConfig | None                 # None for a lung-segmentation model
    calibration: Calibration | None                # None for a lung-segmentation model
    component_stats: dict[str, tuple[float, float]]  # {component: (mean, spread)} of the training normals
    population: Population | None                  # who the model learned from, where the manifest says
    sides: SidesRule = SidesRule()                 # scoring.sides_offset and sides_from: how `sides` decides
    reconstruction: MaskedPatches | None = None    # scoring.reconstruction: how MAE's decoder is scored, where it is
    lungs: str | None = None                       # anatomy.lungs: the lung network its reference was fitted with

    @classmethod
    def from_dict(cls, document: dict) -> "Manifest":
        """Parse `document` (kept as a deep copy); a ManifestFieldError names a field that cannot be read."""
        document = copy.deepcopy(document)
        kind = document.get("kind", ANOMALY)
        return cls(document, _parsed(document, "model_id", _model_id, True), kind,
                   _parsed(document, "encoder", EncoderConfig.from_dict, kind == ANOMALY),
                   _parsed(document, "calibration", Calibration.from_dict, kind == ANOMALY),
                   _parsed(document, "scoring", _component_stats, kind == ANOMALY) or {},
                   _parsed(document, "population", Population.from_dict, False),
                   _parsed(document, "scoring", SidesRule.from_dict, False) or SidesRule(),
                   _parsed(document.get("scoring") or {}, "reconstruction", MaskedPatches.from_dict, False),
                   _parsed(document.get("anatomy") or {}, "lungs", _text, False))

    @property
    def seal(self) -> str:
        """Its `manifest_sha256` (signing.py), which covers the SHA-256 of the folder's weights: a folder
        written again under the same model_id has another. "" for a manifest not read from a folder."""
        return str(self.document.get(SEAL, ""))

    def section(self, name: str) -> Any:
        """A descriptive section as written (a copy: the manifest itself never changes); {} where absent."""
        return copy.deepcopy(self.document.get(name, {}))

    def unread_normals(self) -> list[str]:
        """The normals its writer could not read ("file: reason"): the site calibration's where the
        model was calibrated (its training section is the source model's), else the training's and
        those of the other-source normals its acquisition directions were found on."""
        site = self.document.get("site_calibration")
        if site is not None:
            return list(site.get("skipped") or [])
        other = (self.document.get("reference") or {}).get("acquisition_directions") or {}
        return list((self.document.get("data") or {}).get("skipped") or []) + list(other.get("skipped") or [])

    def to_dict(self) -> dict:
        return copy.deepcopy(self.document)

    def replaced(self, **sections) -> "Manifest":
        """This manifest with whole sections replaced: typed values (a Calibration, a Population, an
        EncoderConfig) are written as their dicts, anything else as given; None removes a section."""
        document = self.to_dict()
        for name, value in sections.items():
            if value is None:
                document.pop(name, None)
            else:
                document[name] = value.to_dict() if hasattr(value, "to_dict") else copy.deepcopy(value)
        return Manifest.from_dict(document)


def _text(value) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{value!r} is not text")
    return value


def _component_stats(scoring: dict) -> dict[str, tuple[float, float]]:
    """{component: (mean, spread)}, refused where it cannot standardise what the model scores: a
    component left out (`patch`, or `peak` beside `sides`, failed every image on a KeyError), one no
    scorer knows, or other than the `components` listed beside them (`sides` left out silently
    stopped the model scoring one-sided white-outs)."""
    stats = {name: (float(mean), float(spread)) for name, (mean, spread) in (scoring.get("component_stats") or {}).items()}
    needed = set(COMPONENTS) | ({*FIELDS, "peak"} if SIDES in stats else set())
    unknown = set(stats) - {*COMPONENTS, RECONSTRUCTION, SIDES, *FIELDS, "peak"}
    listed = scoring.get("components", list(stats))
    if needed - set(stats):
        raise ValueError(f"component_stats lacks {sorted(needed - set(stats))}, which the model scores with")
    if unknown:
        raise ValueError(f"component_stats holds {sorted(unknown)}, which no scorer knows")
    if not isinstance(listed, list) or set(listed) != set(stats):
        raise ValueError(f"component_stats {sorted(stats)} are not the components listed beside them ({listed!r})")
    return stats


def _model_id(value) -> str:
    """A model's id names it in every result, worklist row and log line, and decides whether a resumed
    batch keeps a result: one that is absent, blank or more than one line is refused, never made up."""
    if not isinstance(value, str) or not value.strip() or not value.isprintable():
        raise ValueError(f"{value!r} is not a one-line, non-blank text")
    return value


def _parsed(document: dict, name: str, parse, required: bool):
    value = document.get(name)
    if value is None:
        if required:
            raise ManifestFieldError(name, "is missing")
        return None
    try:
        return parse(value)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ManifestFieldError(name, f"cannot be read ({type(e).__name__}: {e})") from None
