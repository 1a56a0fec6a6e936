"""The module's Logic end to end on real MRML: detect on a real radiograph, then the heatmap node,
its display in the slice views, the finding ROIs and table, sensitivity, and a review that
survives a scene bundle round trip into a fresh scene."""

import numpy as np
import pytest
import slicer

from conftest import data_dir
from slicer_cases import TEST_FPR, empty_scene, logic, model, shown_column, tb_radiograph  # noqa: F401 (fixture)
from SSLAnomalyLib.core.results.overlay import HOT_TOP
from SSLAnomalyLib.mrml.finding_rois import finding_nodes, finding_record, seen_record
from SSLAnomalyLib.mrml.headless import HeadlessSlicer
from SSLAnomalyLib.mrml.heatmap import COLOR_NODE_NAME, heatmap_node, slice_composite_nodes, view_facing
from SSLAnomalyLib.mrml.table import COLUMNS, findings_table
from SSLAnomalyLib.mrml.volumes import ijk_to_ras_matrix

CONTRACT = ("id", "label", "score", "bbox_ijk", "centroid_ras", "area_mm2", "slice_index", "extent")


@pytest.fixture
def case(model):
    """A fresh scene with a real radiograph detected by the module's Logic."""
    empty_scene()
    lg = logic()
    volume = lg.loadVolume(tb_radiograph())
    result = lg.detect(volume, model=str(model), falsePositiveRate=TEST_FPR)
    assert result.findings, "the test image should have findings at the lowered threshold"
    return lg, volume, result


def test_heatmap_node_is_on_the_input_grid_with_its_own_colours_as_foreground(case):
    lg, volume, result = case
    heat = heatmap_node(volume)
    np.testing.assert_allclose(ijk_to_ras_matrix(heat), ijk_to_ras_matrix(volume))
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(heat), result.heatmap.pixels)
    display = heat.GetDisplayNode()
    colours = display.GetColorNode()
    assert colours.GetName() == COLOR_NODE_NAME and colours.GetNumberOfColors() == 256
    assert display.GetApplyThreshold() and display.GetLowerThreshold() == pytest.approx(result.pixel_threshold)
    assert display.GetWindowLevelMin() == pytest.approx(result.pixel_threshold)  # red at the threshold
    assert display.GetWindowLevelMax() == pytest.approx(HOT_TOP * result.pixel_threshold)
    composites = slice_composite_nodes()
    assert len(composites) == 3
    for composite in composites:
        assert composite.GetBackgroundVolumeID() == volume.GetID()
        assert composite.GetForegroundVolumeID() == heat.GetID()
        assert composite.GetForegroundOpacity() == pytest.approx(0.5)
    lg.setOpacity(0.8)
    assert all(c.GetForegroundOpacity() == pytest.approx(0.8) for c in composites)
    assert view_facing(volume) == "Red"  # a PNG has no orientation: Slicer shows it in the axial view
    text = lg.resultText(volume)
    assert "Score" in text and "percentile" in text
    assert f"image-level {result.components['pooled']:.3g}" in text


def test_lung_fields_are_a_toggleable_outlined_segment_on_the_input_grid(case):
    from SSLAnomalyLib.mrml.lungs import lung_mask, lung_node

    lg, volume, result = case
    node = lung_node(volume)
    display = node.GetDisplayNode()
    assert display.GetVisibility2DOutline() and not display.GetVisibility2DFill() and display.GetVisibility()
    np.testing.assert_array_equal(lung_mask(volume), result.lungs.pixels)
    assert 0.1 < result.lungs.pixels.mean() < 0.6
    lg.setLungFieldsVisible(volume, False)
    assert not display.GetVisibility()
    lg.setLungFieldsVisible(volume, True)
    assert display.GetVisibility()


