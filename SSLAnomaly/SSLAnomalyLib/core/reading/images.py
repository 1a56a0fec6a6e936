"""Reading radiographs from DICOM, PNG/JPEG and NRRD/NIfTI/MHA into a `Radiograph`, and writing
images back with their geometry.

Every failure becomes a `ReadError` that names the file and the reason, so a batch can report it
and carry on. Sizes are checked from the header before pixels are decoded, so a file claiming to be
enormous is refused instead of exhausting memory; very large real images are reduced (shrink.py).
DICOM is read by dicom_reader.py, whose messages never quote the patient's identity; the limits are
in read_limits.py. A raster named like a DICOM is read as the raster it is (content.py), turned
upright as its EXIF orientation says, and a colour input whose colour marks become grey content is
warned (colour.py). Folders are walked by walk.py.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import tempfile
import warnings
from pathlib import Path

import numpy as np

from SSLAnomalyLib.core.files.atomic import atomic_path, disk_full_or
from SSLAnomalyLib.core.files.errors import ReadError
from SSLAnomalyLib.core.files.native_names import native_safe, plain_target
from SSLAnomalyLib.core.reading.blank import refuse_or_mark_blank
from SSLAnomalyLib.core.reading.colour import ROWS_AT_ONCE, array_strips, colour_warning
from SSLAnomalyLib.core.reading.content import PNG_GREY_ALPHA, raster_kind, sixteen_bit_png
from SSLAnomalyLib.core.reading.dicom_header import begins_like_dicom
from SSLAnomalyLib.core.reading.nifti_values import restore_nonfinite
from SSLAnomalyLib.core.reading.nonfinite import replace_nonfinite
from SSLAnomalyLib.core.reading.dicom_reader import read_dicom
from SSLAnomalyLib.core.reading.exif import load_upright, upright_png
from SSLAnomalyLib.core.reading.grey_alpha_png import read_grey_alpha_png
from SSLAnomalyLib.core.reading.hounsfield import refuse_hounsfield_volume
from SSLAnomalyLib.core.reading.image import Radiograph
from SSLAnomalyLib.core.reading.read_limits import MAX_PIXELS, check_bytes, check_size, check_volume
from SSLAnomalyLib.core.reading.shrink import shrink_if_large
from SSLAnomalyLib.core.reading.too_small import too_small
from SSLAnomalyLib.core.reading.value_range import within_float32
from SSLAnomalyLib.core.reading.walk import refuse_special, walk_files, why_missing

DICOM_SUFFIXES = {".dcm", ".dicom", ".ima"}
RASTER_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
ITK_SUFFIXES = {".nrrd", ".nhdr", ".nii", ".mha", ".mhd"}
FLAT_TAIL_ROWS = 0.05  # a raster whose bottom 5 % of rows are one flat value was probably cut short
MAX_SPACING_MM = 10.0  # coarser than this is no radiograph's pixel: a damaged or hostile header
MIN_SPACING_MM = 0.001  # finer neither: 1e-300 mm makes ITK's geometry singular, and every heatmap unwritable


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else path.suffix.lower()


def is_supported(path: Path) -> bool:
    """Whether a file found in a folder is an input: named as an image, or beginning as DICOM does under any
    other name (none, or a UID's last part, as PACS exports name files). A CD or USB export's DICOMDIR is its
    index, not an image: it is passed over (named explicitly, it is read and refused with its SOP Class)."""
    if path.name.upper() == "DICOMDIR":
        return False
    return _suffix(path) in DICOM_SUFFIXES | RASTER_SUFFIXES | ITK_SUFFIXES | {".nii.gz"} or begins_like_dicom(path)


def as_folders(spec) -> list[str]:
    """One folder, or several (a list, or one string of paths separated by os.pathsep)."""
    if isinstance(spec, (list, tuple)):
        return [str(f) for f in spec]
    return str(spec).split(os.pathsep)


def list_inputs(paths) -> list[Path]:
    """Expand files and folders (hidden files skipped) into a sorted list of inputs.

    A folder contributes every file that looks like an image by name or DICOM preamble, and every
    link named like one that leads nowhere (a loop, a missing file); files named explicitly are
    always kept so that an unreadable one is reported, not silently dropped, and so is a folder (or
    sub-folder) that cannot be listed: `read_radiograph` names its reason.
    """
    out: list[Path] = []
    for p in map(Path, paths):
        if not p.is_dir():
            out.append(p)
            continue
        files, unlisted = walk_files(p)
        out.extend(sorted([f for f in files if (f.is_file() or f.is_symlink()) and is_supported(f)] + unlisted))
    return out


def read_radiograph(path, blank_ok: bool = False) -> Radiograph:
    """Read one radiograph or volume; raise `ReadError` naming the file and the reason. With
    `blank_ok` a constant or blank image is no error: a lung mask may well be one, and its reader
    says why in a mask's terms."""
    path = Path(path)
    try:
        _check_openable(path)
    except OSError as e:
        raise ReadError(path, f"cannot be opened: {e.strerror or e}") from None
    s = _suffix(path)
    try:
        if s in DICOM_SUFFIXES and (kind := raster_kind(path)):
            img = _read_raster(path)
            img.warnings.append(f"is a {kind} image named {s}, read as one: it has no DICOM header (no patient "
                                "or study to export to)")
        elif s in DICOM_SUFFIXES or (s not in RASTER_SUFFIXES | ITK_SUFFIXES | {".nii.gz"} and begins_like_dicom(path)):
            img = read_dicom(path)
        elif s in RASTER_SUFFIXES:
            img = _read_raster(path)
        elif s in ITK_SUFFIXES or s == ".nii.gz":
            img = _read_itk(path)
        else:
            raise ReadError(path, f"unsupported file type '{s or 'no extension'}'")
        declared = img.shape
        img = shrink_if_large(img)
    except ReadError:
        raise
    except MemoryError:
        raise ReadError(path, "image too large to load into memory") from None
    except Exception as e:  # any decoder failure becomes a clear, per-file error
        raise ReadError(path, f"cannot decode: {type(e).__name__}: {e}") from None
    return _validated(img, path, declared, blank_ok=blank_ok)


def _check_openable(path: Path) -> None:
    if not path.exists():
        raise ReadError(path, why_missing(path))
    if path.is_dir():
        if not os.access(path, os.R_OK | os.X_OK):
            raise ReadError(path, "is a folder that cannot be read (permission denied)")
        raise ReadError(path, "is a folder, not an image file")
    refuse_special(path)
    if not os.access(path, os.R_OK):
        raise ReadError(path, "file cannot be read (permission denied)")
    if path.stat().st_size == 0:
        raise ReadError(path, "file is empty")


def validated(img: Radiograph, name: str) -> Radiograph:
    """An image not read from a file (a Slicer volume node) checked and repaired as a file's is, a CT
    volume in Hounsfield units refused as an NRRD of one is; refusals (ReadError) name `name`. Its
    source is kept."""
    refuse_hounsfield_volume(img.pixels, name)
    source = img.source
    img = _validated(img, name, img.shape, file=False)
    img.source = source
    return img


def _validated(img: Radiograph, path: Path, declared: tuple[int, int, int], file: bool = True,
               blank_ok: bool = False) -> Radiograph:
    """`img` checked and repaired; refusals quote the file's own size (`declared`), not the reduced one.
    A file's implausible spacing is replaced; a volume node's (`file=False`) is its scene's geometry, kept."""
    rows = img.shape[1]
    if small := too_small(declared, img.shape):
        raise ReadError(path, small)
    flat = _flat_tail_rows(img.pixels[0])  # before the median fills NaN rows flat: they are reported as such
    nonfinite = replace_nonfinite(img, path)
    if file and not all(MIN_SPACING_MM <= s <= MAX_SPACING_MM for s in img.spacing[:2]):
        img.warnings.append(f"pixel spacing {img.spacing[0]:g} x {img.spacing[1]:g} mm is not a radiograph's; "
                            "1.0 mm assumed")
        img.spacing = (1.0, 1.0, img.spacing[2])
    if blank_ok:
        img.source = str(path)
        return img
    refuse_or_mark_blank(img, path, nonfinite)
    if flat >= FLAT_TAIL_ROWS * rows:
        img.warnings.append(f"the bottom {flat} rows are one flat value: the file is probably truncated or "
                            "damaged, and the result is not reliable")
    img.source = str(path)
    return img


def _flat_tail_rows(pixels: np.ndarray) -> int:
    """How many of the last rows hold one and the same mid-grey value: what a decoder fills missing
    data with. Black or white padding (the image's minimum or maximum) is a radiograph's own border, and
    a NaN or infinite pixel equals no value: a row holding one is no decoder's fill."""
    finite = pixels[np.isfinite(pixels)] if pixels.dtype.kind == "f" else pixels
    value, n = pixels[-1, 0], 0
    if not np.isfinite(value) or value in (finite.min(), finite.max()):
        return 0
    for row in pixels[::-1]:
        if not (row == value).all():
            break
        n += 1
    return n


def _read_raster(path: Path) -> Radiograph:
    from PIL import Image, UnidentifiedImageError

    if wide := sixteen_bit_png(path):  # 16 bits kept: pypng, or SimpleITK (its alpha, opaque in radiographs, not applied)
        img = read_grey_alpha_png(path) if wide == PNG_GREY_ALPHA else _read_itk(path)
        pixels, turned = upright_png(img.pixels[0], path)
        img.pixels = pixels[None]
        img.warnings += ["no pixel spacing in file; 1.0 mm assumed", *([turned] if turned else [])]
        return img

    # opened as a file, not by name: Pillow memory-maps a named uncompressed TIFF at its turned size (garbage)
    with open(path, "rb") as file, warnings.catch_warnings():  # Pillow's size guard, without changing its global limit
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(file)
        except Image.DecompressionBombError:
            check_size(path, *_declared_size(path))  # quotes the file's own size
            raise ReadError(path, f"image too large to read (over {MAX_PIXELS:,} pixels)") from None
        except UnidentifiedImageError:  # its own text names the file handle, not the file
            raise ReadError(path, f"cannot decode: not a {path.suffix.lower()} image (damaged, or another kind of file so named)") from None
        check_size(path, *im.size)
        n_frames = getattr(im, "n_frames", 1)
        im, turned = load_upright(im)  # what every viewer shows: the reader sees the image upright too
    read_warnings = [turned]
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        px = np.asarray(im, dtype=np.float32)
    else:
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            im = im.convert("RGBA")
            bg = Image.new("RGBA", im.size, (0, 0, 0, 255))
            im = Image.alpha_composite(bg, im)
        if im.mode not in ("L", "1", "LA"):
            read_warnings.append(colour_warning(_raster_strips(im), 255))
        px = np.asarray(im.convert("L"), dtype=np.uint8)
    img = Radiograph(px, is_2d=True)
    img.warnings.append("no pixel spacing in file; 1.0 mm assumed")
    if n_frames > 1:
        img.warnings.append(f"{n_frames} frames in file; only the first is used")
    img.warnings += [w for w in read_warnings if w]
    return img


def _raster_strips(im):
    """A Pillow image's pixels as RGB strips of rows (a strip at a time: no full-size copy)."""
    for top in range(0, im.height, ROWS_AT_ONCE):
        yield np.asarray(im.crop((0, top, im.width, min(top + ROWS_AT_ONCE, im.height))).convert("RGB"))


def _declared_size(path: Path) -> tuple[int, ...]:
    """A raster's size as its header declares it, read by SimpleITK (Pillow refuses to open it)."""
    import SimpleITK as sitk

    with _utf8_named(path, None) as readable:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(readable))
        try:
            reader.ReadImageInformation()
        except RuntimeError:
            return ()
        return reader.GetSize()[:2]


