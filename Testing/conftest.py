"""Shared fixtures: the real data folder (skip with a reason where absent) and a small real model
trained here on a few real normals (fast, for behaviour tests; quality tests use the bundled model)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

os.environ.setdefault("TQDM_DISABLE", "1")
REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def data_dir(*parts) -> Path:
    """A folder of ../shared/data, or skip the test saying what is missing."""
    p = DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"real data not available: {p} is absent (tests use ../shared/data beside the repo)")
    return p


def link_subset(src: Path, dst: Path, n: int) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.iterdir())[:n]:
        (dst / f.name).symlink_to(f)
    return dst


def write_dx(path, pixels16, photometric="MONOCHROME2", spacing=(0.14, 0.15)):
    """Write 12-bit pixels as a DX DICOM file with identity, UIDs and ImagerPixelSpacing."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # DX for presentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.PatientName, ds.PatientID = "DX", "Test^Patient", "TEST-001"
    ds.Rows, ds.Columns = pixels16.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.ImagerPixelSpacing = [str(s) for s in spacing]
    ds.PixelData = pixels16.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture(scope="session")
def small_normals(tmp_path_factory):
    """40 training and 20 calibration normals from Kermany (symlinks, nothing copied)."""
    root = tmp_path_factory.mktemp("normals")
    train = link_subset(data_dir("kermany", "train", "normal"), root / "train", 40)
    val = link_subset(data_dir("kermany", "val", "normal"), root / "val", 20)
    return train, val


@pytest.fixture(scope="session")
def small_model(small_normals, tmp_path_factory):
    """A real model folder trained for a few steps on 40 real normals."""
    from SSLAnomalyLib.fitting import train_model

    train, val = small_normals
    out = tmp_path_factory.mktemp("model") / "small"
    return train_model(train, out, val, device="cpu", minutes=0.1, seed=0, progress=False)


@pytest.fixture(scope="session")
def default_model():
    from SSLAnomalyLib.model_folder import BUNDLED, MANIFEST

    if not (BUNDLED / MANIFEST).exists():
        pytest.fail(f"the bundled default model is missing from {BUNDLED}")
    return BUNDLED


@pytest.fixture(scope="session")
def messy_corpus(tmp_path_factory):
    """Every kind of messy input of issue 6, made from one real radiograph:
    (folder, {file name: expectation}) as messy_corpus.build_corpus describes."""
    from messy_corpus import build_corpus

    source = sorted(data_dir("kermany_fullres", "normal").iterdir())[0]
    folder = tmp_path_factory.mktemp("messy")
    return folder, build_corpus(folder, source)
