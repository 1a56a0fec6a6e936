"""The pixels a segmentation (Slicer .seg.nrrd, DICOM SEG) gives each reviewed finding are the region
detection made: suspicious heat inside the lung fields within the finding's box, never heat on a
marker or the shoulder that the box happens to hold."""

import numpy as np

from SSLAnomalyLib.core.results.segments import finding_masks

THRESHOLD = 1.0


def record(box, origin="model", extent="focal", status="unreviewed"):
    return {"bbox_ijk": box, "slice_index": 0, "origin": origin, "extent": extent, "status": status}


def scene():
    """A 1 x 40 x 40 heatmap: one hot block astride the right lung field's outer edge (columns 8-15,
    the lung field starting at column 12) and the lungs as two fields."""
    heat = np.zeros((1, 40, 40), np.float32)
    heat[0, 10:20, 8:16] = 3.0
    lungs = np.zeros((1, 40, 40), np.uint8)
    lungs[0, 5:35, 12:18] = 1
    lungs[0, 5:35, 22:28] = 1
    return heat, lungs


def test_a_model_finding_leaves_out_heat_outside_the_lung_fields():
    heat, lungs = scene()
    (_, mask, _), = finding_masks(heat, [record([8, 10, 15, 19])], THRESHOLD, lungs)
    assert mask.sum() == 10 * 4 and mask[0, 10:20, 12:16].all()
    assert not mask[lungs == 0].any()


def test_a_diffuse_finding_is_the_lung_fields_in_its_box():
    heat, lungs = scene()
    (_, mask, _), = finding_masks(heat, [record([0, 0, 39, 39], extent="diffuse")], THRESHOLD, lungs)
    np.testing.assert_array_equal(mask, lungs > 0)


def test_boxes_off_the_heat_drawn_by_the_reader_or_without_lung_fields_keep_their_box():
    heat, lungs = scene()
    moved, drawn, rejected = (record([30, 30, 33, 33]), record([0, 0, 3, 3], origin="reader"),
                              record([8, 10, 15, 19], status="rejected"))
    masks = finding_masks(heat, [moved, drawn, rejected], THRESHOLD, lungs)
    assert [m.record for m in masks] == [moved, drawn]
    assert [int(m.mask.sum()) for m in masks] == [16, 16]
    assert [m.whole_box for m in masks] == [True, False]  # the moved one: no cut at the threshold made it
    (_, whole, _), = finding_masks(heat, [record([8, 10, 15, 19])], THRESHOLD)  # no lung fields: the heat in the box
    assert whole.sum() == 10 * 8


def test_a_model_finding_the_slider_hid_has_no_mask_not_its_whole_box():
    """The reader never saw it: a whole-box segment would draw a region they were never shown."""
    heat, lungs = scene()
    hidden, kept = record([8, 10, 15, 19]), record([30, 30, 33, 33], status="confirmed")
    masks = finding_masks(heat, [dict(hidden, shown=False), dict(kept, shown=True)], 2 * heat.max(), lungs)
    assert [m.record["bbox_ijk"] for m in masks] == [kept["bbox_ijk"]]
