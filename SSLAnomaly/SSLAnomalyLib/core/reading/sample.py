"""A sample input for the first run: a folder the user names, else real radiographs where the shared
data folder exists, else a synthetic radiograph generated here and named as synthetic.

The repository ships no third-party images, so the synthetic fallback is drawn from geometric
shapes: a body, two lung fields, a spine, a heart shadow, ribs and noise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from SSLAnomalyLib.core.reading.images import ReadError, list_inputs
from SSLAnomalyLib.core.reading.walk import refuse_output_inside_inputs

SHARED_SAMPLES = Path(__file__).resolve().parents[4].parent / "shared" / "data" / "kermany_fullres"
SYNTHETIC_NAME = "SYNTHETIC_chest_radiograph.png"


def synthetic_radiograph(rows: int = 1024, cols: int = 896, seed: int = 0) -> np.ndarray:
    """An 8-bit picture shaped like a frontal chest radiograph (not a real image of anyone)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:rows, 0:cols] / np.array([rows, cols])[:, None, None]
    body = ((xx - 0.5) / 0.42) ** 2 + ((yy - 0.55) / 0.55) ** 2 < 1
    img = np.where(body, 0.75, 0.05)
    for cx in (0.32, 0.68):
        lung = ((xx - cx) / 0.15) ** 2 + ((yy - 0.48) / 0.3) ** 2 < 1
        img = np.where(lung, 0.28, img)
    img = np.where(np.abs(xx - 0.5) < 0.04, 0.85, img)                          # spine
    img = np.where(((xx - 0.56) / 0.12) ** 2 + ((yy - 0.62) / 0.12) ** 2 < 1, 0.7, img)  # heart
    ribs = (np.sin(yy * 60 + np.abs(xx - 0.5) * 12) > 0.85) & body
    img = img + 0.12 * ribs
    img = ndimage.gaussian_filter(img, 6) + rng.normal(0, 0.02, img.shape)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def sample_inputs(out_dir, data_dir=None) -> list[Path]:
    """Paths of sample radiographs to run on (real ones are used in place, never copied). A `data_dir`
    named but missing, a file, or without images is refused (ReadError), never silently replaced; so
    is one holding `out_dir` (PathError), where the demo writes its results: its next run would take
    them for samples (a heatmap NRRD scored as a radiograph)."""
    if data_dir:
        if not Path(data_dir).is_dir():
            raise ReadError(data_dir, "is a file, not a folder" if Path(data_dir).exists() else "no such folder")
        refuse_output_inside_inputs(out_dir, [data_dir])
        found = _samples_in(Path(data_dir))
        if not found:
            raise ReadError(data_dir, "no images found in the folder")
        return found
    found = _samples_in(SHARED_SAMPLES) if SHARED_SAMPLES.is_dir() else []
    if found:
        return found
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / SYNTHETIC_NAME
    Image.fromarray(synthetic_radiograph()).save(path)
    return [path]


def _samples_in(folder: Path) -> list[Path]:
    """A normal and a pneumonia where `folder` has such sub-folders (Kermany's layout), else its first two images."""
    return [f for sub in ("normal", "pneumonia") for f in list_inputs([folder / sub])[:1]
            if (folder / sub).is_dir()] or list_inputs([folder])[:2]