def _read_itk(path: Path) -> Radiograph:
    import SimpleITK as sitk

    data = _detached_data_file(path)
    with _utf8_named(path, data) as readable:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(readable))
        reader.ReadImageInformation()
        check_size(path, *reader.GetSize())
        if len(reader.GetSize()) == 3:
            check_volume(path, *reader.GetSize()[::-1])
        check_bytes(path, math.prod(reader.GetSize()) * reader.GetNumberOfComponents(),
                     max(_component_bytes(sitk.GetPixelIDValueAsString(reader.GetPixelID())), 4),
                     f"{reader.GetNumberOfComponents()} component(s) per pixel")
        im = reader.Execute()
    colour = None
    if im.GetNumberOfComponentsPerPixel() == 2:
        im = sitk.VectorIndexSelectionCast(im, 0)
    elif im.GetNumberOfComponentsPerPixel() > 2:
        view = sitk.GetArrayViewFromImage(im)
        colour = colour_warning(array_strips(view), float(view.max()) - float(view.min()))
        im = _rgb_to_gray_itk(im)
    dim = im.GetDimension()
    if dim == 4:
        raise ReadError(path, "4D images are not supported")
    arr = sitk.GetArrayFromImage(im)
    if _suffix(path) in (".nii", ".nii.gz") and np.issubdtype(arr.dtype, np.floating) and reader.GetNumberOfComponents() == 1:
        restore_nonfinite(path, arr)  # ITK 5 reads them as 0
    refuse_hounsfield_volume(arr, path)
    arr, scaled = within_float32(arr)
    if not np.issubdtype(arr.dtype, np.floating) and arr.dtype.itemsize > 2:
        arr = arr.astype(np.float32)
    spacing = list(im.GetSpacing()) + [1.0] * (3 - dim)
    origin = list(im.GetOrigin()) + [0.0] * (3 - dim)
    direction = np.eye(3)
    direction[:dim, :dim] = np.asarray(im.GetDirection()).reshape(dim, dim)
    img = Radiograph(arr, spacing, origin, direction, is_2d=(dim == 2))
    img.warnings += [w for w in (colour, scaled) if w]
    return img


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
    """`path` itself, or where SimpleITK cannot be given its name (`native_names`), a link to it (and
    to its data file) under a plain name in a temporary folder; a .nii.gz always: niftilib reads the
    voxels of an x.nii beside it in its place (ITK#2243), another patient's image under this name."""
    if native_safe(path) and _suffix(path) != ".nii.gz":
        yield path
        return
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


