"""Reading a DICOM radiograph with pydicom: LUTs applied, padding shown black (padding.py), geometry
(in any plane) and references kept, sizes checked before decoding (read_limits.py), the file read
with bounded work and non-image objects refused (dicom_header.py), and messages that never quote the
patient's identity."""

from __future__ import annotations

import contextlib
import logging
import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from SSLAnomalyLib.core.files.errors import ReadError
from SSLAnomalyLib.core.reading.chest_view import refuse_non_xray, view_problems, view_warnings
from SSLAnomalyLib.core.reading.colour import array_strips, colour_warning
from SSLAnomalyLib.core.reading.dicom_header import read_header, read_with_pixels
from SSLAnomalyLib.core.reading.image import Radiograph, direction_from_cosines
from SSLAnomalyLib.core.reading.padding import padding_mask, shown_black
from SSLAnomalyLib.core.reading.read_limits import check_bytes, check_size, check_volume
from SSLAnomalyLib.core.reading.value_range import within_float32


def read_dicom(path: Path) -> Radiograph:
    """pydicom quotes element values (a birth date, an ID) in its warnings, log records and errors:
    its warnings are counted, not shown, its log records are not passed on to the application's
    handlers, and its errors are scrubbed of the patient identity before they reach a log."""
    from pydicom.errors import InvalidDicomError

    with warnings.catch_warnings(record=True) as caught, _unpropagated(logging.getLogger("pydicom")):
        warnings.simplefilter("always")
        try:
            header = read_header(path)
        except InvalidDicomError:
            raise ReadError(path, "not a DICOM file (no 'DICM' marker, and it does not begin with a DICOM element)") from None
        try:
            refuse_non_xray(header.ds, path)  # before its pixels are decoded
            _check_sizes(header.ds, path)
            img = _dicom_image(read_with_pixels(path, header), path)
        except ReadError as e:
            raise ReadError(path, _scrub(e.reason, header.ds)) from None
        except MemoryError:
            raise
        except Exception as e:
            raise ReadError(path, _scrub(f"cannot decode: {type(e).__name__}: {e}", header.ds)) from None
    conformance = {str(w.message) for w in caught}  # each pass reads the header: one warning, once
    if conformance:
        img.warnings.append(f"{len(conformance)} warning(s) about DICOM conformance while reading "
                            "(not shown: they may quote patient data)")
    return img


def padding_of(path: Path) -> np.ndarray | None:
    """Which stored pixels of a DICOM file are padding (padding.py), as (frames, rows, cols), or None
    where it declares none or cannot be read. For images another reader loaded: Slicer's DICOM
    module (ITK/GDCM) keeps the padding as values, a bright or far-out border the model would see."""
    with warnings.catch_warnings(), _unpropagated(logging.getLogger("pydicom")):
        warnings.simplefilter("ignore")
        try:
            header = read_header(path)
            if "PixelPaddingValue" not in header.ds:
                return None
            _check_sizes(header.ds, path)
            ds = read_with_pixels(path, header)
            mask = padding_mask(ds.pixel_array, ds)
        except Exception:  # the image as that reader gave it is still the image
            return None
    return None if mask is None or mask.ndim not in (2, 3) else mask.reshape((-1,) + mask.shape[-2:])


@dataclass
class StoredHeader:
    """What a DICOM file's header says, for an image another reader loaded: its attributes (as the
    reader keeps them in `Radiograph.dicom`: the population warning needs PatientAge) and why it is
    no frontal chest radiograph (chest_view.py)."""
    dicom: dict[str, str]
    view_problems: tuple[str, ...]


def header_of(path: Path) -> StoredHeader | None:
    """The header of a DICOM file another reader loaded (Slicer's DICOM module) or that was loaded
    earlier: refused (ReadError, naming the file) where its modality is no X-ray projection, None
    where it cannot be read again (the image as that reader gave it is still the image)."""
    with warnings.catch_warnings(), _unpropagated(logging.getLogger("pydicom")):
        warnings.simplefilter("ignore")
        try:
            ds = read_header(path).ds
        except Exception:
            return None
        refuse_non_xray(ds, path)
        return StoredHeader(dicom_attributes(ds, path), view_problems(ds))


@contextlib.contextmanager
def _unpropagated(logger: logging.Logger):
    before, logger.propagate = logger.propagate, False
    try:
        yield
    finally:
        logger.propagate = before


IDENTITY = ("PatientName", "PatientID", "OtherPatientIDs", "PatientBirthDate", "AccessionNumber",
            "PatientAddress", "ReferringPhysicianName", "StudyID")


def _scrub(text: str, ds) -> str:
    """`text` with every identity value of `ds` (and each part of a name) replaced."""
    for key in IDENTITY:
        try:
            value = str(ds.get(key) or "")
        except Exception:  # an undecodable value cannot be quoted either
            continue
        for part in sorted({value, *re.split(r"[\\^=]", value)}, key=len, reverse=True):
            if len(part.strip()) >= 3:
                text = text.replace(part.strip(), "[redacted]")
    return text


def _check_sizes(ds, path: Path) -> None:
    """Refuse, from the header alone, an image whose decoding would exceed the limits."""
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    check_size(path, ds.get("Rows", 0), ds.get("Columns", 0), frames, ds.get("SamplesPerPixel", 1))
    check_volume(path, frames, ds.get("Rows", 0), ds.get("Columns", 0))
    values = math.prod(int(v or 1) for v in (ds.get("Rows", 0), ds.get("Columns", 0), frames, ds.get("SamplesPerPixel", 1)))
    check_bytes(path, values, 8 * 2, "the pixel data and its LUT copies (float64)")


