"""What a file holds by its first bytes, where its name or Pillow would read it wrong: a JPEG saved as
IM-0001.dcm by an export or a phone app is no DICOM, and a viewer that looks at the content shows it
all the same; a 16-bit colour or grey + alpha PNG needs a reader that keeps 16 bits."""

from __future__ import annotations

from pathlib import Path

RASTER_SIGNATURES = ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"II*\x00", "TIFF"),
                     (b"MM\x00*", "TIFF"), (b"BM", "BMP"))


def raster_kind(path: Path) -> str | None:
    """"JPEG", "PNG", "TIFF" or "BMP" where the file begins with that format's signature, else None."""
    with open(path, "rb") as f:
        head = f.read(8)
    return next((kind for signature, kind in RASTER_SIGNATURES if head.startswith(signature)), None)


PNG_GREY_ALPHA = 4
PNG_WIDE_COLOUR_TYPES = (2, 6)  # RGB, RGBA: Pillow reads them at 8 bits per channel; SimpleITK keeps 16


def sixteen_bit_png(path: Path) -> int | None:
    """The PNG colour type of a 16-bit PNG that Pillow would cut to its top 8 bits (12-bit detector
    values in it become 16 grey levels): RGB, RGBA (2, 6) or grey + alpha (4); None for any other
    file (16-bit grey Pillow keeps)."""
    with open(path, "rb") as f:
        head = f.read(26)
    wide = head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR" and len(head) == 26 and head[24] == 16
    return head[25] if wide and head[25] in (*PNG_WIDE_COLOUR_TYPES, PNG_GREY_ALPHA) else None
