"""The DICOM SEG and SR of a radiograph over 5000 pixels a side, which is read with 2 x 2 blocks
averaged (core/reading/shrink.py): they describe the source's own pixels, a finding's box scaled back."""

import highdicom as hd
import numpy as np
import pytest
from PIL import Image

from messy_corpus import write_dicom
from slicer_cases import TEST_FPR, empty_scene, full_resolution_radiograph, logic, model  # noqa: F401 (fixture)

ROWS, COLS = 5010, 640  # read at 2505 x 320
BOX = [10, 100, 60, 300]  # a reader's box on the reduced grid: source columns 20-121, rows 200-601


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    empty_scene()
    folder = tmp_path_factory.mktemp("reduced")
    pixels = np.asarray(Image.open(full_resolution_radiograph()).convert("L").resize((COLS, ROWS)), np.uint16) * 16
    lg = logic()
    volume = lg.loadVolume(write_dicom(folder / "long.dcm", pixels))
    assert volume.GetImageData().GetDimensions()[:2] == (COLS // 2, ROWS // 2)
    lg.detect(volume, model=str(model), falsePositiveRate=TEST_FPR)
    for node in lg.findingNodes(volume):
        lg.rejectFinding(node)
    lg.addMissedFinding(volume, BOX, label="nodule")
    return lg.exportCase(volume, folder / "out", formats=["dicom"])


def test_the_seg_of_a_reduced_image_covers_the_source_pixel_for_pixel(exported):
    """Before, the export failed whole with highdicom's "Arguments 'plane_positions' and 'pixel_measures'
    must be provided if the shape of the input pixel_array does not match shape of the source image"."""
    seg = hd.seg.segread(exported["dicom_seg"])
    assert (seg.Rows, seg.Columns) == (ROWS, COLS)
    expected = np.zeros((ROWS, COLS), bool)
    expected[200:602, 20:122] = True
    assert seg.SegmentSequence[0].SegmentLabel.endswith("nodule")  # the others were rejected: no segment
    np.testing.assert_array_equal(seg.pixel_array.reshape(ROWS, COLS), expected)


def test_the_sr_region_of_a_reduced_image_is_in_the_source_pixels(exported):
    group, = hd.sr.srread(exported["dicom_sr"]).content.get_planar_roi_measurement_groups()
    np.testing.assert_array_equal(group.roi.value, [[20, 200], [122, 200], [122, 602], [20, 602], [20, 200]])