def test_markups_and_table_match_the_engines_findings(case):
    lg, volume, result = case
    rois = finding_nodes(volume)
    assert [r.GetClassName() for r in rois] == ["vtkMRMLMarkupsROINode"] * len(result.findings)
    ijk_to_ras = ijk_to_ras_matrix(volume)
    for roi, finding in zip(rois, result.findings):
        record = finding_record(roi)
        assert {k: record[k] for k in CONTRACT} == finding.to_dict()
        assert (record["status"], record["origin"]) == ("unreviewed", "model")
        assert roi.GetName().startswith(f"F{finding.id} ") and roi.GetAttribute("SSLAnomaly.Score")
        i0, j0, i1, j1 = finding.bbox_ijk  # the ROI covers exactly the box's pixels
        corners = ijk_to_ras @ np.array([[i0 - 0.5, j0 - 0.5, 0, 1], [i1 + 0.5, j1 + 0.5, 0, 1]]).T
        bounds = [0.0] * 6
        roi.GetRASBounds(bounds)
        np.testing.assert_allclose(bounds[0:4:2], corners[:2].min(axis=1), atol=1e-6)
        np.testing.assert_allclose(bounds[1:4:2], corners[:2].max(axis=1), atol=1e-6)
    table = findings_table(volume)
    titles = [t for t, _, _ in COLUMNS]
    assert table.GetNumberOfRows() == len(result.findings)
    for row, finding in enumerate(result.findings):
        cell = {t: table.GetCellText(row, titles.index(t)) for t in ("ID", "Label", "i0", "j1", "Status")}
        assert cell == {"ID": str(finding.id), "Label": finding.label, "i0": str(finding.bbox_ijk[0]),
                        "j1": str(finding.bbox_ijk[3]), "Status": "unreviewed"}


def test_sensitivity_hides_weak_unreviewed_findings_but_never_reviewed_ones(case):
    lg, volume, result = case
    assert len(result.findings) >= 2
    rois = lg.findingNodes(volume)
    lg.confirmFinding(rois[-1])  # the weakest
    above_every_peak = float(np.nextafter(result.findings[0].score, np.inf))
    lg.setSensitivity(volume, above_every_peak)
    assert heatmap_node(volume).GetDisplayNode().GetLowerThreshold() == pytest.approx(above_every_peak)
    visible = [bool(r.GetDisplayNode().GetVisibility()) for r in rois]
    assert visible == [False] * (len(rois) - 1) + [True]
    assert [r["shown"] for r in lg.findings(volume)] == visible == shown_column(volume)  # what the reader sees, said
    lg.setSensitivity(volume, result.pixel_threshold)
    assert all(r.GetDisplayNode().GetVisibility() for r in rois)
    assert all(r["shown"] for r in lg.findings(volume)) and all(shown_column(volume))
    low, high, value = lg.sensitivityRange(volume)
    assert value == pytest.approx(result.pixel_threshold) and low <= value <= high


def test_a_finding_the_slider_hid_shows_once_reviewed_from_the_table_and_hides_once_undone(case):
    """The table lists every finding: one the slider hid and the reader confirms there is theirs, never hidden,
    and exported as shown, so the views show it too; set back to unreviewed, untouched, it hides again."""
    lg, volume, result = case
    lg.setSensitivity(volume, float(np.nextafter(result.findings[0].score, np.inf)))  # hides every finding
    weakest = lg.findingAtRow(volume, len(result.findings) - 1)
    lg.confirmFinding(weakest)
    assert weakest.GetDisplayNode().GetVisibility()
    lg.reviewFinding(weakest, status="unreviewed")
    assert not weakest.GetDisplayNode().GetVisibility()


