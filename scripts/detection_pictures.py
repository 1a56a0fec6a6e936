"""What a reader sees on large abnormalities: overlays with the lung fields outlined, on seeded phantoms
drawn on normals and on real severe cases, hits and misses (docs/images/detections_<name>.png).

    .venv/bin/python scripts/detection_pictures.py MODEL NAME NORMALS_DIR [REAL_IMAGE ...]

Top rows: each phantom kind on the first normals of NORMALS_DIR (the phantom's region in green, the
tile says HIT when the heatmap maximum lies in it); last row: the real images given.
"""

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from SSLAnomalyLib.core.detection.detector import AnomalyDetector
from SSLAnomalyLib.core.reading.images import list_inputs, read_radiograph
from SSLAnomalyLib.core.results.overlay import render_overlay
from SSLAnomalyLib.evaluation.phantom_evaluation import drawn_lungs, phantom_on, phantom_seed

ROOT = Path(__file__).resolve().parents[1]
TILE = 300
KINDS = [("whiteout", "hemithorax"), ("effusion", "large"), ("consolidation", "lobar"), ("pneumothorax", "large"),
         ("mass", "60mm"), ("cardiomegaly", "ctr_0.60-0.65")]
PER_KIND = 3


def tile(detector, image, region=None, caption="") -> Image.Image:
    result = detector.detect(image, lungs=True)
    heat = result.heatmap.pixels[0]
    picture = render_overlay(image.pixels[0], heat, result, lungs=result.lungs.pixels[0].astype(bool))
    draw = ImageDraw.Draw(picture)
    if region is not None:
        edge = region & ~ndimage.binary_erosion(region, iterations=3)
        sy, sx = picture.height / region.shape[0], picture.width / region.shape[1]
        ys, xs = np.nonzero(edge[::4, ::4])
        for y, x in zip(ys * 4, xs * 4):
            draw.point((x * sx, y * sy), fill=(0, 255, 0))
        hit = bool(region.ravel()[np.argmax(heat)])
        caption += " HIT" if hit else " MISS"
    draw.rectangle((0, picture.height - 26, picture.width, picture.height), fill=(0, 0, 0))
    draw.text((6, picture.height - 22), caption, fill=(255, 255, 255))
    return picture.resize((TILE, TILE))


def main() -> int:
    if len(sys.argv) < 4:
        raise SystemExit(__doc__)
    model, name, normals = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    detector = AnomalyDetector.load(model)
    files = list_inputs([str(normals)])[:PER_KIND]
    rows = []
    for kind, size in KINDS:
        row = []
        for i, f in enumerate(files):
            image = read_radiograph(f)
            drawn, phantom = phantom_on(image, kind, size, drawn_lungs(detector, image), phantom_seed(0, kind, size, i))
            row.append(tile(detector, drawn, phantom.region_mask, f"{kind} {size}"))
        rows.append(row)
    real = [tile(detector, read_radiograph(p), caption=Path(p).stem) for p in sys.argv[4:]]
    if real:
        rows.append(real)
    width = max(len(r) for r in rows)
    sheet = Image.new("RGB", (width * TILE, len(rows) * TILE))
    for r, row in enumerate(rows):
        for c, t in enumerate(row):
            sheet.paste(t, (c * TILE, r * TILE))
    out = ROOT / "docs" / "images" / f"detections_{name}.png"
    sheet.save(out)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
