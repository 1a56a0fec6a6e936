"""An offscreen picture of the slice view (Slicer's slice logic and displayable managers, EGL, no
display) shows the heatmap's colours at a finding and the plain grey radiograph where the heatmap
stays below the threshold."""

import numpy as np
import pytest
import slicer

from slicer_cases import TEST_FPR, empty_scene, logic, model, tb_radiograph  # noqa: F401 (fixture)
from SSLAnomalyLib.mrml.heatmap import heatmap_node, view_facing
from SSLAnomalyLib.mrml.render import ras_to_picture, render_slice_view
from SSLAnomalyLib.mrml.volumes import ijk_to_ras_matrix

SIZE = (400, 400)


@pytest.fixture(scope="module")
def rendered(model, tmp_path_factory):
    empty_scene()
    lg = logic()
    volume = lg.loadVolume(tb_radiograph())
    result = lg.detect(volume, model=str(model), falsePositiveRate=TEST_FPR)
    path = tmp_path_factory.mktemp("render") / "view.png"
    return volume, result, render_slice_view(volume, path, size=SIZE), path


def is_grey(pixel) -> bool:
    return int(pixel.max()) - int(pixel.min()) <= 2


def test_picture_is_written_and_fills_the_view(rendered):
    volume, _, picture, path = rendered
    from PIL import Image

    assert picture.shape == (SIZE[1], SIZE[0], 3) and picture.dtype == np.uint8
    np.testing.assert_array_equal(np.asarray(Image.open(path).convert("RGB")), picture)
    assert view_facing(volume) == "Red"
    assert picture.std() > 20, "the radiograph should be visible"


def test_heatmap_colour_at_a_finding_and_grey_radiograph_elsewhere(rendered):
    volume, result, picture, _ = rendered
    strongest = result.findings[0]
    heat = slicer.util.arrayFromVolume(heatmap_node(volume))[strongest.slice_index]
    i0, j0, i1, j1 = strongest.bbox_ijk
    j, i = np.unravel_index(np.argmax(heat[j0:j1 + 1, i0:i1 + 1]), (j1 - j0 + 1, i1 - i0 + 1))
    peak = ijk_to_ras_matrix(volume) @ [i0 + i, j0 + j, strongest.slice_index, 1]  # the finding's hottest pixel
    row, col = ras_to_picture(volume, peak[:3])
    assert 0 <= row < SIZE[1] and 0 <= col < SIZE[0]
    patch = picture[row - 2:row + 3, col - 2:col + 3].reshape(-1, 3).astype(int)
    assert not any(is_grey(p) for p in patch), f"expected heatmap colours at finding {strongest.id}, got {patch[:3]}"
    assert (patch[:, 0] > patch[:, 2]).all(), "inferno's upper half is red/yellow, not blue"

    cold = slicer.util.arrayFromVolume(heatmap_node(volume))[0] < 0.5 * result.pixel_threshold  # uncoloured
    for f in result.findings:  # keep clear of the boxes and their labels
        i0, j0, i1, j1 = f.bbox_ijk
        cold[max(0, j0 - 40):j1 + 41, max(0, i0 - 40):i1 + 41] = False
    candidates = np.argwhere(cold)
    j, i = candidates[len(candidates) // 2]
    ras = ijk_to_ras_matrix(volume) @ [i, j, 0, 1]
    row, col = ras_to_picture(volume, ras[:3])
    assert is_grey(picture[row, col]), f"expected plain radiograph at pixel ({i}, {j}), got {picture[row, col]}"
