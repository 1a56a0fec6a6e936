"""What a file holds by its first bytes, where its name says otherwise: a JPEG saved as IM-0001.dcm
by an export or a phone app is no DICOM, and a viewer that looks at the content shows it all the same."""

from __future__ import annotations

from pathlib import Path

RASTER_SIGNATURES = ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"II*\x00", "TIFF"),
                     (b"MM\x00*", "TIFF"), (b"BM", "BMP"))


def raster_kind(path: Path) -> str | None:
    """"JPEG", "PNG", "TIFF" or "BMP" where the file begins with that format's signature, else None."""
    with open(path, "rb") as f:
        head = f.read(8)
    return next((kind for signature, kind in RASTER_SIGNATURES if head.startswith(signature)), None)
