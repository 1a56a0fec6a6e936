"""Writing a batch's results: per case the findings JSON, heatmap NRRD and overlay PNG, each
atomically (temporary file + rename) so an interrupted run never leaves a half-written result;
case names that never collide; one run per output folder at a time; an output folder never inside
the inputs; failures as JSON lines, names escaped, so no file name can forge a line or reach the
terminal raw.

The heatmap is written as uint8 codes, gzip-compressed, with `heatmap_scale` in its header (value =
code x scale, the scale being the map's maximum / 255; `pixel_threshold` is there too): about 0.3 MB
for a 4-megapixel radiograph instead of 16 MB of float32, in the same time. The error is at most half
a code step, 0.2 % of the map's maximum (for a map peaking at twice the pixel threshold, one step of
the overlay's 256-colour ramp), and the maximum stays where it was; findings, scores and thresholds
are computed before, in float."""

from __future__ import annotations

import os
import unicodedata
from collections import Counter
from pathlib import Path

import numpy as np

from SSLAnomalyLib.core.files.atomic import atomic_write_bytes, atomic_write_text
from SSLAnomalyLib.core.files.errors import PathError
from SSLAnomalyLib.core.files.json_text import dumps, visible
from SSLAnomalyLib.core.files.locks import folder_lock
from SSLAnomalyLib.core.reading.dicom_header import stored_non_image
from SSLAnomalyLib.core.reading.image import Radiograph
from SSLAnomalyLib.core.reading.images import list_inputs, write_image
from SSLAnomalyLib.core.reading.walk import refuse_output_inside_inputs
from SSLAnomalyLib.core.results.export_owner import EXPORT_SUFFIXES, RECORD_SUFFIX
from SSLAnomalyLib.core.results.findings_json import to_json
from SSLAnomalyLib.core.results.overlay import render_overlay
from SSLAnomalyLib.core.results.png import png_bytes

SUFFIXES = (".findings.json", ".heatmap.nrrd", ".overlay.png")
LUNGS_SUFFIX = ".lungs.nrrd"
LOCK = ".sslanomaly.lock"
HEATMAP_CODES = 255
NAME_BYTES = 200  # a case name's most: with its longest suffix (.findings.mrk.json) and a temporary's
                  # decorations (.<name>.tmp<pid>-<token>.nii.gz) it stays within a file name's 255 bytes


def shown(path) -> str:
    """A file name as it may be printed or logged: control characters (newlines, tabs, terminal
    escapes) and bytes that are not text (a non-UTF-8 name: json_text.visible) written as \\xNN / \\uNNNN."""
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}"
                   for c in visible(os.fsdecode(path)))


