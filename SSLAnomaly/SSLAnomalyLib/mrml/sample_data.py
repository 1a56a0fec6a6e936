"""A synthetic chest radiograph in Slicer's Sample Data module (category SSLAnomaly), so that a first
detection needs no patient image. Registered once Slicer has started, as extensions do; the file
ships with the module and is fetched through its file URI, checked against its SHA-256 like any
sample. It is `core.reading.sample.synthetic_radiograph(512, 448, seed=0)` (drawn, not anyone's image) at
0.7 mm per pixel; Testing/test_slicer_sample_data.py checks file, checksum and content.
"""

from __future__ import annotations

from pathlib import Path

import slicer

from SSLAnomalyLib.mrml.headless import is_desktop_slicer

FOLDER = Path(__file__).resolve().parents[2] / "Resources" / "SampleData"
NAME = "SSLAnomalySyntheticChest"
SAMPLE = FOLDER / f"{NAME}.nrrd"
THUMBNAIL = FOLDER / f"{NAME}.png"
SHA256 = "950c4a30be0c34bd9c09514426f126b0ba41a58bd12c7b63ee57db844f33cf45"
CATEGORY = "SSLAnomaly"


def register_on_startup() -> None:
    """Register when desktop Slicer has started (the Sample Data module is loaded by then); the
    headless application has no Sample Data module, so nothing is done there."""
    if is_desktop_slicer():
        slicer.app.connect("startupCompleted()", register)


def register() -> None:
    import SampleData

    SampleData.SampleDataLogic.registerCustomSampleDataSource(
        category=CATEGORY, sampleName=NAME, uris=SAMPLE.as_uri(), fileNames=SAMPLE.name, nodeNames=NAME,
        thumbnailFileName=str(THUMBNAIL), checksums=f"SHA256:{SHA256}", loadFileType="VolumeFile")
