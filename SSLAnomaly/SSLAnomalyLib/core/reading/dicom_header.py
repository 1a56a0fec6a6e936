"""Reading a DICOM file in two bounded passes, so that no file can make the reader work long or read
much before it is refused: first the header up to the pixel data, checked (an image object? pixel
data present, and no larger than the file and the budget?), then, only for a file that passes, the
same header and its pixel data. pydicom does the parsing; every read it makes and every element it
parses counts against MAX_PARSE_STEPS, so a file of zeros behind a DICM marker (which pydicom would
take as gigabytes of empty elements) is refused in a fraction of a second. A bare data set (no preamble, with or without file meta), as
old modalities and PACS exports write, is read too."""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass
from pathlib import Path

from SSLAnomalyLib.core.files.errors import ReadError
from SSLAnomalyLib.core.reading.read_limits import MAX_INFLATED_BYTES, check_bytes
from SSLAnomalyLib.core.reading.walk import special_kind

MAX_PARSE_STEPS = 10_000  # reads and elements up to the pixel data: a radiograph's header takes a few hundred
PIXEL_TAGS = (0x7FE00008, 0x7FE00009, 0x7FE00010)  # FloatPixelData, DoubleFloatPixelData, PixelData
UNDEFINED_LENGTH = 0xFFFFFFFF  # encapsulated (compressed) pixel data: its end is found by reading
PREAMBLE = 128  # bytes before "DICM"
BARE_STARTS = (b"\x02\x00", b"\x08\x00")  # a bare data set's first tag: group 0002 (file meta) or 0008, little endian


@dataclass
class Header:
    """A DICOM's header (without pixel data), and which pixel data element ends what is read."""
    ds: object  # pydicom FileDataset
    pixel_tag: int
    bare: bool  # no preamble: pydicom reads it only when forced


class _CountedFile:
    """The file as pydicom reads it, each read and each element counted against MAX_PARSE_STEPS."""

    def __init__(self, f, path: Path, purpose: str):
        self._f, self._path, self._purpose, self.steps = f, path, purpose, 0
        self.name = str(path)

    def step(self) -> None:
        self.steps += 1
        if self.steps > MAX_PARSE_STEPS:
            raise ReadError(self._path, f"{self._purpose} after {MAX_PARSE_STEPS:,} reads and elements (a radiograph's "
                                        "header takes a few hundred): the file is damaged or not an image")

    def read(self, size: int = -1) -> bytes:
        self.step()
        return self._f.read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()


def read_header(path: Path) -> Header:
    """The header up to the pixel data; refused (ReadError) if the file is no image object, has no
    pixel data, or its pixel data would be larger than the file or the decoding budget."""
    bare = dataset_start(path) == 0
    deflated = _check_inflated(path, bare)
    found: dict[str, int] = {}

    def at_pixels(tag, vr, length) -> bool:
        counted.step()
        if tag in PIXEL_TAGS:
            found.update(tag=int(tag), length=int(length))
        return tag in PIXEL_TAGS

    with open(path, "rb") as f:
        counted = _CountedFile(f, path, "no pixel data")
        ds = _read_partial(counted, at_pixels, bare)
        offset = f.tell()
    _refuse_non_image(path, ds)
    if not found:
        raise ReadError(path, "DICOM file has no pixel data (not an image object)")
    if deflated:  # its size was bounded as it was inflated, and offsets are in the inflated data set
        return Header(ds, found["tag"], bare)
    stored = os.path.getsize(path) - offset  # the pixel data element and anything after it
    if found["length"] != UNDEFINED_LENGTH and found["length"] > stored:
        raise ReadError(path, f"pixel data declares {found['length']:,} bytes but the file holds {stored:,} after its "
                              "header: the file is truncated")
    check_bytes(path, min(found["length"], stored), 1, "the pixel data as stored")
    return Header(ds, found["tag"], bare)


def read_with_pixels(path: Path, header: Header):
    """The data set with its pixel data, read no further than the pixel data (what follows is padding
    or signatures, never needed and not bounded by anything)."""
    def after_pixels(tag, vr, length) -> bool:
        counted.step()
        return tag > header.pixel_tag

    with open(path, "rb") as f:
        counted = _CountedFile(f, path, "the header did not end")
        return _read_partial(counted, after_pixels, header.bare)


