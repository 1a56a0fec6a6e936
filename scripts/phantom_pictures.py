"""Every phantom kind and size of `evaluate --phantoms`, drawn with seed 0 on one real normal, as one
picture (docs/images/phantoms.png): to see what the figures in docs/phantoms/ measure.

Usage: .venv/bin/python scripts/phantom_pictures.py [NORMAL_IMAGE]   (default: the first NIH val normal)
"""

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from SSLAnomalyLib.core.anatomy.lung_network import bundled_segmenter
from SSLAnomalyLib.core.model.preprocess import to_model_input
from SSLAnomalyLib.core.reading.images import list_inputs, read_radiograph
from SSLAnomalyLib.evaluation.phantom_evaluation import phantom_seed
from SSLAnomalyLib.evaluation.phantoms import SIZES, draw_phantom

ROOT = Path(__file__).resolve().parents[1]
NIH = ROOT.parent / "shared" / "data" / "nih" / "val" / "normal"
TILE, PER_ROW = 320, 5


def main(path: str | None = None) -> int:
    image = read_radiograph(path or list_inputs([NIH])[0])
    px = image.pixels[0].astype(np.float32)
    x = (px - px.min()) / (px.max() - px.min())
    fields = bundled_segmenter().fields(to_model_input(px, 128)[None])[0]
    lungs = fields.on_grid(*px.shape).astype(bool)
    tiles = [("normal", x)]
    for kind, sizes in SIZES.items():
        for size in sizes:
            phantom = draw_phantom(kind, size, x, lungs, phantom_seed(0, kind, size, 0))
            tiles.append((f"{kind} {size} ({phantom.side})", phantom.image))
    rows = -(-len(tiles) // PER_ROW)
    grid = Image.new("L", (TILE * PER_ROW, TILE * rows))
    draw = ImageDraw.Draw(grid)
    font = ImageFont.load_default(size=16)
    for k, (name, pixels) in enumerate(tiles):
        r, c = divmod(k, PER_ROW)
        grid.paste(Image.fromarray((pixels * 255).astype(np.uint8)).resize((TILE, TILE), Image.LANCZOS),
                   (c * TILE, r * TILE))
        box = draw.textbbox((c * TILE + 6, r * TILE + 4), name, font=font)
        draw.rectangle(box, fill=0)
        draw.text((c * TILE + 6, r * TILE + 4), name, fill=255, font=font)
    out = ROOT / "docs" / "images" / "phantoms.png"
    grid.save(out, optimize=True)
    print(f"{out}: {len(tiles) - 1} phantoms on {image.source} (lung fields: {fields.source})")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
