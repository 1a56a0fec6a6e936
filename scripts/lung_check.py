"""Check the bundled lung network where it has no expert masks (children) and against them where it
has (openist held-out fold): plausibility figures and a picture of outlines.

Usage: .venv/bin/python scripts/lung_check.py   (writes docs/images/lungs_kermany.png, docs/images/lungs_openist.png
and prints the figures quoted in docs/anatomy.md)
"""

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from SSLAnomalyLib.core.anatomy import lung_mask
from SSLAnomalyLib.core.io import list_inputs, read_radiograph
from SSLAnomalyLib.core.lung_model import BUNDLED_LUNGS, bundled_segmenter
from SSLAnomalyLib.training.lung_training import dice, load_pair
from SSLAnomalyLib.core.preprocess import resize, to_model_input

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def outlined(image: np.ndarray, mask: np.ndarray, size: int = 256, truth: np.ndarray | None = None) -> Image.Image:
    """The radiograph with the lung outline in cyan (and the expert one in yellow)."""
    gray = (255 * to_model_input(image, size)).astype(np.uint8)
    rgb = np.stack([gray] * 3, -1)
    for m, colour in ((truth, (255, 220, 0)), (mask, (0, 230, 255))):
        if m is None:
            continue
        small = resize(m.astype(np.float32), (size, size)) >= 0.5
        edge = small & ~ndimage.binary_erosion(small, iterations=2)
        rgb[edge] = colour
    return Image.fromarray(rgb)


def plausibility(folder: Path) -> dict:
    """Share of images whose network output passed the plausibility checks, and lung area."""
    files = list_inputs([folder])
    xs = np.stack([to_model_input(read_radiograph(f).pixels[0], 128) for f in files])
    fields = bundled_segmenter().fields(xs)
    areas = [f.mask.mean() for f in fields]
    return {"folder": str(folder.relative_to(DATA)), "n": len(files),
            "network": sum(f.source == "network" for f in fields),
            "fallbacks": {s: sum(f.source == s for f in fields) for s in ("unsupervised", "prior")},
            "lung_area_median": round(float(np.median(areas)), 3),
            "lung_area_p5_p95": [round(float(np.percentile(areas, q)), 3) for q in (5, 95)]}


def main() -> int:
    seg = bundled_segmenter()
    tiles = []
    for kind, n in (("normal", 4), ("pneumonia", 4)):
        for f in sorted((DATA / "kermany" / "val" / kind).iterdir())[::37][:n]:
            image = read_radiograph(f).pixels[0]
            fields, = seg.fields(to_model_input(image, 128)[None])
            tiles.append(outlined(image, fields.on_grid(*image.shape)))
    grid = Image.new("RGB", (256 * 4, 256 * 2))
    for i, t in enumerate(tiles):
        grid.paste(t, (256 * (i % 4), 256 * (i // 4)))
    grid.save(ROOT / "docs" / "images" / "lungs_kermany.png")

    held = json.loads((BUNDLED_LUNGS / "manifest.json").read_text())["data"]["held_out"]
    net, old, old_missing, tiles = [], [], 0, []
    for k, name in enumerate(held):
        image, truth = load_pair(DATA / "openist" / "images" / name, DATA / "openist" / "masks" / name)
        x = to_model_input(image, 128)
        fields, = seg.fields(x[None])
        full = fields.on_grid(*truth.shape)
        net.append(dice(full, truth))
        unsupervised = lung_mask(x)
        old_missing += unsupervised is None
        old.append(0.0 if unsupervised is None else dice(resize(unsupervised.astype(np.float32), truth.shape) >= 0.5, truth))
        if k < 4:
            tiles.append(outlined(image, full, truth=truth))
    worst = int(np.argmin(net))
    image, truth = load_pair(DATA / "openist" / "images" / held[worst], DATA / "openist" / "masks" / held[worst])
    fields, = seg.fields(to_model_input(image, 128)[None])
    tiles.append(outlined(image, fields.on_grid(*truth.shape), truth=truth))
    grid = Image.new("RGB", (256 * len(tiles), 256))
    for i, t in enumerate(tiles):
        grid.paste(t, (256 * i, 0))
    grid.save(ROOT / "docs" / "images" / "lungs_openist.png")
    report = {"openist_held_out": {"n": len(held), "network_dice_mean": round(float(np.mean(net)), 4),
                                   "network_dice_min": round(float(np.min(net)), 4),
                                   "unsupervised_dice_mean": round(float(np.mean(old)), 4),
                                   "unsupervised_no_mask": old_missing, "worst": held[worst]},
              "plausibility": [plausibility(DATA / p) for p in ("kermany/val/normal", "kermany/val/pneumonia",
                                                                  "rsna/val/normal", "nih/val/pneumonia")]}
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
