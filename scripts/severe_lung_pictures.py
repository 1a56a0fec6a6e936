"""The lung fields that networks draw on real severe adult cases, side by side (one column per network,
one row per image; the outline in cyan), for reading by eye where no expert mask exists.

    .venv/bin/python scripts/severe_lung_pictures.py OUT.png FOLDER [FOLDER ...] [--images FILE ...]

Default images: NIH val pneumonia 00000506_013 and _016 (an opaque left hemithorax), 00004893_027,
00009863_058 and 00011237_067 (the most lopsided or lowest-overlap fields of the bundled network).
The tiles are `lung_check.py`'s (the fields as the network gives them, before `detect` mirrors a field drawn away from where lungs lie; outlined the same way).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lung_check import DATA, fields_of, outlined, save_grid
from SSLAnomalyLib.core.anatomy.lung_network import LungSegmenter
from SSLAnomalyLib.core.reading.images import read_radiograph

SEVERE = ["00000506_013", "00000506_016", "00004893_027", "00009863_058", "00011237_067"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("networks", nargs="+", help="lung model folders, one column each")
    parser.add_argument("--images", nargs="+",
                        default=[str(DATA / "nih" / "val" / "pneumonia" / f"{n}.png") for n in SEVERE])
    args = parser.parse_args()
    segmenters = [LungSegmenter.load(n) for n in args.networks]
    tiles = []
    for f in args.images:
        pixels = read_radiograph(f).pixels[0]
        tiles += [outlined(pixels, fields_of(s, pixels).mask) for s in segmenters]
    save_grid(tiles, len(segmenters), Path(args.out))
    print(f"{args.out}: {len(args.images)} images x {len(segmenters)} networks "
          f"({', '.join(s.model_id for s in segmenters)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
