"""What a DICOM's header says about whether its image is what the models learned, a frontal chest
radiograph: a modality that is no X-ray projection (CT, MR, ultrasound, nuclear medicine, a
photograph) is refused, since no score of it means anything; another X-ray modality, a lateral or
oblique view, or another body part is read with a warning, since a score of it looks like any other,
and is left out of the normals a model is fitted or calibrated on and of an evaluation's figures.
Headers are often incomplete or free text: a value that is absent says nothing."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from SSLAnomalyLib.core.files.errors import ReadError
from SSLAnomalyLib.core.reading.image import Radiograph

RADIOGRAPH_MODALITIES = {"CR", "DX", "RG", "DR", "OT", ""}  # plain radiographs, or unknown (secondary capture, none)
NOT_XRAY_MODALITIES = {  # DICOM's defined terms (PS3.3 C.7.3.1.1.1) of imaging that is no X-ray projection
    "CT": "computed tomography", "MR": "magnetic resonance", "US": "ultrasound", "NM": "nuclear medicine",
    "PT": "positron emission tomography", "OCT": "optical coherence tomography", "OP": "ophthalmic photography",
    "OPT": "ophthalmic tomography", "XC": "external-camera photography", "SM": "slide microscopy",
    "ES": "endoscopy", "GM": "general microscopy", "IVUS": "intravascular ultrasound",
    "IVOCT": "intravascular optical coherence tomography", "BDUS": "bone densitometry (ultrasound)",
    "TG": "thermography", "LS": "laser surface scan", "DOC": "a document"}
FRONTAL_VIEWS = {"PA", "AP"}  # ViewPosition's first word (AP_SUPINE); LL, RL, RLO, LLO, RLD, LLD are not
CHEST_WORDS = ("CHEST", "THORAX", "TORAX", "LUNG", "PULM")  # in BodyPartExamined, often free text
FRONT_TO_BACK = ("A", "P")  # PatientOrientation's main letter along rows or columns of a lateral view


def header_text(ds, key: str) -> str:
    """An attribute's value as upper-case text, "" where it is absent or cannot be decoded."""
    try:
        value = ds.get(key)
        values = [value] if value is None or isinstance(value, str) or not isinstance(value, Sequence) else value
        return "\\".join(str(v).strip() for v in values if v is not None).upper()
    except Exception:  # a damaged optional attribute is no reason to refuse the image
        return ""


def refuse_non_xray(ds, path: Path) -> None:
    """ReadError, naming the file and its modality, where the header says it is no X-ray projection."""
    modality = header_text(ds, "Modality")
    if modality in NOT_XRAY_MODALITIES:
        raise ReadError(path, f"DICOM modality {modality} ({NOT_XRAY_MODALITIES[modality]}) is not a radiograph: the "
                              "models score frontal chest radiographs (CR/DX) only")


def view_problems(ds) -> tuple[str, ...]:
    """What the header says is not a frontal chest radiograph: an X-ray modality other than a plain
    radiograph (mammography, fluoroscopy), a view that is not PA or AP, rows or columns that run front
    to back (a lateral), a body part that is not the chest."""
    modality, view = header_text(ds, "Modality"), header_text(ds, "ViewPosition")
    orientation, part = header_text(ds, "PatientOrientation"), header_text(ds, "BodyPartExamined")
    problems = []
    if modality not in RADIOGRAPH_MODALITIES:
        problems.append(f"DICOM modality {modality} is not a radiograph (CR/DX)")
    if view and re.match(r"[A-Z]*", view).group() not in FRONTAL_VIEWS:
        problems.append(f"DICOM ViewPosition {view} is not a frontal (PA or AP) view")
    if any(axis[:1] in FRONT_TO_BACK for axis in orientation.split("\\")):
        problems.append(f"DICOM PatientOrientation {orientation} runs front to back (a lateral view)")
    if part and not any(word in part for word in CHEST_WORDS):
        problems.append(f"DICOM BodyPartExamined {part} is not the chest")
    return tuple(problems)


def view_warnings(problems) -> list[str]:
    """The warnings of a detection on an image with these `view_problems`: it is scored all the same."""
    return [f"{problem}: the model was made for frontal chest radiographs, and its result for this image means "
            "nothing" for problem in problems]


def refuse_other_view(image: Radiograph, path) -> None:
    """ReadError where the header said `image` is no frontal chest radiograph: a normal a model is
    fitted or calibrated on, or an image it is measured on, must be one (a detection only warns)."""
    if image.view_problems:
        raise ReadError(path, f"{'; '.join(image.view_problems)}: not a frontal chest radiograph")
