"""A CT volume saved as NRRD, NIfTI or MHA has no DICOM header to say it is one (chest_view.py refuses
a DICOM of modality CT), and its slices would be scored as radiographs. Its values say it: CT is in
Hounsfield units, air near -1000 (outside the body, the lungs) and fat, water and soft tissue near 0,
each a large share of a chest, head or abdomen volume; a radiograph's values are X-ray intensities,
never both around -1000 and around 0 in large shares."""

from __future__ import annotations

import numpy as np

from SSLAnomalyLib.core.files.errors import ReadError

MIN_SLICES = 16  # a CT series; a file of a few radiographs is no CT
AIR_HU = (-1100, -500)  # air and lung
SOFT_TISSUE_HU = (-150, 150)  # fat, water, muscle, blood
MIN_SHARE = 0.15  # of each (a chest CT: air 30-60 %, soft tissue 25-50 %)


def refuse_hounsfield_volume(pixels: np.ndarray, name) -> None:
    """ReadError naming `name` where `pixels` (slices, rows, columns) look like a CT volume in
    Hounsfield units; measured on every other slice and every fourth row and column."""
    if pixels.ndim != 3 or len(pixels) < MIN_SLICES:
        return
    sample = pixels[::2, ::4, ::4]
    air, soft = (float(np.mean((sample >= lo) & (sample <= hi))) for lo, hi in (AIR_HU, SOFT_TISSUE_HU))
    if air >= MIN_SHARE and soft >= MIN_SHARE:
        raise ReadError(name, f"looks like a CT volume in Hounsfield units ({len(pixels)} slices, {100 * air:.0f} % of "
                              f"voxels at air's {AIR_HU[0]} to {AIR_HU[1]}, {100 * soft:.0f} % at soft tissue's "
                              f"{SOFT_TISSUE_HU[0]} to {SOFT_TISSUE_HU[1]}): the models score frontal chest "
                              "radiographs only")
