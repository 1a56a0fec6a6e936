"""The bundled models by name, read by the CLI (`sslanomaly models`, every `--model`) and by the
Slicer model selector: one small JSON file (`Resources/Models/models.json`) says which folder each
name is, which population it learned, and which name `default` means. A folder path works wherever a
name does.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parents[2] / "Resources" / "Models"
REGISTRY = MODELS_DIR / "models.json"


@dataclass(frozen=True)
class Population:
    label: str                   # "adults", "children"
    min_age_years: float = 0
    max_age_years: float | None = None

    def contains(self, age_years: float) -> bool:
        return age_years >= self.min_age_years and (self.max_age_years is None or age_years <= self.max_age_years)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Population":
        return cls(str(d["label"]), float(d.get("min_age_years") or 0),
                   None if d.get("max_age_years") is None else float(d["max_age_years"]))


@dataclass(frozen=True)
class BundledModel:
    name: str
    folder: Path
    population: Population
    description: str


def _read() -> dict:
    return json.loads(REGISTRY.read_text())


def default_name() -> str:
    return _read()["default"]


def bundled_models() -> list[BundledModel]:
    """Every bundled model, the default first."""
    reg = _read()
    models = [BundledModel(name, MODELS_DIR / entry["folder"], Population.from_dict(entry["population"]),
                           entry["description"]) for name, entry in reg["models"].items()]
    return sorted(models, key=lambda m: m.name != reg["default"])


def bundled(name: str) -> BundledModel | None:
    """The bundled model of a name (`default` included), or None when `name` is not one."""
    name = default_name() if name == "default" else name
    return next((m for m in bundled_models() if m.name == name), None)


def resolve(model: str | os.PathLike) -> Path:
    """A bundled model's folder for its name; anything else is a folder path."""
    entry = bundled(str(model))
    return entry.folder if entry is not None else Path(model)


def population_of(model: str | os.PathLike, manifest: dict) -> Population | None:
    """Who a model learned from: the bundled entry for a name, else the manifest's `population`
    (carried by `train --start-from` and `calibrate`), else unknown."""
    entry = bundled(str(model))
    if entry is not None:
        return entry.population
    try:
        return Population.from_dict(manifest["population"])
    except (KeyError, TypeError, ValueError):
        return None


def better_fit(age_years: float) -> BundledModel | None:
    """The bundled model whose population holds this age."""
    return next((m for m in bundled_models() if m.population.contains(age_years)), None)


AGE_UNITS = {"D": 1 / 365.25, "W": 7 / 365.25, "M": 1 / 12, "Y": 1.0}


def dicom_age_years(text: str) -> float | None:
    """DICOM PatientAge ('004Y', '018M', '010W', '030D') in years, or None when absent or malformed."""
    text = (text or "").strip().upper()
    if len(text) < 2 or text[-1] not in AGE_UNITS or not text[:-1].isdigit():
        return None
    return int(text[:-1]) * AGE_UNITS[text[-1]]


def population_warning(dicom: dict | None, population: Population | None) -> str | None:
    """A warning when a DICOM's PatientAge (or its absence) does not show the patient belongs to the
    model's population, naming the bundled model that fits better."""
    if dicom is None or population is None:
        return None
    age = dicom_age_years(dicom.get("PatientAge", ""))
    if age is None:
        return (f"the DICOM has no usable PatientAge: this model learned {population.label}; "
                "check that the patient is one, or choose the bundled model of the patient's age group")
    if population.contains(age):
        return None
    fit = better_fit(age)
    advice = f"the '{fit.name}' model fits better" if fit is not None else "no bundled model fits this age"
    return f"patient age {age:g} years is outside this model's population ({population.label}): {advice}"
