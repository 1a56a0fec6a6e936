"""Walking input folders without recursion and without entering a folder twice: a folder nested
thousands deep is listed (os.walk recurses, and fails past Python's recursion limit), a link to a
folder is followed once, and a symbolic-link loop ends the walk of that branch instead of the batch; and an output folder is never
one the walk of the inputs would enter; the results this tool writes (overlays, heatmaps) are never taken from a folder
as inputs."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from SSLAnomalyLib.core.files.errors import PathError, ReadError

# The image files this tool writes as `<name><suffix>` (detect's, the Slicer export's, those set aside): a folder
# holding them, an earlier `detect a.png b.png --out in/out` or an export kept beside the images, had its overlays
# and heatmaps scored as radiographs, and calibrated on as normals. Test_hostile_folders checks the list is whole.
RESULT_SUFFIXES = (".heatmap.nrrd", ".overlay.png", ".lungs.nrrd", ".findings.seg.nrrd", ".lungs.seg.nrrd",
                   ".seg.dcm", ".sr.dcm")


def resolved(path) -> Path | None:
    """`path` absolute with its links followed, or None where that cannot be done (a link loop)."""
    try:
        return Path(path).resolve(strict=False)
    except (OSError, RuntimeError):  # Python raises RuntimeError("Symlink loop") before 3.13
        return None


def walk_files(folder: Path) -> tuple[list[Path], list[Path]]:
    """Every entry under `folder` that is not a folder (hidden files and folders, and this tool's results
    skipped), and the folders that could not be listed. Each real folder is entered once, whichever link
    leads to it."""
    files: list[Path] = []
    unlisted: list[Path] = []
    entered: set[tuple[int, int]] = set()
    todo = [Path(folder)]
    while todo:
        current = todo.pop()
        try:
            st = current.stat()
            if (st.st_dev, st.st_ino) in entered:
                continue
            entered.add((st.st_dev, st.st_ino))
            with os.scandir(current) as listing:
                entries = sorted(listing, key=lambda e: e.name, reverse=True)
        except OSError:
            unlisted.append(current)
            continue
        for entry in entries:
            if entry.name.startswith("."):  # hidden; a folder too: a USB stick's .Trash-1000 holds deleted images
                continue
            if _is_folder(entry):
                todo.append(Path(entry.path))
            elif not entry.name.lower().endswith(RESULT_SUFFIXES):
                files.append(Path(entry.path))
    return files, unlisted


def _is_folder(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()  # through links
    except OSError:
        return False


SPECIAL_KINDS = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
                 (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def special_kind(path) -> str | None:
    """What `path` is (through links) where it is neither a file nor a folder, else None. Such a path is
    never opened: a named pipe blocks its reader until a writer comes, /dev/zero never ends, and each
    has a size of 0, once refused as "file is empty"."""
    mode = os.stat(path).st_mode
    return next((kind for test, kind in SPECIAL_KINDS if test(mode)), None)


def refuse_special(path, what: str = "an image file") -> None:
    """ReadError where a file named as an input (an image, a normals pack, a box file) is a `special_kind`:
    reading a named pipe waited for ever, /dev/zero filled the memory. A missing path its reader names."""
    try:
        kind = special_kind(path)
    except OSError:
        return
    if kind:
        raise ReadError(path, f"is {kind}, not {what}")


def why_missing(path: Path) -> str:
    """Why a path names no file: a link loop, a link to nothing, or simply nothing there."""
    try:
        os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "is a symbolic link loop (the link leads back to itself)"
        if os.path.islink(path):
            return "is a symbolic link to a file that does not exist"
        if e.errno == errno.ENAMETOOLONG:
            return "path is too long to open"
    return "file does not exist"


def refuse_output_inside_inputs(out_dir, inputs) -> None:
    """An output folder in (or equal to) an input folder would have the tool's own results scored
    as radiographs by the next run: refused, naming both. An input that cannot be resolved (a link
    loop) is no folder: the batch names it as a failure of that input."""
    out = resolved(out_dir) or Path(out_dir).absolute()
    for given in inputs:
        folder = resolved(given)
        if folder is not None and Path(given).is_dir() and (out == folder or folder in out.parents):
            raise PathError(out_dir, f"the output folder is inside the input folder {given}; its results would be "
                                     "read as radiographs on the next run: choose an output folder outside the inputs")