def test_review_survives_a_scene_bundle_round_trip_into_a_fresh_scene(case, tmp_path):
    lg, volume, result = case
    first = lg.findingNodes(volume)[0]
    lg.rejectFinding(first)
    lg.reviewFinding(first, note="rib crossing; not a lesion")
    if len(result.findings) > 1:
        lg.reviewFinding(lg.findingNodes(volume)[1], status="confirmed", label="consolidation")
    added = lg.addMissedFinding(volume, [40, 60, 90, 120], label="nodule", note="missed; left apex")
    before = lg.findings(volume)
    assert before[-1]["origin"] == "reader" and before[-1]["status"] == "confirmed"
    table_before = findings_table(volume).GetNumberOfRows()
    bundle = lg.saveScene(tmp_path / "review.mrb")
    with pytest.raises(FileExistsError):
        lg.saveScene(bundle)

    with HeadlessSlicer() as fresh:  # a second application, never installed: only the file connects them
        assert fresh.scene.ReadFromMRB(str(bundle))
        reloaded = fresh.scene.GetFirstNode(volume.GetName(), "vtkMRMLScalarVolumeNode")
        after = [seen_record(node) for node in finding_nodes(reloaded)]
        assert after == before
        assert finding_nodes(reloaded)[-1].GetName() == added.GetName()
        assert findings_table(reloaded).GetNumberOfRows() == table_before
        heat = heatmap_node(reloaded)
        assert heat.GetDisplayNode().GetColorNode().GetName() == COLOR_NODE_NAME
        composite = fresh.scene.GetSingletonNode("Red", "vtkMRMLSliceCompositeNode")
        assert composite.GetForegroundVolumeID() == heat.GetID()


def test_loading_a_file_that_is_no_scene_bundle_keeps_the_scene_and_its_review(case, tmp_path):
    """Loading a scene replaces the current one: a file that cannot be loaded must be refused
    before anything of the reader's unsaved review is cleared."""
    import zipfile

    lg, volume, _ = case
    lg.reviewFolder = None
    lg.reviewFinding(lg.findingNodes(volume)[0], status="rejected", note="unsaved decision")
    before = lg.findings(volume)
    (tmp_path / "notes.mrb").write_text("not a bundle")
    (tmp_path / "truncated.mrb").write_bytes(lg.saveScene(tmp_path / "good.mrb").read_bytes()[:2000])
    with zipfile.ZipFile(tmp_path / "no_scene.mrb", "w") as z:
        z.writestr("readme.txt", "a zip without a scene")
    for bad in ("notes.mrb", "truncated.mrb", "no_scene.mrb"):
        with pytest.raises(OSError, match=bad):
            lg.loadScene(tmp_path / bad)
        assert slicer.mrmlScene.IsNodePresent(volume) and lg.findings(volume) == before


def test_a_table_row_reviews_the_finding_it_shows_after_an_roi_was_deleted_by_hand(case):
    """The panel reviews the finding of the selected table row. An ROI deleted in the Data module
    left the table a row longer until it was rebuilt: it now leaves the table at once, and a row still
    reaches the finding it shows, never its neighbour; a row past the findings is refused."""
    lg, volume, _ = case
    lg.reviewFolder = None
    lg.addMissedFinding(volume, [40, 60, 90, 120], label="nodule")
    lg.addMissedFinding(volume, [140, 160, 190, 220], label="mass")
    first, *rest = lg.findingNodes(volume)
    slicer.mrmlScene.RemoveNode(first)
    assert findings_table(volume).GetNumberOfRows() == len(rest) == len(lg.findings(volume))
    for row, node in enumerate(rest):
        assert lg.findingAtRow(volume, row) is node
    with pytest.raises(ValueError, match=f"row {len(rest) + 1}"):
        lg.findingAtRow(volume, len(rest))