def dataset_start(path: Path) -> int:
    """Where the DICOM stream begins: after the preamble and "DICM", or at 0 in a bare data set.
    InvalidDicomError where the file begins like neither."""
    from pydicom.errors import InvalidDicomError

    with open(path, "rb") as f:
        head = f.read(PREAMBLE + 4)
    if head[PREAMBLE:] == b"DICM":
        return PREAMBLE + 4
    if head[:2] in BARE_STARTS:
        return 0
    raise InvalidDicomError(f"{path} has no 'DICM' marker and does not begin with a DICOM element")


def begins_like_dicom(path: Path) -> bool:
    """Whether a file begins as the reader reads DICOM (`dataset_start`): how a file named by its UID
    (1.2.840.113619.2.5) or with no suffix, as PACS and CD exports name them, is told from the rest."""
    from pydicom.errors import InvalidDicomError

    try:
        if special_kind(path):  # a named pipe (or a link to one): opening it waits for a writer, for ever
            return False
        dataset_start(path)
    except (InvalidDicomError, OSError):
        return False
    return True


def _read_partial(counted: _CountedFile, stop_when, bare: bool):
    """pydicom's read, forced for a bare data set; one without file meta is given the transfer
    syntax it was read in, which decoding its pixels needs."""
    from pydicom import uid
    from pydicom.filereader import read_partial

    ds = read_partial(counted, stop_when=stop_when, force=bare)
    if "TransferSyntaxUID" not in ds.file_meta:
        implicit, little = ds.original_encoding
        ds.file_meta.TransferSyntaxUID = (uid.ImplicitVRLittleEndian if implicit else
                                          uid.ExplicitVRLittleEndian if little else uid.ExplicitVRBigEndian)
    return ds


def _refuse_non_image(path: Path, ds) -> None:
    """A segmentation, structured report, RT structure set, presentation state or parametric map
    carries no radiograph (a SEG even has pixel data, of masks): refused, naming its SOP Class."""
    value = ds.get("SOPClassUID") or getattr(ds, "file_meta", {}).get("MediaStorageSOPClassUID")
    if name := non_image_class(value):
        raise ReadError(path, f"DICOM {name} is not a radiograph (SOP Class {value}): only image objects are read")


def non_image_class(value) -> str | None:
    """The name of a SOP Class UID where pydicom knows it as a storage class that is no '... Image
    Storage' (a report, a segmentation, a presentation state, a key object selection, a PDF), else None."""
    from pydicom.uid import UID

    uid = UID(str(value or "").strip())
    return uid.name if uid.type == "SOP Class" and "Image Storage" not in uid.name else None


def stored_non_image(path: Path) -> str | None:
    """`non_image_class` of a DICOM file's object as its file meta states it, read alone (bounded); None
    for an image, for a file without file meta (a bare data set) and for any file that cannot be read so:
    its reading, in its turn, says what it is."""
    try:
        return non_image_class(_file_meta(path, dataset_start(path)).get("MediaStorageSOPClassUID"))
    except Exception:  # no DICOM, unreadable, a damaged meta group: the file is read and refused in its turn
        return None


def _file_meta(path: Path, start: int):
    """The file meta group (0002) from `start`: explicit VR little endian, as the standard writes it."""
    from pydicom.filereader import read_dataset

    with open(path, "rb") as f:
        f.seek(start)
        return read_dataset(_CountedFile(f, path, "the file meta information did not end"), is_implicit_VR=False,
                            is_little_endian=True, stop_when=lambda tag, vr, length: tag.group != 2)


def _check_inflated(path: Path, bare: bool) -> bool:
    """pydicom inflates a deflated data set whole before parsing it: count what it inflates to first,
    in bounded pieces, and refuse one beyond MAX_INFLATED_BYTES (a small file can inflate to gigabytes).
    Whether the data set is deflated."""
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    start = 0 if bare else PREAMBLE + 4
    meta = _file_meta(path, start)
    if meta.get("TransferSyntaxUID") != DeflatedExplicitVRLittleEndian:
        return False
    inflater, total = zlib.decompressobj(-zlib.MAX_WBITS), 0
    with open(path, "rb") as f:
        f.seek(start + 12 + int(meta.FileMetaInformationGroupLength))  # after the group length element
        while piece := f.read(2**20):
            while piece:
                total += len(inflater.decompress(piece, 2**24))
                if total > MAX_INFLATED_BYTES:
                    raise ReadError(path, f"deflated data set inflates to over {MAX_INFLATED_BYTES / 2**20:,.0f} MB "
                                          "(the limit)")
                piece = inflater.unconsumed_tail
    return True
