"""Images with nothing to score: one value everywhere, or all but a few pixels at one extreme (one hot
pixel on black is no radiograph either). A single such image is refused. In a volume, such a slice
(padding, a frame left empty) is marked and not scored: scored, a black slice beside a normal chest
came out far beyond every calibration normal, made the volume ABNORMAL and showed a finding on black."""

from __future__ import annotations

import numpy as np

from SSLAnomalyLib.core.files.errors import ReadError
from SSLAnomalyLib.core.reading.image import Radiograph


def blank_reason(pixels: np.ndarray) -> str | None:
    """Why `pixels` hold nothing to score ('constant (every pixel 0)', 'blank: all but ...'), or None."""
    lo, hi = float(pixels.min()), float(pixels.max())
    if lo == hi:
        return f"constant (every pixel {hi:g})"
    at = {v: int(np.count_nonzero(pixels == v)) for v in (lo, hi)}
    value = max((lo, hi), key=at.get)  # the blank's value: the extreme most pixels sit at
    others = pixels.size - at[value]
    if others < max(16, pixels.size // 1000):
        return f"blank: all but {others} of its {pixels.size} pixels are {float(value):g}"
    return None


def refuse_or_mark_blank(img: Radiograph, name, nonfinite: int = 0) -> None:
    """Refuse (ReadError naming `name`) an image, or a volume every slice of which, has nothing to score,
    saying first how many of its pixels were NaN or infinite (`nonfinite`, replaced by the median:
    nonfinite.py), which made it so; mark a volume's blank slices in `img.blank_slices`, with a warning
    naming them."""
    said = (f"{nonfinite} of its {img.pixels.size} pixels are NaN or infinite, and with the median of the others "
            "in their place ") if nonfinite else ""
    reason = blank_reason(img.pixels)
    if reason:
        raise ReadError(name, f"{said}{'the image' if said else 'image'} is {reason}: there is nothing to score")
    n = img.shape[0]
    blank = tuple(k for k in range(n) if n > 1 and blank_reason(img.pixels[k]))
    if len(blank) == n:
        raise ReadError(name, f"{said}every one of its {n} slices is blank (one value, or all but a few pixels at "
                              "one): there is nothing to score")
    if blank:
        img.blank_slices = blank
        shown = ", ".join(map(str, blank[:10])) + (", ..." if len(blank) > 10 else "")
        img.warnings.append(f"{len(blank)} of its {n} slices are blank and not scored (slice_index {shown})")