def test_a_note_pasted_with_control_characters_leaves_the_scene_loadable(case, tmp_path):
    """Text pasted from a word processor or a terminal can hold a vertical tab, a form feed or an
    escape: none is allowed in the scene's XML, and one of them made the saved bundle unreadable."""
    lg, volume, _ = case
    lg.reviewFolder = None
    lg.reviewFinding(lg.findingNodes(volume)[0], label="consolidation\x0bright", note="see\x0cprior\x1b[0m\tfilm\x01")
    lg.addMissedFinding(volume, [40, 60, 90, 120], label="nodule", note="line one\x0bline two")
    before = lg.findings(volume)
    assert all(c.isprintable() or c in "\r\n" for r in before for c in r["label"] + r["note"])
    bundle = lg.saveScene(tmp_path / "review.mrb")
    with HeadlessSlicer() as fresh:
        assert fresh.scene.ReadFromMRB(str(bundle)), "the saved scene does not load"
        reloaded = fresh.scene.GetFirstNode(volume.GetName(), "vtkMRMLScalarVolumeNode")
        assert [seen_record(node) for node in finding_nodes(reloaded)] == before


THREE_FINDING_FPR = 0.3


@pytest.fixture
def three_finding_case(model):
    """A bilateral pneumonia on which the bundled model makes three findings at a 30 % false-positive
    rate (lower thresholds merge each lung into one region)."""
    empty_scene()
    lg = logic()
    volume = lg.loadVolume(data_dir("kermany_fullres", "pneumonia") / "person313_bacteria_1460.jpeg")
    return lg, volume, lg.detect(volume, model=str(model), falsePositiveRate=THREE_FINDING_FPR)


def test_detecting_again_keeps_every_touched_finding_and_adds_no_duplicates(three_finding_case, model):
    lg, volume, result = three_finding_case
    assert len(result.findings) >= 3
    rejected, annotated, moved = lg.findingNodes(volume)[:3]
    lg.rejectFinding(rejected)
    lg.reviewFinding(annotated, note="look again next visit")  # still unreviewed, but annotated
    center = list(moved.GetCenter())
    moved.SetCenter(center[0] + 5, center[1], center[2])       # the reader dragged the box
    lg.addMissedFinding(volume, label="nodule")
    kept = {n.GetID(): lg.findings(volume)[i] for i, n in enumerate(lg.findingNodes(volume)) if n in (rejected, annotated, moved)}
    lg.detect(volume, model=str(model), falsePositiveRate=THREE_FINDING_FPR)
    records = lg.findings(volume)
    assert len(records) == len(result.findings) + 1  # a moved box is still the finding the engine made
    for node in (rejected, annotated, moved):
        assert slicer.mrmlScene.IsNodePresent(node) and seen_record(node) == kept[node.GetID()]
    assert len({r["id"] for r in records}) == len(records)
    assert findings_table(volume).GetNumberOfRows() == len(records)


def test_every_review_decision_is_autosaved_and_restores_after_a_crash(case, model, tmp_path):
    from SSLAnomalyLib.core.results.review import load_review

    lg, volume, _ = case
    lg.reviewFolder = tmp_path
    lg.rejectFinding(lg.findingNodes(volume)[0])
    lg.reviewFinding(lg.findingNodes(volume)[1], label="consolidation", note="dense")
    lg.addMissedFinding(volume, [40, 60, 90, 120], label="nodule", note="left apex")
    saved = load_review(lg.savedReview(volume))
    assert as_exported(saved["findings"]) == lg.findings(volume) and saved["model"] == lg.caseResult(volume)["model"]

    empty_scene()  # Slicer crashed: the scene and its nodes are gone, the autosave is not
    again = logic()
    again.reviewFolder = tmp_path
    volume = again.loadVolume(tb_radiograph())
    again.detect(volume, model=str(model), falsePositiveRate=TEST_FPR)
    assert again.restoreReview(volume) == len(saved["findings"])
    assert again.findings(volume) == as_exported(saved["findings"])
    assert findings_table(volume).GetNumberOfRows() == len(saved["findings"])


def as_exported(saved_findings: list[dict]) -> list[dict]:
    """A review file's findings as `logic.findings` gives them at the calibrated threshold, where each shows: without
    what only the restore reads (the detector's label and box), with `shown`."""
    return [dict({k: v for k, v in f.items() if not k.startswith("engine_")}, shown=True) for f in saved_findings]


