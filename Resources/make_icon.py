"""Draws the module icon (SSLAnomaly/Resources/Icons/SSLAnomaly.png, 128x128) from shapes, so the
extension ships no third-party image: two lung fields, a spine, and a hot spot in the module's
inferno colours inside a finding box. Run: python Resources/make_icon.py"""

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SIZE = 128
OUT = Path(__file__).resolve().parents[1] / "SSLAnomaly" / "Resources" / "Icons" / "SSLAnomaly.png"


def main() -> Path:
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    body = Image.new("L", (SIZE, SIZE), 0)
    draw = ImageDraw.Draw(body)
    draw.rounded_rectangle([6, 6, SIZE - 7, SIZE - 7], radius=22, fill=70)        # chest
    draw.ellipse([20, 22, 60, 110], fill=20)                                       # right lung
    draw.ellipse([68, 22, 108, 110], fill=20)                                      # left lung
    draw.rectangle([60, 14, 68, 116], fill=150)                                    # spine
    for y in range(30, 100, 14):                                                   # ribs
        draw.arc([18, y - 10, 62, y + 14], 200, 340, fill=95, width=3)
        draw.arc([66, y - 10, 110, y + 14], 200, 340, fill=95, width=3)
    gray = np.asarray(body.filter(ImageFilter.GaussianBlur(1.5)), float) / 255
    heat = np.exp(-(((xx - 0.68) / 0.09) ** 2 + ((yy - 0.47) / 0.11) ** 2))       # hot spot in the left lung
    inferno = np.array([(0.26, 0.04, 0.41), (0.73, 0.21, 0.33), (0.98, 0.55, 0.04), (0.99, 1.0, 0.64)])
    level = np.clip(heat, 0, 1) * (len(inferno) - 1)
    low = np.floor(level).astype(int).clip(0, len(inferno) - 2)
    colour = inferno[low] + (level - low)[..., None] * (inferno[low + 1] - inferno[low])
    alpha = np.clip(heat * 1.6, 0, 0.9)[..., None]
    rgb = gray[..., None] * (1 - alpha) + colour * alpha
    mask = np.asarray(body) > 0
    rgba = np.dstack([rgb * 255, mask * 255]).astype(np.uint8)
    icon = Image.fromarray(rgba, "RGBA")
    ImageDraw.Draw(icon).rectangle([74, 42, 104, 80], outline=(60, 255, 110, 255), width=3)  # finding box
    OUT.parent.mkdir(parents=True, exist_ok=True)
    icon.save(OUT)
    return OUT


if __name__ == "__main__":
    print(main())
