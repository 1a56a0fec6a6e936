"""What a DICOM's header says about whether its image is what the models learned, a frontal chest
radiograph: a modality that is no X-ray projection (CT, MR, ultrasound, nuclear medicine, a
photograph) is refused, since no score of it means anything; another X-ray modality is read with a
warning. Headers are often incomplete: a value that is absent says nothing."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from SSLAnomalyLib.core.files.errors import ReadError

RADIOGRAPH_MODALITIES = {"CR", "DX", "RG", "DR", "OT", ""}  # plain radiographs, or unknown (secondary capture, none)
NOT_XRAY_MODALITIES = {  # DICOM's defined terms (PS3.3 C.7.3.1.1.1) of imaging that is no X-ray projection
    "CT": "computed tomography", "MR": "magnetic resonance", "US": "ultrasound", "NM": "nuclear medicine",
    "PT": "positron emission tomography", "OCT": "optical coherence tomography", "OP": "ophthalmic photography",
    "OPT": "ophthalmic tomography", "XC": "external-camera photography", "SM": "slide microscopy",
    "ES": "endoscopy", "GM": "general microscopy", "IVUS": "intravascular ultrasound",
    "IVOCT": "intravascular optical coherence tomography", "BDUS": "bone densitometry (ultrasound)",
    "TG": "thermography", "LS": "laser surface scan", "DOC": "a document"}


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


def header_warnings(ds) -> list[str]:
    """The warnings for what the header says is not a frontal chest radiograph: an X-ray modality other
    than a plain radiograph (mammography, fluoroscopy)."""
    modality = header_text(ds, "Modality")
    if modality in RADIOGRAPH_MODALITIES:
        return []
    return [f"DICOM modality {modality} is not a radiograph (CR/DX): the model was made for chest radiographs, and "
            "its result for this image means nothing"]
