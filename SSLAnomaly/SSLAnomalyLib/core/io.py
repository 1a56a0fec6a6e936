"""Reading radiographs from DICOM, PNG/JPEG and NRRD/NIfTI/MHA into a `Radiograph`, and writing
images back with their geometry.

Every failure becomes a `ReadError` that names the file and the reason, so a batch can report it
and carry on. Sizes are checked from the header before pixels are decoded, so a file claiming to be
enormous is refused instead of exhausting memory; very large real images are reduced (shrink.py).
Messages from reading a DICOM never quote its patient identity (see `_scrub`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import tempfile
import warnings
from pathlib import Path

import numpy as np

from SSLAnomalyLib.core.atomic import atomic_path
from SSLAnomalyLib.core.errors import PathError
from SSLAnomalyLib.core.image import Radiograph
from SSLAnomalyLib.core.shrink import shrink_if_large

DICOM_SUFFIXES = {".dcm", ".dicom", ".ima"}
RASTER_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
ITK_SUFFIXES = {".nrrd", ".nhdr", ".nii", ".mha", ".mhd"}
MIN_SIDE = 16  # smaller than this is not a radiograph (and no encoder can look at it)
MAX_PIXELS = 178_956_970  # pixels (all frames) decoded at most: where Pillow refuses too (2 x MAX_IMAGE_PIXELS)
MAX_DECODED_BYTES = 768 * 2**20  # the largest array decoding may make (components and LUT copies counted)
RADIOGRAPH_MODALITIES = {"CR", "DX", "RG", "DR", "OT", ""}  # anything else is not a plain radiograph
FLAT_TAIL_ROWS = 0.05  # a raster whose bottom 5 % of rows are one flat value was probably cut short


class ReadError(PathError):
    """An input that cannot be used, with the file and the reason."""


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def is_supported(path: Path) -> bool:
    s = _suffix(path)
    return s in DICOM_SUFFIXES | RASTER_SUFFIXES | ITK_SUFFIXES | {".nii.gz"} or (s == "" and _has_dicom_preamble(path))


def _has_dicom_preamble(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(132)
        return len(head) == 132 and head[128:132] == b"DICM"
    except OSError:
        return False


def as_folders(spec) -> list[str]:
    """One folder, or several (a list, or one string of paths separated by os.pathsep)."""
    if isinstance(spec, (list, tuple)):
        return [str(f) for f in spec]
    return str(spec).split(os.pathsep)


def list_inputs(paths) -> list[Path]:
    """Expand files and folders (hidden files skipped) into a sorted list of inputs.

    A folder contributes every file that looks like an image by name or DICOM preamble; files
    named explicitly are always kept so that an unreadable one is reported, not silently dropped,
    and so is a folder (or sub-folder) that cannot be listed: `read_radiograph` names its reason.
    """
    out: list[Path] = []
    for p in map(Path, paths):
        if not p.is_dir():
            out.append(p)
            continue
        found = []
        for root, _, files in os.walk(p, onerror=lambda e: found.append(Path(e.filename))):
            found.extend(f for f in (Path(root) / name for name in files) if not f.name.startswith(".")
                         and f.is_file() and is_supported(f))
        out.extend(sorted(found))
    return out


def read_radiograph(path) -> Radiograph:
    """Read one radiograph or volume; raise `ReadError` naming the file and the reason."""
    path = Path(path)
    if not path.exists():
        raise ReadError(path, "file does not exist")
    if path.is_dir():
        if not os.access(path, os.R_OK | os.X_OK):
            raise ReadError(path, "is a folder that cannot be read (permission denied)")
        raise ReadError(path, "is a folder, not an image file")
    if not os.access(path, os.R_OK):
        raise ReadError(path, "file cannot be read (permission denied)")
    if path.stat().st_size == 0:
        raise ReadError(path, "file is empty")
    s = _suffix(path)
    try:
        if s in DICOM_SUFFIXES or (s not in RASTER_SUFFIXES | ITK_SUFFIXES | {".nii.gz"}
                                   and _has_dicom_preamble(path)):
            img = _read_dicom(path)
        elif s in RASTER_SUFFIXES:
            img = _read_raster(path)
        elif s in ITK_SUFFIXES or s == ".nii.gz":
            img = _read_itk(path)
        else:
            raise ReadError(path, f"unsupported file type '{s or 'no extension'}'")
        img = shrink_if_large(img)
    except ReadError:
        raise
    except MemoryError:
        raise ReadError(path, "image too large to load into memory") from None
    except Exception as e:  # any decoder failure becomes a clear, per-file error
        raise ReadError(path, f"cannot decode: {type(e).__name__}: {e}") from None
    return _validated(img, path)


def _check_size(path: Path, *dims: int) -> None:
    """Refuse before decoding when the header promises more than MAX_PIXELS pixels."""
    n = math.prod(int(d) for d in dims)
    if n > MAX_PIXELS:
        raise ReadError(path, f"image too large to read: {' x '.join(str(int(d)) for d in dims)} = {n:,} pixels "
                              f"(limit {MAX_PIXELS:,})")


def _check_bytes(path: Path, n_values: int, bytes_per_value: int, what: str) -> None:
    """Refuse before decoding when the array decoding makes would exceed MAX_DECODED_BYTES (a pixel
    cap is not a byte cap: components, wide types and LUT copies multiply it)."""
    n = int(n_values) * int(bytes_per_value)
    if n > MAX_DECODED_BYTES:
        raise ReadError(path, f"image too large to read: decoding {what} needs {n / 2**20:,.0f} MB "
                              f"(limit {MAX_DECODED_BYTES / 2**20:,.0f} MB)")


def _validated(img: Radiograph, path: Path) -> Radiograph:
    _, rows, cols = img.shape
    if min(rows, cols) < MIN_SIDE:
        raise ReadError(path, f"image is {cols}x{rows} pixels; at least {MIN_SIDE}x{MIN_SIDE} is needed")
    px = img.pixels
    if np.issubdtype(px.dtype, np.floating):
        bad = ~np.isfinite(px)
        if bad.all():
            raise ReadError(path, "image holds no finite values")
        if bad.any():
            finite = px[~bad]
            px = np.where(bad, np.median(finite), px).astype(np.float32)
            img.pixels = px
            img.warnings.append(f"{int(bad.sum())} NaN/inf pixels replaced by the median")
    if float(px.max()) == float(px.min()):
        raise ReadError(path, f"image is constant (every pixel {float(px.max()):g}): there is nothing to score")
    flat = _flat_tail_rows(px[0])
    if flat >= FLAT_TAIL_ROWS * rows:
        img.warnings.append(f"the bottom {flat} rows are one flat value: the file is probably truncated or "
                            "damaged, and the result is not reliable")
    img.source = str(path)
    return img


def _flat_tail_rows(pixels: np.ndarray) -> int:
    """How many of the last rows hold one and the same mid-grey value: what a decoder fills missing
    data with. Black or white padding (the image's minimum or maximum) is a radiograph's own border."""
    value, n = pixels[-1, 0], 0
    if value in (pixels.min(), pixels.max()):
        return 0
    for row in pixels[::-1]:
        if not (row == value).all():
            break
        n += 1
    return n


def _read_raster(path: Path) -> Radiograph:
    from PIL import Image

    with warnings.catch_warnings():  # Pillow's size guard, without changing its global limit
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(path)
        except Image.DecompressionBombError:
            raise ReadError(path, f"image too large to read (over {MAX_PIXELS:,} pixels)") from None
    _check_size(path, *im.size)
    im.load()
    n_frames = getattr(im, "n_frames", 1)
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        px = np.asarray(im, dtype=np.float32)
    else:
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            im = im.convert("RGBA")
            bg = Image.new("RGBA", im.size, (0, 0, 0, 255))
            im = Image.alpha_composite(bg, im)
        px = np.asarray(im.convert("L"), dtype=np.uint8)
    img = Radiograph(px, is_2d=True)
    img.warnings.append("no pixel spacing in file; 1.0 mm assumed")
    if n_frames > 1:
        img.warnings.append(f"{n_frames} frames in file; only the first is used")
    return img


def _read_itk(path: Path) -> Radiograph:
    import SimpleITK as sitk

    data = _detached_data_file(path)
    with _utf8_named(path, data) as readable:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(readable))
        reader.ReadImageInformation()
        _check_size(path, *reader.GetSize())
        _check_bytes(path, math.prod(reader.GetSize()) * reader.GetNumberOfComponents(),
                     max(_component_bytes(sitk.GetPixelIDValueAsString(reader.GetPixelID())), 4),
                     f"{reader.GetNumberOfComponents()} component(s) per pixel")
        im = reader.Execute()
    if im.GetNumberOfComponentsPerPixel() > 1:
        im = sitk.VectorIndexSelectionCast(im, 0) if im.GetNumberOfComponentsPerPixel() == 2 else \
            _rgb_to_gray_itk(im)
    dim = im.GetDimension()
    if dim == 4:
        raise ReadError(path, "4D images are not supported")
    arr = sitk.GetArrayFromImage(im)
    if not np.issubdtype(arr.dtype, np.floating) and arr.dtype.itemsize > 2:
        arr = arr.astype(np.float32)
    spacing = list(im.GetSpacing()) + [1.0] * (3 - dim)
    origin = list(im.GetOrigin()) + [0.0] * (3 - dim)
    direction = np.eye(3)
    direction[:dim, :dim] = np.asarray(im.GetDirection()).reshape(dim, dim)
    return Radiograph(arr, spacing, origin, direction, is_2d=(dim == 2))


DETACHED_KEYS = {".mhd": "elementdatafile", ".mha": "elementdatafile", ".nhdr": "data file"}


def _detached_data_file(path: Path) -> Path | None:
    """The data file a detached header (.mhd, .nhdr) names, accepted only as a plain file beside
    the header: never an absolute path, a parent folder, a device, a FIFO or a list of files."""
    key = DETACHED_KEYS.get(_suffix(path))
    if key is None:
        return None
    with open(path, "rb") as f:
        head = f.read(64 * 1024)
    named = None
    for line in head.split(b"\n"):
        k, sep, v = line.decode("latin-1").partition(":" if key == "data file" else "=")
        if sep and k.strip().lower() in (key, "datafile"):
            named = v.strip()
            break
    if named is None or named.upper() == "LOCAL":
        return None  # the data follows the header in the same file
    if named.upper().startswith("LIST") or "%" in named or " " in named:
        raise ReadError(path, f"the header names a list or pattern of data files ({named!r}); only one file beside it is read")
    data = path.parent / named
    if Path(named).is_absolute() or Path(named).name != named or not data.exists():
        raise ReadError(path, f"the header's data file {named!r} is not a file beside it; nothing outside the given "
                              "input is read")
    if not data.is_file() or data.is_symlink():
        raise ReadError(path, f"the header's data file {named!r} is not a plain file (a link, a device or a FIFO)")
    return data


@contextlib.contextmanager
def _utf8_named(path: Path, data: Path | None):
    """`path` itself, or where its name is not UTF-8 (which SimpleITK cannot open), a link to it (and
    to its data file) under a plain name in a temporary folder."""
    try:
        os.fsencode(path).decode("utf-8")
        yield path
        return
    except UnicodeDecodeError:
        pass
    with tempfile.TemporaryDirectory(prefix="sslanomaly-read-") as tmp:
        link = Path(tmp) / f"image{_suffix(path)}"
        link.symlink_to(path.resolve())
        if data is not None:
            (Path(tmp) / data.name).symlink_to(data.resolve())
        yield link


def _component_bytes(pixel_type: str) -> int:
    """Bytes per component from SimpleITK's pixel type name ('vector of 16-bit signed integer')."""
    bits = re.search(r"(\d+)-bit", pixel_type)
    return int(bits[1]) // 8 if bits else 8


def _rgb_to_gray_itk(im):
    import SimpleITK as sitk

    chans = [sitk.Cast(sitk.VectorIndexSelectionCast(im, c), sitk.sitkFloat32) for c in range(3)]
    return chans[0] * 0.299 + chans[1] * 0.587 + chans[2] * 0.114


def _read_dicom(path: Path) -> Radiograph:
    """pydicom quotes element values (a birth date, an ID) in its warnings, log records and errors:
    its warnings are counted, not shown, its log records are not passed on to the application's
    handlers, and its errors are scrubbed of the patient identity before they reach a log."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    with warnings.catch_warnings(record=True) as caught, _unpropagated(logging.getLogger("pydicom")):
        warnings.simplefilter("always")
        try:
            ds = pydicom.dcmread(path)
        except InvalidDicomError:
            raise ReadError(path, "not a DICOM file (no 'DICM' marker or file meta information)") from None
        try:
            img = _dicom_image(ds, path)
        except ReadError as e:
            raise ReadError(path, _scrub(e.reason, ds)) from None
        except MemoryError:
            raise
        except Exception as e:
            raise ReadError(path, _scrub(f"cannot decode: {type(e).__name__}: {e}", ds)) from None
    if caught:
        img.warnings.append(f"{len(caught)} warning(s) about DICOM conformance while reading "
                            "(not shown: they may quote patient data)")
    return img


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


def _dicom_image(ds, path: Path) -> Radiograph:
    from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut

    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise ReadError(path, "DICOM file has no pixel data (not an image object)")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    _check_size(path, ds.get("Rows", 0), ds.get("Columns", 0), frames, ds.get("SamplesPerPixel", 1))
    values = math.prod(int(v or 1) for v in (ds.get("Rows", 0), ds.get("Columns", 0), frames, ds.get("SamplesPerPixel", 1)))
    _check_bytes(path, values, 8 * 2, "the pixel data and its LUT copies (float64)")
    try:
        arr = ds.pixel_array
    except Exception as e:
        ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        name = ts.name if ts is not None else "unknown"
        raise ReadError(path, f"cannot decode pixel data (transfer syntax {name}): {e}") from None
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric == "PALETTE COLOR":
        arr = apply_color_lut(arr, ds)
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        if arr.ndim < 3 or arr.shape[-1] != 3:
            raise ReadError(path, f"unsupported photometric interpretation {photometric}")
        px = arr.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    else:
        px = apply_modality_lut(arr, ds).astype(np.float32)
        if "VOILUTSequence" in ds or "WindowCenter" in ds:
            px = np.asarray(apply_voi_lut(px, ds), dtype=np.float32)
        if photometric == "MONOCHROME1":
            px = np.nanmax(px) + np.nanmin(px) - px  # dense tissue bright, as in MONOCHROME2
    img = Radiograph(px.astype(np.float32), is_2d=(frames == 1))
    spacing = _floats(_get(ds, "PixelSpacing") or _get(ds, "ImagerPixelSpacing") or _get(
        ds, "SharedFunctionalGroupsSequence", 0, "PixelMeasuresSequence", 0, "PixelSpacing"), 2)
    if spacing is not None and (spacing > 0).all():
        z = _floats([_get(ds, "SpacingBetweenSlices") or _get(ds, "SliceThickness") or 1.0], 1)
        img.spacing = (spacing[1], spacing[0], abs(z[0]) if z is not None and z[0] != 0 else 1.0)
    else:
        img.warnings.append("DICOM has no usable PixelSpacing/ImagerPixelSpacing; 1.0 mm assumed")
    iop = _floats(_get(ds, "ImageOrientationPatient"), 6)
    if iop is not None and np.linalg.norm(np.cross(iop[:3], iop[3:])) > 0.5:
        normal = np.cross(iop[:3], iop[3:])
        img.direction = np.stack([iop[:3], iop[3:], normal / np.linalg.norm(normal)], axis=1)
    ipp = _floats(_get(ds, "ImagePositionPatient"), 3)
    if ipp is not None:
        img.origin = tuple(ipp)
    img.dicom = {k: str(_get(ds, k) or "") for k in (
        "SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID",
        "PatientID", "PatientName", "PatientBirthDate", "PatientSex", "PatientAge", "StudyID", "StudyDate",
        "StudyTime", "AccessionNumber", "ReferringPhysicianName", "Modality", "FrameOfReferenceUID")}
    img.dicom["path"] = str(path)
    modality = img.dicom["Modality"].strip().upper()
    if modality not in RADIOGRAPH_MODALITIES:
        img.warnings.append(f"DICOM modality {modality} is not a radiograph (CR/DX): the model was made for chest "
                            "radiographs, and its result for this image means nothing")
    return img


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


def write_image(img: Radiograph, path, compress: bool = True) -> Path:
    """Write pixels with geometry (NRRD/NIfTI/MHA by suffix) atomically; 2D sources stay 2D."""
    import SimpleITK as sitk

    path = Path(path)
    arr = np.asarray(img.pixels)
    if img.is_2d and arr.shape[0] == 1:
        im = sitk.GetImageFromArray(arr[0])
        im.SetSpacing(img.spacing[:2])
        im.SetOrigin(img.origin[:2])
        im.SetDirection(img.direction[:2, :2].ravel().tolist())
    else:
        im = sitk.GetImageFromArray(arr)
        im.SetSpacing(img.spacing)
        im.SetOrigin(img.origin)
        im.SetDirection(img.direction.ravel().tolist())
    with atomic_path(path, keep_extension=True) as tmp:
        sitk.WriteImage(im, str(tmp), compress)
    return path
