"""The lung fields that networks draw on real severe adult cases, side by side (one column per network,
one row per image; the outline in cyan), for reading by eye where no expert mask exists.

    .venv/bin/python scripts/severe_lung_pictures.py OUT.png FOLDER [FOLDER ...] [--images FILE ...]

Default images: NIH val pneumonia 00000506_013 and _016 (an opaque left hemithorax), 00004893_027,
00009863_058 and 00011237_067 (the most lopsided or lowest-overlap fields of the bundled network).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from SSLAnomalyLib.core.anatomy.lung_network import LungSegmenter
from SSLAnomalyLib.core.model.preprocess import normalise, resize, to_model_input
from SSLAnomalyLib.core.reading.images import read_radiograph

NIH = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "nih" / "val" / "pneumonia"
SEVERE = ["00000506_013", "00000506_016", "00004893_027", "00009863_058", "00011237_067"]
TILE = 256
OUTLINE = (0, 255, 255)


def tile(pixels: np.ndarray, segmenter: LungSegmenter) -> np.ndarray:
    """One radiograph in grey at TILE px with the network's lung fields (fallbacks included) outlined."""
    grey = (normalise(resize(pixels, (TILE, TILE))) * 255).astype(np.uint8)
    fields = segmenter.fields(to_model_input(pixels, segmenter.config.input_size)[None])[0]
    mask = resize(fields.mask.astype(np.float32), (TILE, TILE)) > 0.5
    rgb = np.repeat(grey[..., None], 3, axis=2)
    rgb[mask & ~ndimage.binary_erosion(mask, iterations=2)] = OUTLINE
    return rgb


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("networks", nargs="+", help="lung model folders, one column each")
    parser.add_argument("--images", nargs="+", default=[str(NIH / f"{n}.png") for n in SEVERE])
    args = parser.parse_args()
    segmenters = [LungSegmenter.load(n) for n in args.networks]
    rows = []
    for f in args.images:
        pixels = read_radiograph(f).pixels[0]
        rows.append(np.concatenate([tile(pixels, s) for s in segmenters], axis=1))
    Image.fromarray(np.concatenate(rows, axis=0)).save(args.out)
    print(f"{args.out}: {len(args.images)} images x {len(segmenters)} networks "
          f"({', '.join(s.model_id for s in segmenters)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
