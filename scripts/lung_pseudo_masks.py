"""The training set of round 22's normals-only lung network (docs/model.md, "Twenty-second round"):
the openist images with their expert masks, and every other NIH train normal with the bundled lung
network's fields as its mask; the rest of the NIH train normals, never trained on, are linked into a
folder of their own to standardise the study's statistics on. Round 13's far-out train "normals"
(white-outs among the No Finding labels) are left out of both.

    PYTHONPATH=SSLAnomaly .venv/bin/python scripts/lung_pseudo_masks.py OUT_TRAIN OUT_FIT

writes OUT_TRAIN/images, OUT_TRAIN/masks (links, and PNG masks on each image's grid) and OUT_FIT.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from SSLAnomalyLib.core.anatomy.lung_network import LungSegmenter
from SSLAnomalyLib.core.model.preprocess import to_model_input
from SSLAnomalyLib.core.reading.images import list_inputs, read_radiograph

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FAR_OUT = {"00003005_002", "00001986_007", "00002673_010", "00001986_011", "00001951_000", "00003005_012"}


def main(out_train: str, out_fit: str) -> int:
    train, fit = Path(out_train), Path(out_fit)
    for d in (train / "images", train / "masks", fit):
        d.mkdir(parents=True)
    for f in sorted((DATA / "openist" / "images").iterdir()):
        os.symlink(f.resolve(), train / "images" / f.name)
        os.symlink((DATA / "openist" / "masks" / f.name).resolve(), train / "masks" / f.name)
    segmenter = LungSegmenter.load()
    files = [Path(f) for f in list_inputs([DATA / "nih" / "train" / "normal"]) if Path(f).stem not in FAR_OUT]
    for i, f in enumerate(files):
        if i % 2:
            os.symlink(f.resolve(), fit / f.name)
            continue
        image = read_radiograph(f)
        fields = segmenter.fields(to_model_input(image.shown(0), 128)[None])[0]
        os.symlink(f.resolve(), train / "images" / f.name)
        Image.fromarray(fields.on_grid(*image.shape[1:]).astype(np.uint8) * 255).save(train / "masks" / f.name)
    print(f"{len(list((train / 'images').iterdir()))} training images, {len(list(fit.iterdir()))} fit normals")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
