"""Colour in a radiograph is not anatomy: a colour input is read as its luminance, so coloured marks
burned in by a viewer (arrows, rulers, text, measurement lines) become grey image content that moves
the score. They are found by their chroma (the spread between a pixel's strongest and weakest
channel), which a grey radiograph saved as RGB, or as a JPEG with its colour noise, does not have."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

STRONG_CHROMA = 0.25  # of the value range: far above JPEG colour noise (a few %), what a coloured mark has
EVERYWHERE = 0.05  # share of strongly coloured pixels beyond a radiograph's marks (lines, text: a few in a thousand
                   # to 2 %); a colour photograph has more (sklearn's china.jpg 7.9 %, flower.jpg 50 %)
ROWS_AT_ONCE = 1024  # rows measured at a time, so a large colour image costs no full-size copy


def colour_warning(strips: Iterable[np.ndarray], value_range: float) -> str | None:
    """The warning for a colour image given as strips of rows whose last axis holds its channels (RGB
    first), or None where no pixel carries strong chroma. `value_range` is what a channel can span.
    Strong colour on 5 % of the pixels or more is no radiograph's annotations but a colour photograph
    or a tinted picture: the user is told so, not asked to remove annotations."""
    strong = total = 0
    for strip in strips:
        rgb = strip[..., :3]
        strong += int((np.ptp(rgb, axis=-1) > STRONG_CHROMA * value_range).sum())
        total += rgb[..., 0].size
    if not strong:
        return None
    share = 100 * strong / total
    if strong >= EVERYWHERE * total:
        return (f"colour is not confined to marks: {share:.2g} % of pixels are strongly coloured (a radiograph's "
                f"annotations cover under {100 * EVERYWHERE:g} %), as in a colour photograph or a tinted picture, not a "
                "greyscale radiograph; its luminance is scored, and a photograph's score means nothing")
    return (f"colour annotations found on {f'{share:.2g}' if share >= 0.01 else 'under 0.01'} % of pixels; they are "
            "scored as image content (export the radiograph without annotations)")


def array_strips(rgb: np.ndarray) -> Iterator[np.ndarray]:
    """An array of colour pixels (frames, if any, leading) as strips of rows."""
    rows = rgb.reshape(-1, *rgb.shape[-2:])
    for i in range(0, len(rows), ROWS_AT_ONCE):
        yield rows[i:i + ROWS_AT_ONCE]