def write_image(img: Radiograph, path, compress: bool = True, metadata: dict[str, str] | None = None) -> Path:
    """Write pixels with geometry (NRRD/NIfTI/MHA by suffix) atomically, with `metadata` as header
    fields (NRRD `key:=value`). A 2D source stays 2D where its geometry is that of the plane z = 0;
    any other plane (z = 200, coronal, oblique) is written as one slice of a 3D image, because a 2D
    image cannot carry that origin or direction."""
    import SimpleITK as sitk

    path = Path(path)
    arr = np.asarray(img.pixels)
    if img.is_2d and arr.shape[0] == 1 and _in_plane_z0(img):
        im = sitk.GetImageFromArray(arr[0])
        im.SetSpacing(img.spacing[:2])
        im.SetOrigin(img.origin[:2])
        im.SetDirection(img.direction[:2, :2].ravel().tolist())
    else:
        im = sitk.GetImageFromArray(arr)
        im.SetSpacing(img.spacing)
        im.SetOrigin(img.origin)
        im.SetDirection(img.direction.ravel().tolist())
    for key, value in (metadata or {}).items():
        im.SetMetaData(key, value)
    with atomic_path(path, keep_extension=True) as tmp, plain_target(tmp, _suffix(path)) as plain:
        try:
            sitk.WriteImage(im, str(plain), compress)
        except RuntimeError as e:  # checked while the partial file still holds what room there was
            raise disk_full_or(e, plain.parent, arr.nbytes) from e
    return path


def _in_plane_z0(img: Radiograph) -> bool:
    """Whether a 2D image's geometry survives dropping its third axis: origin at z = 0, and rows and
    columns in the x-y plane with the slice axis along z."""
    d = img.direction
    return img.origin[2] == 0 and not d[2, :2].any() and not d[:2, 2].any() and d[2, 2] == 1
