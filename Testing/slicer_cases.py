"""Shared inputs of the Slicer tests: the headless application with an empty scene, the module's
Logic under the harness, real radiographs (skipped with a reason where ../shared/data is absent),
a DICOM DX written from one, and the model they run on.

The tests check the Slicer plumbing, not detection quality, so they lower the false-positive rate
of the thresholds (TEST_FPR) so that a real abnormal radiograph surely has findings to show and review.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from slicer_harness import load_module_file

from conftest import data_dir

TEST_FPR = 0.95  # thresholds at the 5th percentile of the calibration normals


def empty_scene():
    """The process's headless Slicer, its scene cleared (views and colour tables stay)."""
    from SSLAnomalyLib.mrml.headless import start_headless_app

    app = start_headless_app()
    app.scene.Clear()
    return app


def logic():
    """A fresh `SSLAnomalyLogic` of the module file, imported under the harness."""
    return load_module_file().SSLAnomalyLogic()


def shown_column(volume) -> list[bool]:
    """The findings table's *Shown* of `volume`, row by row."""
    from SSLAnomalyLib.mrml.table import COLUMNS, findings_table

    table, column = findings_table(volume), [t for t, _, _ in COLUMNS].index("Shown")
    return [{"yes": True, "no": False}[table.GetCellText(row, column)] for row in range(table.GetNumberOfRows())]


def model_folder(request) -> Path:
    """The bundled default model where present, else the small real model the suite trains."""
    from SSLAnomalyLib.core.model_files.model_folder import MANIFEST
    from SSLAnomalyLib.core.model_files.registry import resolve

    bundled = resolve("default")
    return bundled if (bundled / MANIFEST).exists() else Path(request.getfixturevalue("small_model"))


def tb_radiograph() -> Path:
    """A real adult radiograph with tuberculosis lesions (512 x 512 PNG)."""
    return sorted(data_dir("tbx11k_dev", "images").iterdir())[0]


def full_resolution_radiograph(kind: str = "pneumonia") -> Path:
    return sorted(data_dir("kermany_fullres", kind).iterdir())[0]


def write_dicom_dx(jpeg: Path, path: Path, spacing=(0.139, 0.143)) -> Path:
    """A real radiograph as a DX DICOM file (12-bit, with imager pixel spacing) with the Patient
    Orientation of a PA chest film (L\\F: rows run to the patient's left, columns to the feet)."""
    import pydicom

    from messy_corpus import write_dicom as write_dx

    pixels = np.asarray(Image.open(jpeg).convert("L"), dtype=np.uint16) * 16
    write_dx(path, pixels, spacing=spacing)
    dataset = pydicom.dcmread(path)
    dataset.PatientOrientation = ["L", "F"]
    dataset.save_as(path)
    return Path(path)


def renamed_model(model: Path, folder: Path, model_id: str) -> Path:
    """A copy of the model folder `model` under another id: another model, as far as a review can tell
    (the same weights, so it finds the same boxes)."""
    from SSLAnomalyLib.core.model_files.model_folder import CARD, load, save

    loaded = load(model)
    return save(folder, loaded.encoder_state, loaded.arrays,
                loaded.manifest.replaced(files=None, format_version=None, model_id=model_id),
                (loaded.path / CARD).read_text(), decoder_state=loaded.decoder_state)


@pytest.fixture(scope="module")
def model(request) -> Path:
    return model_folder(request)