def append_failure(path, given, reason: str) -> None:
    """Add {"input": shown name, "reason": ...} as one line to a failures log: appended, never
    rewritten, so that a batch of thousands of unreadable files costs no more per failure at the end."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(dumps({"input": shown(given), "reason": reason}) + "\n")


def output_folder(out_dir) -> Path:
    """`out_dir`, made if need be, as a folder this run can write: a file in its place, or a folder
    that cannot be made or written, is a PathError naming the folder (not the OS error of a file in it)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise PathError(out, "is a file, not a folder: choose a folder for the results")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise PathError(out, f"output folder cannot be made ({e.strerror or e})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise PathError(out, "output folder cannot be written (permission denied)")
    return out


def output_file(path) -> Path:
    """`path` as a file this run can write when its work is done, its folder made if need be: a folder
    in its place, or a folder that cannot be made or written, is a PathError now, not after an hour
    of scoring whose figures it would then lose."""
    path = Path(path)
    if path.is_dir():
        raise PathError(path, "is a folder: name a file to write")
    output_folder(path.parent)
    return path


def output_lock(out_dir):
    """Hold `OUT/.sslanomaly.lock` while a run writes there: a second run into the same folder is
    refused (PathError naming the holder); a lock whose process is gone is taken over."""
    return folder_lock(Path(out_dir) / LOCK, out_dir)


def writable_name(name) -> str:
    """A file or folder name as part of a name every writer can open: bytes that are not UTF-8
    become %XX, control characters '_'."""
    return "".join(f"%{ord(c) - 0xDC00:02X}" if 0xDC80 <= ord(c) <= 0xDCFF else c if c.isprintable() else "_"
                   for c in os.fsdecode(name))


def case_name(path) -> str:
    """File name without image suffixes (x.nii.gz -> x, IM-1.jpeg -> IM-1), as a `writable_name`."""
    name = writable_name(Path(path).name)
    for suffix in (".nii.gz", ".nrrd", ".nhdr", ".nii", ".mha", ".mhd", ".dcm", ".dicom", ".png",
                   ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".ima"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def batch_files(inputs, out_dir) -> tuple[list, str | None]:
    """The distinct input files of a batch into `out_dir` and the warning naming repeats
    (`distinct_inputs`) and the DICOM objects passed over in its folders (`passed_over`), after refusing an
    output folder inside the inputs: every front end (command line, Slicer, Dask) lists its inputs here, so
    none scores its own results next run.
    One path is one input: as a string it was taken for its characters ('/' walked the whole disk)."""
    inputs = [inputs] if isinstance(inputs, (str, bytes, os.PathLike)) else list(inputs)
    refuse_output_inside_inputs(out_dir, inputs)
    files, skipped = passed_over(list_inputs(inputs), {Path(i) for i in inputs})
    files, repeated = distinct_inputs(files)
    return files, "; ".join(w for w in (repeated, skipped) if w) or None


def passed_over(files, named) -> tuple[list, str | None]:
    """`files` without the DICOM objects found in a folder that are no image (a CD or PACS export's
    reports, key object selections, presentation states, PDFs, an earlier export's SEG and SR: their file
    meta says so), and a warning naming them, or None. They are no input and no failure; a file given by
    name (in `named`) is kept, read and refused with what it is."""
    kept, skipped = [], []
    for f in files:
        kind = None if f in named else stored_non_image(f)
        if kind:
            skipped.append(f"{shown(f)} ({kind})")
        else:
            kept.append(f)
    return kept, (f"passed over {len(skipped)} DICOM object(s) in the input folders that are not images, not "
                  f"counted as inputs: {first_few(skipped)}" if skipped else None)


def first_few(named: list[str]) -> str:
    """The first three of `named`, and how many more: a refusal names what it is about, not thousands."""
    return "; ".join(named[:3]) + (f"; and {len(named) - 3} more" if len(named) > 3 else "")


def distinct_inputs(files) -> tuple[list, str | None]:
    """`files` with each file once (the same path twice, a folder and a file in it, a link and its
    target: the first kept), and a warning naming the repeats, or None. One image gets one result and
    one worklist row, and its name does not depend on a repeat (`a`, not `in_a` and `in_a-2`)."""
    first, repeats = {}, {}
    for f in files:
        try:
            st = os.stat(f)
            key = (st.st_dev, st.st_ino)
        except OSError:  # missing or unreadable: reported by the batch in its turn, under its own path
            key = os.path.abspath(f)
        if key in first:
            repeats.setdefault(key, [first[key]]).append(f)
        else:
            first[key] = f
    if not repeats:
        return list(files), None
    groups = "; ".join(f"{shown(given[0])} (also as {', '.join(shown(g) for g in given[1:])})"
                       for given in repeats.values())
    return list(first.values()), f"the same file is given more than once, scored once under its first name: {groups}"


def unique_case_names(files) -> list[str]:
    """Case names that never collide: the file stem where no other input of the batch has it
    (compared as some file systems compare names: `compared`); otherwise the parent folder's name
    (a `writable_name`: a folder named in Latin-1 ended the batch in a UnicodeEncodeError) and the stem, numbered (-2, -3, ...) until it is taken by no other case. The numbering of a
    base goes on where it stopped, so that thousands of `cxr/IMG.png` are named in linear time."""
    stems = [fitted(case_name(f)) for f in files]
    counts = Counter(compared(s) for s in stems)
    taken = {compared(s) for s in stems if counts[compared(s)] == 1}
    numbered: dict[str, int] = {}  # base (as compared) -> the number to try next (1: the base itself)
    names = []
    for f, stem in zip(files, stems):
        if counts[compared(stem)] == 1:
            names.append(stem)
            continue
        base = fitted(f"{writable_name(Path(f).parent.name)}_{stem}")
        k = numbered.get(compared(base), 1)
        name = numbered_name(base, k)
        while compared(name) in taken:
            k += 1
            name = numbered_name(base, k)
        numbered[compared(base)] = k + 1
        taken.add(compared(name))
        names.append(name)
    return names


def compared(name: str) -> str:
    """A name as the file systems a site may write to compare it: without case (Windows, macOS) and with its
    accents composed (macOS: 'café' typed as e + a combining accent, as a Mac names files, is the same file
    as 'café' with one letter é, so two inputs so named, in two folders, wrote one result over the other)."""
    return unicodedata.normalize("NFC", name).lower()


def fitted(name: str, room: int = NAME_BYTES) -> str:
    """`name` cut to `room` bytes of UTF-8, at a character: an input whose own name is near the file
    system's limit failed with 'File name too long' once its results' suffixes were added."""
    return name.encode("utf-8")[:room].decode("utf-8", "ignore")


def numbered_name(base: str, k: int) -> str:
    """The k-th name of `base` (the first is `base` itself), within NAME_BYTES."""
    return base if k == 1 else f"{fitted(base, NAME_BYTES - len(f'-{k}'))}-{k}"


def case_paths(out_dir, name: str) -> dict[str, Path]:
    out_dir = Path(out_dir)
    return {s.split(".")[1]: out_dir / f"{name}{s}" for s in SUFFIXES}


def case_files(out_dir, name: str) -> list[Path]:
    """Every file a batch may write under case `name`, whatever its options (`--lungs`, `--mrb`, the
    Slicer export's formats and record): what an earlier run left under that name and this one did
    not write again is the earlier image's (core/results/set_aside.py). A file of any other name
    (a user's own) is none of them."""
    suffixes = (*SUFFIXES, LUNGS_SUFFIX, *EXPORT_SUFFIXES.values(), RECORD_SUFFIX)
    return [Path(out_dir) / f"{name}{s}" for s in dict.fromkeys(suffixes)]


def write_case_outputs(result, image: Radiograph, out_dir, name: str, lungs: bool = False) -> dict[str, Path]:
    """Write the three files of the contract (and the lung fields, with `lungs`); the findings JSON
    goes last and marks completion."""
    paths = case_paths(out_dir, name)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    write_heatmap(result.heatmap, paths["heatmap"], result.pixel_threshold)
    if lungs:
        paths["lungs"] = write_image(result.lungs, Path(out_dir) / f"{name}{LUNGS_SUFFIX}")
    k = result.top_slice
    picture = render_overlay(image.pixels[k], result.heatmap.pixels[k], result, k, display=image.display,
                             aspect=image.spacing[1] / image.spacing[0])
    write_picture(picture, paths["overlay"])
    atomic_write_text(paths["findings"], to_json(result.to_dict(image.source)))
    return paths


def write_picture(picture, path: Path) -> Path:
    """An RGB picture as PNG (`png.png_bytes`: a sixth of libpng's time, the overlay's largest cost)."""
    return atomic_write_bytes(path, png_bytes(picture))


def write_heatmap(heatmap: Radiograph, path, pixel_threshold: float) -> Path:
    """The heatmap as gzip-compressed uint8 codes with its scale in the header (module docstring)."""
    top = float(heatmap.pixels.max())
    scale = top / HEATMAP_CODES if top > 0 else 1.0
    codes = heatmap.pixels / np.float32(scale)
    np.rint(codes, out=codes)  # in place: a 4-megapixel map is 16 MB a copy
    np.clip(codes, 0, HEATMAP_CODES, out=codes)
    return write_image(heatmap.with_pixels(codes.astype(np.uint8)), path, compress=True,
                       metadata={"heatmap_scale": repr(scale), "pixel_threshold": repr(float(pixel_threshold))})