def _dicom_image(ds, path: Path) -> Radiograph:
    from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut

    frames = int(ds.get("NumberOfFrames", 1) or 1)
    try:
        arr = ds.pixel_array
    except Exception as e:
        ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        name = ts.name if ts is not None else "unknown"
        raise ReadError(path, f"cannot decode pixel data (transfer syntax {name}): {e}") from None
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    read_warnings = []
    if photometric == "PALETTE COLOR":
        arr = apply_color_lut(arr, ds)
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        if arr.ndim < 3 or arr.shape[-1] != 3:
            raise ReadError(path, f"unsupported photometric interpretation {photometric}")
        read_warnings.append(colour_warning(array_strips(arr), float(arr.max()) - float(arr.min())))
        px = arr.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    else:
        px = apply_modality_lut(arr, ds)
        if "VOILUTSequence" in ds or "WindowCenter" in ds:
            try:
                px = apply_voi_lut(px, ds)
            except Exception as e:  # a display setting: the stored values are still the image
                read_warnings.append(_scrub(f"the DICOM's VOI LUT or window is malformed and was ignored "
                                            f"({type(e).__name__}: {e})", ds))
        px, scaled = within_float32(np.asarray(px))  # a Rescale Slope of 1e300 holds no float32 values
        read_warnings.append(scaled)
        px = px.astype(np.float32)
        if photometric == "MONOCHROME1":
            px = np.nanmax(px) + np.nanmin(px) - px  # dense tissue bright, as in MONOCHROME2
        padded = padding_mask(arr, ds)
        if padded is not None:
            px = shown_black(px, padded)
    img = Radiograph(px.astype(np.float32), is_2d=(frames == 1))
    img.warnings += [w for w in read_warnings if w]
    spacing = pixel_spacing(ds)
    if spacing is not None:
        z = _floats([_get(ds, "SpacingBetweenSlices") or _get(ds, "SliceThickness") or 1.0], 1)
        img.spacing = (spacing[1], spacing[0], abs(z[0]) if z is not None and z[0] != 0 else 1.0)
    else:
        img.warnings.append("DICOM has no usable PixelSpacing/ImagerPixelSpacing; 1.0 mm assumed")
    iop = _floats(_get(ds, "ImageOrientationPatient") or _get(
        ds, "SharedFunctionalGroupsSequence", 0, "PlaneOrientationSequence", 0, "ImageOrientationPatient"), 6)
    if iop is not None:
        img.direction, problem = direction_from_cosines(iop[:3], iop[3:])
        img.warnings += [problem] if problem else []
    ipp = _floats(_get(ds, "ImagePositionPatient") or _get(
        ds, "PerFrameFunctionalGroupsSequence", 0, "PlanePositionSequence", 0, "ImagePositionPatient"), 3)
    if ipp is not None:
        img.origin = tuple(ipp)
    _place_frames(img, ds, frames)
    img.dicom = dicom_attributes(ds, path)
    img.view_problems = view_problems(ds)
    img.warnings += view_warnings(img.view_problems)
    return img


ATTRIBUTES = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "PatientID", "PatientName",
              "PatientBirthDate", "PatientSex", "PatientAge", "StudyID", "StudyDate", "StudyTime", "AccessionNumber",
              "ReferringPhysicianName", "Modality", "FrameOfReferenceUID")


def dicom_attributes(ds, path: Path) -> dict[str, str]:
    """The identity, reference and patient attributes kept with a DICOM image (`Radiograph.dicom`)."""
    return {**{k: str(_get(ds, k) or "") for k in ATTRIBUTES}, "path": str(path)}


def pixel_spacing(ds) -> np.ndarray | None:
    """(row, column) spacing in mm: the first of PixelSpacing, ImagerPixelSpacing and the functional
    groups' that is usable, so that a damaged one (0\\0, one value) does not hide a good one."""
    for keys in (("PixelSpacing",), ("ImagerPixelSpacing",),
                 ("SharedFunctionalGroupsSequence", 0, "PixelMeasuresSequence", 0, "PixelSpacing")):
        spacing = usable_spacing(_get(ds, *keys))
        if spacing is not None:
            return spacing
    return None


def usable_spacing(value) -> np.ndarray | None:
    """`value` as two positive spacings, or None."""
    spacing = _floats(value, 2)
    return spacing if spacing is not None and (spacing > 0).all() else None


def _place_frames(img: Radiograph, ds, frames: int) -> None:
    """Frames set apart by their own positions (per-frame functional groups), not by the slice spacing or
    thickness the header states: the step from the first frame to the last along the plane's normal is
    the slice spacing, and where the frames go against the normal the slice axis does too."""
    first, last = (_floats(_get(ds, "PerFrameFunctionalGroupsSequence", k, "PlanePositionSequence", 0,
                                "ImagePositionPatient"), 3) for k in (0, frames - 1))
    if frames < 2 or first is None or last is None:
        return
    step = (last - first) @ img.direction[:, 2] / (frames - 1)
    if abs(step) > 1e-6:
        img.spacing = (*img.spacing[:2], abs(step))
        img.direction[:, 2] *= np.sign(step)


def _get(ds, *keys):
    """ds.k0[k1].k2... or None where anything is missing or malformed: geometry and references
    are optional, and a damaged one must not cost the radiograph."""
    value = ds
    try:
        for key in keys:
            value = value[key] if isinstance(key, int) else getattr(value, key)
    except Exception:
        return None
    return value


def _floats(value, n: int) -> np.ndarray | None:
    """`value` as exactly n finite floats, or None."""
    try:
        v = np.array([float(x) for x in value], dtype=float)
    except (TypeError, ValueError):
        return None
    return v if v.shape == (n,) and np.isfinite(v).all() else None

