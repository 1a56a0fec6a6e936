"""The bundled models by name, read by the CLI (`sslanomaly models`, every `--model`) and by the
Slicer model selector: one small JSON file (`Resources/Models/models.json`) says which folder each
name is, which population it learned, and which name `default` means. A folder path works wherever a
name does and never reads the registry; a bare word is a bundled name first (`./pediatric` is the
folder of that name here). A registry that does not hold is refused naming the entry and the reason.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from SSLAnomalyLib.core.files.errors import PathError

MODELS_DIR = Path(__file__).resolve().parents[3] / "Resources" / "Models"
REGISTRY = MODELS_DIR / "models.json"
_announced: set[str] = set()  # bare names already said to mean the bundled model, not a folder here


class RegistryError(PathError):
    """A registry of bundled models that cannot be used, with the file, the entry and the reason."""

    prefix = "model registry "


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
    data_terms: tuple[str, ...] = ()  # the public data sets behind every stage of its weights (model cards)


def _entry(name: str, entry) -> BundledModel:
    """One registry entry, checked: a folder inside Resources/Models, a population, a description."""
    def refuse(why):
        raise RegistryError(REGISTRY, f"entry {name!r} {why}")

    if not name.strip() or written_as_path(name):  # `--model` would read it as a folder: listed, never loaded
        refuse("is not a name --model can give (empty, or written as a folder path)")
    if not isinstance(entry, dict):
        refuse("is not a JSON object")
    folder = entry.get("folder")
    if not isinstance(folder, str) or not folder:
        refuse("has no folder")
    path = MODELS_DIR / folder
    if Path(folder).is_absolute() or MODELS_DIR.resolve() not in path.resolve().parents:
        refuse(f"names the folder {folder!r}, which is not inside {MODELS_DIR}: a bundled model is shipped there")
    try:
        population = Population.from_dict(entry["population"])
    except KeyError:
        refuse("has no population (a label, and min_age_years / max_age_years)")
    except (TypeError, ValueError, AttributeError):
        population = None
    unknown = sorted(set(entry["population"]) - set(Population.__dataclass_fields__)) \
        if isinstance(entry["population"], dict) else []
    if unknown:  # a misspelt field would silently widen the population
        refuse(f"has a population with unknown field(s) {unknown}: {{label, min_age_years, max_age_years}} are known")
    if population is None or not isinstance(entry["population"]["label"], str) or not population.label.strip() \
            or not 0 <= population.min_age_years <= (
            population.max_age_years if population.max_age_years is not None else float("inf")):
        refuse(f"has a population that is not {{label (text), min_age_years, max_age_years}} with "
               f"0 <= min_age_years <= max_age_years: {entry['population']!r}")
    if not isinstance(entry.get("description"), str):
        refuse("has no description")
    terms = entry.get("data_terms", [])
    if not isinstance(terms, list) or not all(isinstance(k, str) for k in terms):
        refuse(f"has data_terms that are not a list of data set names: {terms!r}")
    return BundledModel(name, path, population, entry["description"], tuple(terms))


def _no_twins(pairs: list) -> dict:
    """A JSON object, refused where it names a key twice (json.loads would keep the last silently)."""
    names = [k for k, _ in pairs]
    twice = sorted({k for k in names if names.count(k) > 1})
    if twice:
        raise RegistryError(REGISTRY, f"names {twice[0]!r} twice in one JSON object (the last would silently win): each name once")
    return dict(pairs)


def _read() -> tuple[str, list[BundledModel]]:
    """(the default's name, every bundled model) from the registry file, checked."""
    try:
        reg = json.loads(REGISTRY.read_text(encoding="utf-8"), object_pairs_hook=_no_twins)
    except OSError as e:
        raise RegistryError(REGISTRY, f"cannot be read ({e.strerror})") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise RegistryError(REGISTRY, f"is not valid JSON ({e})") from None
    if not isinstance(reg, dict) or not isinstance(reg.get("models"), dict) or not reg["models"]:
        raise RegistryError(REGISTRY, 'has no "models" object naming the bundled models')
    if "default" in reg["models"]:
        raise RegistryError(REGISTRY, "names a model 'default', which means the default model: choose another name")
    models = [_entry(name, entry) for name, entry in reg["models"].items()]
    if not isinstance(reg.get("default"), str) or reg["default"] not in reg["models"]:
        raise RegistryError(REGISTRY, f'"default" ({reg.get("default")!r}) is not one of its models')
    return reg["default"], models


def default_name() -> str:
    return _read()[0]


def bundled_models() -> list[BundledModel]:
    """Every bundled model, the default first."""
    default, models = _read()
    return sorted(models, key=lambda m: m.name != default)


def written_as_path(model: str | os.PathLike) -> bool:
    """Whether `model` can only be a folder: a path object, or text with a folder separator, `~`,
    `.` or `..` (`./pediatric`, `/data/m`, `site-model/`); a bare word may be a bundled name."""
    if not isinstance(model, str):
        return True
    return any(sep in model for sep in (os.sep, os.altsep) if sep) or model.startswith(("~", ".")) \
        or Path(model).is_absolute()


def bundled(name: str | os.PathLike) -> BundledModel | None:
    """The bundled model of a name (`default` included), or None when `name` is not one (a path
    never is, and never reads the registry)."""
    if written_as_path(name):
        return None
    default, models = _read()
    name = default if name == "default" else name
    return next((m for m in models if m.name == name), None)


def resolve(model: str | os.PathLike) -> Path:
    """A bundled model's folder for its name; anything else is a folder path (`~` the user's home, as a
    shell reads it: a path typed in Slicer's Python console reaches here as it was typed). Where a bare name is
    also a folder here, the bundled model is taken and stderr says so once."""
    entry = bundled(model)
    if entry is None:
        return Path(os.path.expanduser(model))  # as typed where no such user: a folder of that name
    if Path(model).is_dir() and model not in _announced:
        _announced.add(model)
        print(f"note: --model {model} is the bundled model {entry.name!r}; the folder {model} here is not used "
              f"(write ./{model} for it)", file=sys.stderr)
    return entry.folder


def is_bundled(folder: Path) -> bool:
    """Whether `folder` is one of the shipped model folders (part of the installed software)."""
    return MODELS_DIR.resolve() in Path(folder).resolve().parents


def refuse_bundled_target(folder: str | os.PathLike) -> None:
    """A model folder is never written into the bundled models' folder: it would load as part of the
    installed software, exempt from `SSLANOMALY_REQUIRE_SIGNED`. Only scripts/install_bundled_model.py
    puts a measured run there (ValueError)."""
    target = Path(folder).resolve()
    if target == MODELS_DIR.resolve() or is_bundled(target):
        raise ValueError(f"{folder} is inside the bundled models' folder ({MODELS_DIR}), part of the installed "
                         "extension: write a site model anywhere else")


def population_of(model: str | os.PathLike, manifest) -> Population | None:
    """Who a model learned from: the bundled entry for a name, else the manifest's `population`
    (carried by `train --start-from` and `calibrate`), else unknown. (`manifest`: a Manifest.)"""
    entry = bundled(model)
    return entry.population if entry is not None else manifest.population


def better_fit(age_years: float) -> BundledModel | None:
    """The bundled model whose population holds this age (None too where the registry is unusable:
    a warning about a model folder's population must not depend on it)."""
    try:
        return next((m for m in bundled_models() if m.population.contains(age_years)), None)
    except RegistryError:
        return None


AGE_UNITS = {"D": 1 / 365.25, "W": 7 / 365.25, "M": 1 / 12, "Y": 1.0}


def dicom_age_years(text: str) -> float | None:
    """DICOM PatientAge ('004Y', '018M', '010W', '030D') in years, or None when absent or malformed."""
    text = (text or "").strip().upper()
    if len(text) < 2 or text[-1] not in AGE_UNITS or not text[:-1].isdigit():
        return None
    return int(text[:-1]) * AGE_UNITS[text[-1]]


def population_warning(dicom: dict | None, population: Population | None) -> str | None:
    """A warning when a DICOM's PatientAge (or its absence) does not show the patient belongs to the
    model's population, naming the bundled model that fits better; none where its attributes are not
    at hand (a Slicer volume whose DICOM file cannot be read again: `dicom` holds its UIDs alone)."""
    if not dicom or "PatientAge" not in dicom or population is None:
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
