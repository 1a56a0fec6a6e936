"""A NRRD whose rows and columns are swapped against its display (its direction turns it a quarter, or
mirrors it across the diagonal) is shown upright by Slicer and every viewer. `detect` scored it as
stored, a chest lying on its side (a TB radiograph 5.1 against 2.6 upright, lung fields "not
plausible"), and drew its overlay sideways. Its score, heatmap, lung fields, findings and overlay are
now the upright file's, on the file's own grid and geometry."""

import json

import numpy as np
import SimpleITK as sitk
from PIL import Image

from slicer_cases import tb_radiograph
from SSLAnomalyLib.cli import main

SPACING = (0.2, 0.3)  # columns, rows of the upright image: anisotropic, so a swapped aspect shows
ORIGIN = (12.0, -40.0)


def write_nrrd(path, pixels, spacing, origin, direction):
    image = sitk.GetImageFromArray(np.ascontiguousarray(pixels))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(np.ravel(direction).tolist())
    sitk.WriteImage(image, str(path))
    return image


def outputs(out, name):
    heat = sitk.ReadImage(str(out / f"{name}.heatmap.nrrd"))
    lungs = sitk.GetArrayFromImage(sitk.ReadImage(str(out / f"{name}.lungs.nrrd")))
    overlay = np.asarray(Image.open(out / f"{name}.overlay.png"), np.int16)
    return heat, lungs, overlay, json.loads((out / f"{name}.findings.json").read_text())


def test_a_quarter_turned_file_is_scored_and_drawn_as_shown(default_model, tmp_path):
    upright = np.asarray(Image.open(tb_radiograph()).convert("L"))[:, 40:460]  # 512 rows x 420 columns
    rows, cols = upright.shape
    sx, sy = SPACING
    inputs = tmp_path / "in"
    inputs.mkdir()
    files = {"upright": write_nrrd(inputs / "upright.nrrd", upright, SPACING, ORIGIN, np.eye(2)),
             # file (i, j) is upright (j, i): i runs down the patient, j across
             "transposed": write_nrrd(inputs / "transposed.nrrd", upright.T, (sy, sx), ORIGIN, [[0, 1], [1, 0]]),
             # np.rot90: file (i, j) is upright (cols - 1 - j, i)
             "turned": write_nrrd(inputs / "turned.nrrd", np.rot90(upright), (sy, sx),
                                  (ORIGIN[0] + (cols - 1) * sx, ORIGIN[1]), [[0, -1], [1, 0]])}
    out = tmp_path / "out"
    assert main(["detect", "--model", str(default_model), "--out", str(out), "--lungs", "--fpr", "0.5", "--quiet",
                 *(str(inputs / f"{name}.nrrd") for name in files)]) == 0
    heat0, lungs0, overlay0, doc0 = outputs(out, "upright")
    assert doc0["findings"], "the TB radiograph should have findings at the lowered threshold"
    codes0 = sitk.GetArrayFromImage(heat0).astype(int)
    as_upright = {"transposed": lambda a: a.T, "turned": lambda a: np.rot90(a, -1)}
    boxes = {"transposed": lambda i0, j0, i1, j1: [j0, i0, j1, i1],
             "turned": lambda i0, j0, i1, j1: [j0, cols - 1 - i1, j1, cols - 1 - i0]}
    for name in ("transposed", "turned"):
        heat, lungs, overlay, doc = outputs(out, name)
        given = files[name]
        assert heat.GetSize() == given.GetSize() and heat.GetSpacing() == given.GetSpacing()
        assert heat.GetOrigin() == given.GetOrigin() and heat.GetDirection() == given.GetDirection()
        assert abs(doc["score"] - doc0["score"]) < 1e-4
        assert np.abs(as_upright[name](sitk.GetArrayFromImage(heat).astype(int)) - codes0).max() <= 1
        assert np.array_equal(as_upright[name](lungs), lungs0)
        assert len(doc["findings"]) == len(doc0["findings"])
        for f, f0 in zip(doc["findings"], doc0["findings"]):
            assert f["bbox_ijk"] == boxes[name](*f0["bbox_ijk"])
            np.testing.assert_allclose(f["centroid_ras"], f0["centroid_ras"], atol=1e-2)  # the same place
            assert abs(f["area_mm2"] - f0["area_mm2"]) < 1e-6 * f0["area_mm2"] + 0.01
        assert overlay.shape == overlay0.shape and np.abs(overlay - overlay0).mean() < 1.0