def test_a_moved_box_or_a_relabel_alone_survives_a_crash(three_finding_case, model, tmp_path):
    """Neither a decision nor a note: the reader only dragged one box and renamed another. Restored onto
    the same detection the box goes back where the reader put it (it is matched by the detector's box);
    restored onto a detection that no longer makes them, both are put back."""
    lg, volume, _ = three_finding_case
    lg.reviewFolder = tmp_path
    moved, relabelled = lg.findingNodes(volume)[:2]
    center = list(moved.GetCenter())
    moved.SetCenter(center[0] + 6, center[1] + 4, center[2])  # the reader dragged the box
    lg.reviewFinding(relabelled, label="atelectasis")            # autosaves both
    touched = {r["id"]: r for r in lg.findings(volume)[:2]}
    path = lg.savedReview(volume)

    for fpr in (THREE_FINDING_FPR, TEST_FPR):  # the same detection, then one at another threshold
        empty_scene()  # Slicer crashed
        again = logic()
        again.reviewFolder = tmp_path
        volume = again.loadVolume(data_dir("kermany_fullres", "pneumonia") / "person313_bacteria_1460.jpeg")
        again.detect(volume, model=str(model), falsePositiveRate=fpr)
        again.restoreReview(volume, path)
        restored = {tuple(r["bbox_ijk"]): r for r in again.findings(volume)}
        for saved in touched.values():
            got = restored[tuple(saved["bbox_ijk"])]
            assert (got["label"], got["status"], got["origin"]) == (saved["label"], saved["status"], "model")


def test_restoring_a_review_again_adds_no_twin_of_a_finding_the_reader_drew_and_moved(case, model, tmp_path):
    """A reader's finding is the same finding by its box as it is now, on both sides of a restore."""
    lg, volume, _ = case
    lg.reviewFolder = tmp_path
    drawn = lg.addMissedFinding(volume, [40, 60, 90, 120], label="nodule")
    center = list(drawn.GetCenter())
    drawn.SetCenter(center[0] + 6, center[1] + 4, center[2])  # the reader moved the box drawn
    lg.reviewFinding(drawn, note="on the nodule now")  # autosaves
    before = lg.findings(volume)
    lg.restoreReview(volume)
    assert lg.findings(volume) == before


def test_restoring_onto_a_detection_at_another_threshold_drops_no_decision(three_finding_case, model, tmp_path):
    """After a crash the image is detected again, perhaps with another model or threshold, so the model's
    boxes differ: a saved decision or note on a box the new detection lacks is put back, not dropped
    (the next autosave would otherwise erase it for good)."""
    lg, volume, _ = three_finding_case
    lg.reviewFolder = tmp_path
    lg.reviewFinding(lg.findingNodes(volume)[0], status="rejected", note="rib crossing, not a lesion")
    lg.reviewFinding(lg.findingNodes(volume)[1], note="compare with last year's film")
    decided = [r for r in lg.findings(volume) if r["status"] != "unreviewed" or r["note"]]

    empty_scene()  # Slicer crashed
    again = logic()
    again.reviewFolder = tmp_path
    volume = again.loadVolume(data_dir("kermany_fullres", "pneumonia") / "person313_bacteria_1460.jpeg")
    again.detect(volume, model=str(model), falsePositiveRate=TEST_FPR)  # other thresholds, other boxes
    assert not {tuple(r["bbox_ijk"]) for r in decided} <= {tuple(r["bbox_ijk"]) for r in again.findings(volume)}
    assert again.restoreReview(volume) >= len(decided)
    restored = {tuple(r["bbox_ijk"]): r for r in again.findings(volume)}
    for saved in decided:
        got = restored[tuple(saved["bbox_ijk"])]
        assert (got["status"], got["note"], got["label"], got["origin"]) == \
               (saved["status"], saved["note"], saved["label"], saved["origin"])
    ids = [r["id"] for r in again.findings(volume)]
    assert len(set(ids)) == len(ids) and findings_table(volume).GetNumberOfRows() == len(ids)


