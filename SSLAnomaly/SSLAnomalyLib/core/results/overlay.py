"""The picture a radiologist reads at a glance: the radiograph in grey and, only where the heatmap
rises above the calibrated pixel threshold, a hot colour that brightens and grows more opaque with the
score (red at the threshold through orange and yellow to pale yellow at HOT_TOP times it), so heat never
darkens lung into something that reads as lucency and a normal radiograph stays grey; a colour bar
with the threshold marked; the findings' boxes with their labels (id, label and score, so that a
diffuse finding or one on an image within normal range says so here too) outside them on a dark backing;
optionally the lung fields' outline; and the score against the calibrated threshold.

The ramp and its range are shared with Slicer's colour node (mrml/heatmap.py), so both look alike.
The picture is drawn at most MAX_SIDE pixels a side: a heatmap from a 128-pixel model grid loses
nothing there, and the cost stays that of a 1-megapixel picture whatever the input's size. A small
image is enlarged towards MIN_SIDE, and the picture is at least MIN_SIDE a side (a strip-shaped image
on a dark ground), so that the score and the colour bar always fit beside the image.

The picture shows the slice as viewers show it: a file that stores its rows or columns against its
display, or swapped (`reading.display`), is drawn as shown, its boxes with it, so that the overlay
and Slicer show the same upright chest; the findings' boxes stay in the file's own indices elsewhere.
A pixel spacing that differs between rows and columns is drawn at the image's physical proportions,
as viewers draw it, not one picture pixel per file pixel (a chest squeezed to half its width).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from SSLAnomalyLib.core.model.preprocess import normalise, resize
from SSLAnomalyLib.core.reading.display import Display
from SSLAnomalyLib.core.results.figures import percentile_text, score_texts

MAX_SIDE = 1024
MIN_SIDE = 512
HOT_TOP = 2.0  # the ramp reaches its top at twice the pixel threshold
# red, orange, yellow, pale yellow: brighter at every step, and never white, which over bone or the
# mediastinum would look like no heat at all
HEAT_RAMP = np.array([(0.85, 0.08, 0.04), (1.0, 0.45, 0.0), (1.0, 0.85, 0.1), (1.0, 0.97, 0.55)])
OPACITY = (0.3, 0.85)  # at the threshold, at HOT_TOP times it
BOX = (0, 255, 255)     # cyan: apart from every heat colour
LUNG_OUTLINE = (90, 200, 120)
PANEL = (0, 0, 0)


def ramp_colours(n: int = 256) -> np.ndarray:
    """(n, 3) colours in [0, 1] from the threshold (row 0) to HOT_TOP times it (row n - 1)."""
    at = np.linspace(0, 1, len(HEAT_RAMP))
    return np.stack([np.interp(np.linspace(0, 1, n), at, HEAT_RAMP[:, c]) for c in range(3)], axis=1)


def ramp_opacity(n: int = 256) -> np.ndarray:
    return np.linspace(*OPACITY, n)


LUT = (ramp_colours() * 255).astype(np.float32)
ALPHA = ramp_opacity().astype(np.float32)


def _font(size: int):
    return ImageFont.load_default(size=size)


def _labelled(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, font, colour) -> None:
    """Text on a dark backing, its top-left corner at `xy`."""
    box = draw.textbbox(xy, text, font=font)
    draw.rectangle([box[0] - 3, box[1] - 2, box[2] + 3, box[3] + 2], fill=PANEL)
    draw.text(xy, text, fill=colour, font=font)


def label_position(box, text_size: tuple[float, float], size: tuple[int, int], top: int) -> tuple[float, float]:
    """Top-left corner of a box's label: above the box, else (under the banner `top` rows high) below
    it, else inside its top edge; shifted left as needed so the label never leaves the picture."""
    i0, j0, i1, j1 = box
    tw, th = text_size
    x = max(4, min(i0, size[1] - tw - 4))
    if j0 - th - 4 >= top:
        return x, j0 - th - 4
    return x, j1 + 5 if j1 + th + 5 <= size[0] else j0 + 4


def _banner(draw, result, width: int, font) -> int:
    """The score line(s) at the top, wrapped to fit; returns the height they take."""
    verdict = "ABNORMAL" if result.abnormal else "within normal range"
    score, threshold = score_texts(result.score, result.threshold)
    head = (f"score {score} (threshold {threshold}, {percentile_text(result.percentile)} "
            f"percentile of normals):")
    tail = f"{verdict}; {len(result.findings)} finding(s)"
    one = f"{head} {tail}"
    lines = [one] if draw.textlength(one, font=font) <= width - 10 else [head, tail]
    colour = (255, 90, 90) if result.abnormal else (200, 255, 200)
    line_height = font.size + 6
    draw.rectangle([0, 0, max(draw.textlength(t, font=font) for t in lines) + 10, line_height * len(lines) + 4],
                   fill=PANEL)
    for k, text in enumerate(lines):
        draw.text((5, 4 + k * line_height), text, fill=colour, font=font)
    return line_height * len(lines) + 4


def _colour_bar(picture: Image.Image, draw, pixel_threshold: float, font) -> None:
    """A vertical bar in the lower right corner on a dark panel: the pixel threshold at its foot (marked
    by a white tick; nothing is coloured below it), HOT_TOP times it at its head."""
    w, h = picture.size
    head, foot = f"{HOT_TOP * pixel_threshold:.3g}+", f"{pixel_threshold:.3g} threshold"
    label_w = max(draw.textlength(head, font=font), draw.textlength(foot, font=font))
    bar_w, bar_h = max(8, w // 80), max(3 * font.size, h // 6)
    x0 = int(w - 10 - label_w - 6 - bar_w)
    y1 = h - 10 - font.size // 2
    y0 = y1 - bar_h
    draw.rectangle([x0 - 6, y0 - font.size // 2 - 6, w - 2, h - 2], fill=PANEL)
    strip = np.repeat((ramp_colours(bar_h)[::-1] * 255).astype(np.uint8)[:, None], bar_w, axis=1)
    picture.paste(Image.fromarray(strip, "RGB"), (x0, y0))
    draw.line([x0 - 4, y1, x0 + bar_w + 3, y1], fill=(255, 255, 255), width=2)
    draw.text((x0 + bar_w + 6, y0 - font.size // 2), head, fill=(255, 255, 255), font=font)
    draw.text((x0 + bar_w + 6, y1 - font.size // 2 - 2), foot, fill=(255, 255, 255), font=font)


def render_overlay(image: np.ndarray, heatmap: np.ndarray, result, slice_index: int = 0,
                   lungs: np.ndarray | None = None, display: Display = Display(), aspect: float = 1.0) -> Image.Image:
    """RGB picture of one slice (`image`, `heatmap` and, outlined when given, `lungs` are (rows, cols)
    on the same grid, the file's), drawn as `display` shows it, each file row `aspect` times as high as
    a file column is wide (row spacing / column spacing)."""
    shape = image.shape
    image, heatmap = display.shown(image), display.shown(heatmap)
    rows, cols = image.shape
    aspect = 1 / aspect if display.transposed else aspect
    height = rows * aspect  # in column widths
    scale = min(max(1.0, MIN_SIDE / min(height, cols)), MAX_SIDE / max(height, cols))
    size = (max(1, round(height * scale)), max(1, round(cols * scale)))
    sx, sy = size[1] / cols, size[0] / rows  # picture pixels per file pixel
    gray = (normalise(resize(image, size), every=4) * 255).astype(np.uint8)
    out = np.repeat(gray[..., None], 3, axis=2)
    heat = resize(heatmap, size, antialias=False)
    t = result.pixel_threshold
    above = heat > t
    if above.any():  # blended in float where there is heat only
        level = np.clip((heat[above] - t) / max((HOT_TOP - 1) * t, 1e-6), 0, 1)
        index = (level * 255).astype(np.uint8)
        alpha = ALPHA[index][:, None]
        out[above] = (out[above] * (1 - alpha) + LUT[index] * alpha).astype(np.uint8)
    if lungs is not None:
        mask = resize(np.asarray(display.shown(lungs), np.float32), size) >= 0.5
        out[mask & ~ndimage.binary_erosion(mask, iterations=max(1, size[1] // 400))] = LUNG_OUTLINE
    picture = Image.new("RGB", (max(size[1], MIN_SIDE), max(size[0], MIN_SIDE)), PANEL)
    picture.paste(Image.fromarray(out, "RGB"), (0, 0))
    size = picture.size[::-1]  # (rows, cols) of the picture, where labels and the banner must fit
    draw = ImageDraw.Draw(picture)
    font = _font(max(12, size[1] // 40))
    top = _banner(draw, result, size[1], font)
    for f in result.findings:
        if f.slice_index != slice_index:
            continue
        i0, j0, i1, j1 = display.shown_box(f.bbox_ijk, *shape)  # pixels i0..i1 span [i0, i1 + 1) in the picture
        i0, j0, i1, j1 = round(i0 * sx), round(j0 * sy), round((i1 + 1) * sx) - 1, round((j1 + 1) * sy) - 1
        draw.rectangle([i0, j0, i1, j1], outline=BOX, width=max(2, size[1] // 300))
        text = f"#{f.id} {f.label} {f.score:.2f}"  # the label as the JSON and Slicer name it: diffuse, below verdict
        xy = label_position((i0, j0, i1, j1), (draw.textlength(text, font=font), font.size + 4), size, top)
        _labelled(draw, xy, text, font, BOX)
    _colour_bar(picture, draw, t, font)
    return picture
