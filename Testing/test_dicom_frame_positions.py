"""A multi-frame DICOM places each frame by its own ImagePositionPatient (per-frame functional groups).
The reader took the first frame's position and set the frames 1 mm (or SliceThickness) apart along the
plane's normal, whatever their positions said: frames 3 mm apart, or given from the highest position
down, had their heatmap slices and findings' centroid_ras placed where no frame is. Now the frames'
own step sets the slice spacing and direction."""

import json

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from PIL import Image
from pydicom.dataset import Dataset

from conftest import data_dir
from messy_corpus import write_dicom as write_dx
from SSLAnomalyLib.cli import main


def positioned_frames(path, pixels, heights):
    """A multi-frame DX of `pixels` in the axial plane, frame k at z = heights[k] (per-frame groups)."""
    write_dx(path, pixels.astype(np.uint16) * 16, spacing=(0.3, 0.3))
    dataset = pydicom.dcmread(path)
    dataset.ImageOrientationPatient, dataset.SliceThickness = ["1", "0", "0", "0", "1", "0"], "1"
    frames = []
    for z in heights:
        position, frame = Dataset(), Dataset()
        position.ImagePositionPatient = ["-20", "15", str(z)]
        frame.PlanePositionSequence = [position]
        frames.append(frame)
    dataset.PerFrameFunctionalGroupsSequence = frames
    dataset.save_as(path)
    return path


@pytest.mark.parametrize("heights", [(10.0, 13.0, 16.0), (16.0, 13.0, 10.0)])
def test_frames_are_placed_at_their_own_positions(default_model, tmp_path, heights):
    radiographs = sorted(data_dir("tbx11k_dev", "images").iterdir())[:3]
    pixels = np.stack([np.asarray(Image.open(f).convert("L")) for f in radiographs])
    inputs = tmp_path / "in"
    inputs.mkdir()
    positioned_frames(inputs / "frames.dcm", pixels, heights)
    out = tmp_path / "out"
    assert main(["detect", "--model", str(default_model), "--out", str(out), "--fpr", "0.5", "--quiet", "--lungs",
                 str(inputs / "frames.dcm")]) == 0
    for kind in ("heatmap", "lungs"):
        grid = sitk.ReadImage(str(out / f"frames.{kind}.nrrd"))
        for k, z in enumerate(heights):
            assert grid.TransformIndexToPhysicalPoint((0, 0, k)) == pytest.approx((-20.0, 15.0, z))
    findings = json.loads((out / "frames.findings.json").read_text())["findings"]
    assert {f["slice_index"] for f in findings} == {0, 1, 2}
    for f in findings:
        assert f["centroid_ras"][2] == pytest.approx(heights[f["slice_index"]])
