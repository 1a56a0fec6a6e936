"""Would another post-processing of the patch map point at lesions more often? Recomputes, for one
model, the heatmap of each box image from the same coarse patch map with three blur widths (4, 8,
12 px at 256), two weights outside the lung fields (0.35 as shipped, 0) and the lung mask eroded
or not for the damping, and reports the pointing game on tbx11k_dev (TB boxes) and nih/val (pneumonia
boxes). Choosing among them looks at dev boxes, so it is a diagnostic (docs/model.md, round 3).
    .venv/bin/python scripts/pointing_variants.py [MODEL]        (about 6 minutes on one core)
"""

import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from SSLAnomalyLib.core.detection.detector import AnomalyDetector
from SSLAnomalyLib.core.model.heatmap import to_input_grid
from SSLAnomalyLib.core.reading.images import read_radiograph
from SSLAnomalyLib.evaluation.evaluate import box_mask, read_boxes

DATA = Path("../shared/data")
SETS = {"tbx11k_dev": (DATA / "tbx11k_dev/boxes.csv", DATA / "tbx11k_dev/images"),
        "nih/val": (DATA / "nih/val/boxes.csv", DATA / "nih/val/pneumonia")}


def variants(coarse: np.ndarray, lung: np.ndarray, size: int) -> dict[str, np.ndarray]:
    t = torch.from_numpy(np.ascontiguousarray(coarse, dtype=np.float32))[None, None]
    up = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)[0, 0].numpy()
    out = {}
    for blur in (4, 8, 12):
        smooth = ndimage.gaussian_filter(up, blur / 256 * size)
        for outside in (0.35, 0.0):
            for erode in (0, 3):
                mask = ndimage.binary_erosion(lung, iterations=erode) if erode else lung
                weight = ndimage.gaussian_filter(mask.astype(np.float32), size / 32)
                out[f"blur {blur} px, outside lungs x{outside}, lung mask eroded {erode} px"] = \
                    (smooth * (outside + (1 - outside) * weight)).astype(np.float32)
    return out


def main(model: str = "adult") -> None:
    torch.set_num_threads(1)
    detector = AnomalyDetector.load(model)
    for label, (csv, folder) in SETS.items():
        hits = {}
        for name, boxes in sorted(read_boxes(csv).items()):
            image = read_radiograph(folder / name)
            prepared = detector.prepare(image)[0]
            _, patches = detector.scorer.features(prepared.image01[None], prepared.lung[None])
            coarse = detector.scorer.reference.patch_map(patches).numpy()[0]
            _, rows, cols = image.shape
            inside = box_mask((rows, cols), boxes).ravel()
            for k, grid in variants(coarse, prepared.lung, detector.input_size).items():
                hits.setdefault(k, []).append(bool(inside[np.argmax(to_input_grid(grid, rows, cols))]))
        for k, v in hits.items():
            print(f"{label} | {k} | pointing game {np.mean(v):.3f} ({len(v)} images)", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
