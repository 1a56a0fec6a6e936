"""The picture a radiologist looks at: the radiograph, the heatmap in a perceptual colour map where
it rises above normal, the findings' boxes, and the score against the calibrated threshold."""

from __future__ import annotations

import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageDraw, ImageFont

from SSLAnomalyLib.core.preprocess import normalise, resize

MAX_SIDE = 1024
COLORMAP = "inferno"


def render_overlay(image: np.ndarray, heatmap: np.ndarray, result, slice_index: int = 0) -> Image.Image:
    """RGB picture of one slice (`image` and `heatmap` are (rows, cols) on the same grid)."""
    rows, cols = image.shape
    scale = min(1.0, MAX_SIDE / max(rows, cols))
    size = (max(1, round(rows * scale)), max(1, round(cols * scale)))
    gray = normalise(resize(image, size))
    heat = resize(heatmap, size)
    # colour from half the pixel threshold (faint) to twice it (saturated); below, the radiograph
    low, high = 0.5 * result.pixel_threshold, 2.0 * result.pixel_threshold
    level = np.clip((heat - low) / max(high - low, 1e-6), 0, 1)
    rgb = colormaps[COLORMAP](level)[..., :3]
    alpha = (0.65 * np.clip(level * 2, 0, 1))[..., None]
    out = (gray[..., None] * (1 - alpha) + rgb * alpha) * 255
    picture = Image.fromarray(out.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default(size=max(12, size[1] // 40))
    for f in result.findings:
        if f.slice_index != slice_index:
            continue
        i0, j0, i1, j1 = (np.array(f.bbox_ijk) * scale).round().astype(int)
        draw.rectangle([i0, j0, i1, j1], outline=(0, 255, 255), width=max(2, size[1] // 300))
        draw.text((i0 + 3, j0 + 2), f"#{f.id} {f.score:.2f}", fill=(0, 255, 255), font=font)
    verdict = "ABNORMAL" if result.abnormal else "within normal range"
    text = (f"score {result.score:.2f} (threshold {result.threshold:.2f}, {result.percentile:.1f}th percentile "
            f"of normals): {verdict}; {len(result.findings)} finding(s)")
    box = draw.textbbox((0, 0), text, font=font)
    draw.rectangle([0, 0, box[2] + 10, box[3] + 8], fill=(0, 0, 0))
    draw.text((5, 4), text, fill=(255, 80, 80) if result.abnormal else (200, 255, 200), font=font)
    return picture