def test_the_autosaved_review_is_found_for_the_same_image_under_another_name(case, tmp_path):
    """Reviews are keyed by the image: the same radiograph loaded from Slicer's DICOM browser
    ("1: DX CHEST PA") or from its file, or a renamed volume, is offered its saved review."""
    lg, volume, _ = case
    lg.reviewFolder = tmp_path
    lg.rejectFinding(lg.findingNodes(volume)[0])
    saved = lg.savedReview(volume)
    volume.SetName("1: DX CHEST PA")
    assert lg.savedReview(volume) == saved
    assert lg.restoreReview(volume) == len(lg.findings(volume))


def test_a_review_is_never_restored_onto_another_image_of_the_same_name(case, model, tmp_path):
    """DICOM-browser names repeat across patients: two volumes named alike hold different images."""
    from SSLAnomalyLib.core.results.review import ReviewError

    lg, volume, _ = case
    lg.reviewFolder = tmp_path
    lg.rejectFinding(lg.findingNodes(volume)[0])
    saved = lg.savedReview(volume)
    other = lg.loadVolume(sorted(data_dir("kermany_fullres", "pneumonia").iterdir())[0])
    other.SetName(volume.GetName())
    lg.detect(other, model=str(model), falsePositiveRate=TEST_FPR)
    assert lg.savedReview(other) is None  # nothing is offered for the other image
    with pytest.raises(ReviewError, match="another image"):
        lg.restoreReview(other, saved)  # not even when the file is named explicitly
    assert all(f["status"] == "unreviewed" for f in lg.findings(other))


def test_a_volume_is_scored_slice_by_slice_and_overlaid_in_every_view(model, tmp_path):
    """Three real radiographs stacked into one 3D volume stand in for a multi-slice input."""
    import SimpleITK as sitk
    from PIL import Image

    from conftest import data_dir

    files = sorted(data_dir("kermany", "val", "normal").iterdir())[:3]
    stack = np.stack([np.asarray(Image.open(f).convert("L")) for f in files])
    image = sitk.GetImageFromArray(stack)
    image.SetSpacing((0.7, 0.7, 5.0))
    sitk.WriteImage(image, str(tmp_path / "stack.nrrd"))
    empty_scene()
    lg = logic()
    volume = lg.loadVolume(tmp_path / "stack.nrrd")
    result = lg.detect(volume, model=str(model), falsePositiveRate=TEST_FPR)
    heat = heatmap_node(volume)
    assert heat.GetImageData().GetDimensions() == volume.GetImageData().GetDimensions() == (224, 224, 3)
    assert len(result.slice_scores) == 3
    assert {f["slice_index"] for f in lg.findings(volume)} <= {0, 1, 2}
    assert all(c.GetForegroundVolumeID() == heat.GetID() for c in slice_composite_nodes())


def test_the_logic_loads_a_model_folder_written_again_and_keeps_one_detector_for_it(tmp_path):
    """The panel's detector cache was keyed by the folder's path: a site model trained again (--overwrite)
    kept being scored with the old one; keyed by the folder's state, the replaced one is dropped too."""
    import shutil

    from SSLAnomalyLib.core.model_files.model_folder import resolve

    lg, folder = logic(), tmp_path / "site-model"
    shutil.copytree(resolve("pediatric"), folder)
    first = lg.loadDetector(str(folder), device="cpu")
    assert lg.loadDetector(str(folder), device="cpu") is first
    shutil.rmtree(folder)
    shutil.copytree(resolve("adult"), folder)
    second = lg.loadDetector(str(folder), device="cpu")
    assert second.model_id != first.model_id and len(lg._detectors) == 1
