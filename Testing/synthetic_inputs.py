"""Inputs of the synthetic tier (Testing/test_synthetic_tier.py), made without the real data folder:
radiograph-shaped pictures from `synthetic_radiograph` (one seed per "patient"), written in every
format the reader takes, a copy with one lung field painted opaque, and the command line in a
subprocess. Nothing here is a real image of anyone."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from SSLAnomalyLib.core.detection.detector import AnomalyDetector
from SSLAnomalyLib.core.reading.sample import synthetic_radiograph

REPO = Path(__file__).resolve().parents[1]
SSLANOMALY = REPO / ".venv" / "bin" / "sslanomaly"
ROWS, COLS = 256, 224  # small: the encoder sees 128 pixels anyway
LUNG_CENTRES = {"right": 0.32, "left": 0.68}  # the patient's right lung is on the image's left


def radiograph(seed: int, rows: int = ROWS, cols: int = COLS) -> np.ndarray:
    """A uint8 (rows, cols) synthetic chest radiograph; each seed is another "patient"."""
    return synthetic_radiograph(rows, cols, seed)


def lung_field(rows: int = ROWS, cols: int = COLS, side: str = "right") -> np.ndarray:
    """The ellipse `synthetic_radiograph` draws as one lung field (bool, rows x cols)."""
    yy, xx = np.mgrid[0:rows, 0:cols] / np.array([rows, cols])[:, None, None]
    return ((xx - LUNG_CENTRES[side]) / 0.15) ** 2 + ((yy - 0.48) / 0.3) ** 2 < 1


def whited_out(pixels: np.ndarray, side: str = "right", seed: int = 0) -> np.ndarray:
    """`pixels` with one lung field opaque (a hemithorax white-out): as bright as bone, with noise."""
    out = pixels.copy()
    field = lung_field(*pixels.shape, side=side)
    noise = np.random.default_rng(seed).normal(0, 4, int(field.sum()))
    out[field] = np.clip(225 + noise, 0, 255).astype(np.uint8)
    return out


def write_png(path, pixels) -> Path:
    Image.fromarray(pixels).save(path)
    return Path(path)


def write_png16(path, pixels) -> Path:
    """A 16-bit grey PNG using the full 16-bit range (values far above 255)."""
    Image.fromarray(pixels.astype(np.uint16) * 257).save(path)
    return Path(path)


def write_jpeg(path, pixels, quality: int = 95) -> Path:
    Image.fromarray(pixels).save(path, quality=quality)
    return Path(path)


def write_colour_png(path, pixels, mark: bool = False) -> Path:
    """An RGB PNG of a slightly tinted radiograph (channels differ, but by less than a coloured mark's
    chroma), with a pure red square burned in where `mark` (a viewer's annotation)."""
    rgb = np.stack([pixels, (pixels * 0.95).astype(np.uint8), (pixels * 0.85).astype(np.uint8)], -1)
    if mark:
        rgb[20:40, 20:40] = (255, 0, 0)
    Image.fromarray(rgb, "RGB").save(path)
    return Path(path)


def write_nrrd(path, pixels, spacing=(0.18, 0.25), origin=(-12.5, 30.0)) -> Path:
    """A 2D NRRD (int16) with its own pixel spacing (x = columns, y = rows) and origin."""
    image = sitk.GetImageFromArray(pixels.astype(np.int16) * 4)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    sitk.WriteImage(image, str(path), True)
    return Path(path)


def dx_dataset(path, modality: str, patient_name: str, patient_id: str) -> FileDataset:
    """An empty DX-for-presentation dataset (explicit VR little endian) with new UIDs and a patient,
    for a test to fill with pixels."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # DX for presentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.PatientName, ds.PatientID = modality, patient_name, patient_id
    return ds


def write_dicom(path, pixels, pixel_spacing=(0.2, 0.15), photometric: str = "MONOCHROME2") -> Path:
    """A DX DICOM (12 bits stored, explicit VR little endian) with PixelSpacing (row, column) in mm.
    MONOCHROME1 stores the image inverted (bright = low values), as some detectors do."""
    stored = pixels.astype(np.uint16) * 16
    if photometric == "MONOCHROME1":
        stored = 4095 - stored
    ds = dx_dataset(path, "DX", "Synthetic^Patient", "SYNTH-0001")
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelSpacing = [f"{s:g}" for s in pixel_spacing]
    ds.PixelData = stored.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return Path(path)


def normals_folder(folder, seeds) -> Path:
    """A folder of synthetic normals, one PNG per seed."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        write_png(folder / f"normal_{seed:03d}.png", radiograph(seed))
    return folder


def sslanomaly(*args, cwd=REPO) -> subprocess.CompletedProcess:
    """The installed command line, run as a user runs it (progress bars off: TQDM_DISABLE, conftest),
    in the repository unless `cwd` says otherwise."""
    return subprocess.run([str(SSLANOMALY), *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300)


def printed_threshold(r: subprocess.CompletedProcess) -> float:
    """The threshold `sslanomaly calibrate` says it wrote."""
    return float(re.search(r"threshold (\S+) \(pixel threshold", r.stdout)[1])


def loaded(model) -> AnomalyDetector:
    """A detector on the CPU with the threads detection uses (a core left free: on 2 busy cores, two
    torch threads make a small image many times slower)."""
    detector = AnomalyDetector.load(model, device="cpu")
    detector.limit_cpu_threads()
    return detector


def read_heatmap(path):
    """A heatmap NRRD decoded as README says (uint8 codes times its `heatmap_scale`): the image, the
    values and the scale (one code step)."""
    image = sitk.ReadImage(str(path))
    scale = float(image.GetMetaData("heatmap_scale"))
    return image, sitk.GetArrayFromImage(image).astype(np.float64) * scale, scale
