"""The scene under hostile use: names a reader or a DICOM header gives, scene bundles that Slicer cannot read,
nodes a reader deletes, clones or picks as input. What the reader made (findings, decisions, notes) is never
lost, nor put on another image, and every refusal names the node and the reason."""

import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import slicer

from slicer_cases import (TEST_FPR, empty_scene, logic, model, shown_column, tb_radiograph,  # noqa: F401 (fixture)
                          write_dicom_dx)
from SSLAnomalyLib.core.files.errors import PathError, ReadError
from SSLAnomalyLib.mrml.clones import derived_nodes
from SSLAnomalyLib.mrml.finding_rois import finding_nodes, finding_record, seen_record
from SSLAnomalyLib.mrml.headless import HeadlessSlicer
from SSLAnomalyLib.mrml.heatmap import heatmap_node
from SSLAnomalyLib.mrml.lungs import lung_mask, lung_node
from SSLAnomalyLib.mrml.volumes import ijk_to_ras_matrix


@pytest.fixture
def case(model):
    """A fresh scene with a real radiograph detected by the module's Logic (autosave off)."""
    empty_scene()
    lg = logic()
    lg.reviewFolder = None
    volume = lg.loadVolume(tb_radiograph())
    lg.detect(volume, model=str(model), falsePositiveRate=TEST_FPR)
    assert lg.findingNodes(volume)
    return lg, volume


def test_a_name_with_an_ampersand_leaves_the_scene_bundle_readable(case, tmp_path):
    """Slicer writes a node's data file name into the scene file with a bare '&' (named after the node): a finding
    relabelled 'mass & effusion', or a volume named from a DICOM series 'CHEST PA & LAT', made a bundle that
    Slicer could not read, the review in it with it."""
    lg, volume = case
    volume.SetName("CHEST PA & LAT")
    lg.reviewFinding(lg.findingNodes(volume)[0], status="confirmed", label="mass & effusion", note="R&L")
    before = lg.findings(volume)
    bundles = [lg.saveScene(tmp_path / "review.mrb"), lg.exportCase(volume, tmp_path / "out", formats=["mrb"])["mrb"]]
    for bundle in bundles:
        with HeadlessSlicer() as fresh:
            assert fresh.scene.ReadFromMRB(str(bundle)), bundle
            reloaded = fresh.scene.GetFirstNode("CHEST PA & LAT", "vtkMRMLScalarVolumeNode")
            assert [seen_record(node) for node in finding_nodes(reloaded)] == before
    assert lg.findingNodes(volume)[0].GetName().endswith("mass & effusion")  # names are the reader's still


def test_a_scene_bundle_slicer_cannot_parse_is_refused_before_the_scene_is_cleared(case, tmp_path):
    """Slicer clears the scene before it reads a bundle: one whose scene file is no XML it can parse (written
    with a bare '&' by an earlier save, or damaged) left an empty scene, the reader's unsaved review gone."""
    lg, volume = case
    lg.reviewFinding(lg.findingNodes(volume)[0], status="rejected", note="unsaved decision")
    before = lg.findings(volume)
    with zipfile.ZipFile(lg.saveScene(tmp_path / "good.mrb")) as good, \
            zipfile.ZipFile(tmp_path / "bare_ampersand.mrb", "w") as bad:
        for item in good.infolist():
            data = good.read(item)
            bad.writestr(item, data.replace(b' name="', b' name="R&L ', 1) if item.filename.endswith(".mrml") else data)
    with pytest.raises(OSError, match=r"bare_ampersand\.mrb: its scene file .*\.mrml is not readable XML"):
        lg.loadScene(tmp_path / "bare_ampersand.mrb")
    assert slicer.mrmlScene.IsNodePresent(volume) and lg.findings(volume) == before


def test_a_batch_of_scene_volumes_never_replaces_another_images_results_of_the_same_name(model, tmp_path):
    """A scene volume's batch input is its name, and volume names repeat across patients ('IM-0001'): with
    Overwrite (or resume), the batch of another patient's 'IM-0001' replaced the results already in the folder,
    which a file batch refuses. It is refused, naming it; the same image again is redone in place."""
    empty_scene()
    lg = logic()
    first = lg.loadVolume(tb_radiograph())
    first.SetName("IM-0001")
    [row] = lg.detectBatch(None, tmp_path / "out", model=str(model))
    written = {kind: Path(path).read_bytes() for kind, path in row["files"].items()}
    empty_scene()
    other = lg.loadVolume(sorted(tb_radiograph().parent.iterdir())[1])
    other.SetName("IM-0001")
    for options in ({"overwrite": True}, {"resume": True}):
        with pytest.raises(PathError, match=r"other images.*'IM-0001' of .*tb0003.png \(another image\)"):
            lg.detectBatch(None, tmp_path / "out", model=str(model), **options)
        assert {kind: Path(path).read_bytes() for kind, path in row["files"].items()} == written
    slicer.mrmlScene.RemoveNode(other)
    lg.loadVolume(tb_radiograph()).SetName("IM-0001")
    assert "files" in lg.detectBatch(None, tmp_path / "out", model=str(model), overwrite=True)[0]


def test_a_dicom_batched_as_its_file_then_as_a_scene_volume_is_the_same_image(model, tmp_path):
    """The command line and a file batch name a DICOM by its SOP Instance UID; a scene volume loaded from that
    file was named by its pixels, so its batch into the file batch's folder was refused as another image's (the
    README's console block did just that). The volume carries its UIDs: the same image is redone in place."""
    empty_scene()
    lg = logic()
    dicom = write_dicom_dx(tb_radiograph(), tmp_path / "IM-0001.dcm")
    [first] = lg.detectBatch(str(dicom), tmp_path / "out", model=str(model))
    assert "error" not in first
    lg.loadVolume(str(dicom)).SetName("IM-0001")
    [again] = lg.detectBatch(None, tmp_path / "out", model=str(model), overwrite=True)
    assert "error" not in again and again["files"].keys() == first["files"].keys()
    assert not (tmp_path / "out" / "set_aside").exists()  # every file of the case written again, its record too



def test_a_heatmap_chosen_as_the_input_is_refused_naming_it(case):
    """The panel's input list holds every scalar volume, the module's heatmaps too: Detect on one scored the
    anomaly map as if it were a radiograph and put a heatmap of the heatmap, with findings, over the image."""
    lg, volume = case
    heat = heatmap_node(volume)
    nodes = slicer.mrmlScene.GetNumberOfNodes()
    with pytest.raises(ReadError, match=f"'{heat.GetName()}'.*anomaly heatmap this module made"):
        lg.detect(heat, model="default")
    assert slicer.mrmlScene.GetNumberOfNodes() == nodes and lg.findingNodes(heat) == []


def test_deleting_a_clone_of_a_volume_or_the_volume_itself_keeps_the_review_on_the_other(case):
    """Slicer's Clone (Data module) copies a volume's node references, so the clone refers to the original's
    heatmap, findings and table: deleting the clone took the original's reviewed findings along with it."""
    lg, volume = case
    lg.reviewFinding(lg.findingNodes(volume)[0], status="confirmed", note="seen on the clone's original")
    before = lg.findings(volume)

    slicer.mrmlScene.RemoveNode(clone(volume))
    assert lg.findings(volume) == before and lg.caseResult(volume) is not None
    kept = clone(volume)
    slicer.mrmlScene.RemoveNode(volume)
    assert lg.findings(kept) == before and lg.caseResult(kept) is not None
    slicer.mrmlScene.RemoveNode(kept)  # the last one takes them along
    assert not slicer.mrmlScene.GetNodesByClass("vtkMRMLMarkupsROINode").GetNumberOfItems()


def clone(volume):
    """A clone of `volume` as vtkSlicerSubjectHierarchyModuleLogic::CloneSubjectHierarchyItem makes it."""
    copy = slicer.mrmlScene.AddNewNodeByClass(volume.GetClassName())
    copy.Copy(volume)
    copy.SetName(f"{volume.GetName()} Copy")
    return copy


def test_a_clone_whose_geometry_is_edited_gets_its_own_results_on_its_pixels_and_the_original_keeps_its(case, tmp_path):
    """A clone shares its original's heatmap, lung fields and findings. Its spacing edited, they stayed on the
    original's geometry, over other pixels of the clone (no one watched it), and exporting the clone moved the shared
    boxes onto its grid under the original: the original's [268, 60, 379, 351] became [511, 120, 511, 511]. Deleting the
    original, then editing the clone that kept the results, left them where they were too."""
    lg, volume = case
    lg.reviewFinding(lg.findingNodes(volume)[0], status="confirmed", note="seen on the clone's original")
    before, lungs, grid = lg.findings(volume), lung_mask(volume), ijk_to_ras_matrix(volume)
    copy = clone(volume)
    copy.SetSpacing(2.0, 2.0, 1.0)
    lg.exportCase(copy, tmp_path / "clone", formats=["json"])
    assert lg.findings(volume) == before and ijk_to_ras_matrix(heatmap_node(volume)).tolist() == grid.tolist()
    assert {n.GetID() for n in lg.findingNodes(copy)}.isdisjoint({n.GetID() for n in lg.findingNodes(volume)})
    assert heatmap_node(copy).GetID() != heatmap_node(volume).GetID() and lg.caseResult(copy) == lg.caseResult(volume)

    def as_reviewed(findings):  # the same pixels and review
        return [(f["bbox_ijk"], f["status"], f["note"], f["decided"]) for f in findings]

    assert as_reviewed(lg.findings(copy)) == as_reviewed(before)
    assert [f["area_mm2"] for f in lg.findings(copy)] == [round(f["area_mm2"] * 4, 2) for f in before]
    np.testing.assert_array_equal(ijk_to_ras_matrix(heatmap_node(copy)), ijk_to_ras_matrix(copy))
    np.testing.assert_array_equal(lung_mask(copy), lungs)
    slicer.mrmlScene.RemoveNode(volume)  # the clone's own results stay with it
    assert as_reviewed(lg.findings(copy)) == as_reviewed(before) and lg.caseResult(copy) is not None

    kept = clone(copy)  # the original deleted: its clone keeps the results, and they follow it
    slicer.mrmlScene.RemoveNode(copy)
    kept.SetSpacing(0.5, 0.5, 1.0)
    assert as_reviewed(lg.findings(kept)) == as_reviewed(before)
    np.testing.assert_array_equal(ijk_to_ras_matrix(heatmap_node(kept)), ijk_to_ras_matrix(kept))
    np.testing.assert_array_equal(lung_mask(kept), lungs)


def test_an_original_whose_geometry_is_edited_leaves_its_clone_the_results_they_shared_on_the_clones_pixels(case):
    """Its spacing edited, the original took the results it shared with its clone onto its new geometry: the clone's
    heatmap, lung fields and boxes lay over other pixels of the clone (its heatmap's grid no longer the clone's)
    until the clone was exported or edited."""
    lg, volume = case
    lg.reviewFinding(lg.findingNodes(volume)[0], status="confirmed", note="seen on the original")
    copy = clone(volume)
    before, lungs, grid = lg.findings(copy), lung_mask(copy), ijk_to_ras_matrix(copy)
    boxes = [slicer.util.arrayFromVTKMatrix(n.GetObjectToNodeMatrix()).tolist() for n in lg.findingNodes(copy)]
    volume.SetSpacing(2.0, 2.0, 1.0)
    assert ijk_to_ras_matrix(heatmap_node(copy)).tolist() == grid.tolist() and lg.findings(copy) == before
    assert [slicer.util.arrayFromVTKMatrix(n.GetObjectToNodeMatrix()).tolist() for n in lg.findingNodes(copy)] == boxes
    np.testing.assert_array_equal(lung_mask(copy), lungs)
    np.testing.assert_array_equal(ijk_to_ras_matrix(heatmap_node(volume)), ijk_to_ras_matrix(volume))
    assert [(f["bbox_ijk"], f["status"], f["note"]) for f in lg.findings(volume)] == \
        [(f["bbox_ijk"], f["status"], f["note"]) for f in before]
    np.testing.assert_array_equal(lung_mask(volume), lungs)


def test_detecting_a_clone_or_its_original_again_leaves_the_others_results_and_review_as_they_were(case, model, tmp_path):
    """A clone shares its original's heatmap, lung fields and findings: detecting either again (here at another
    threshold) refilled the shared heatmap and removed the untouched shared findings, so the other's score and
    thresholds changed under it and it lost a finding it was not given back (2 findings became 1)."""
    lg, volume = case
    lg.reviewFolder = tmp_path / "reviews"
    lg.reviewFinding(lg.findingNodes(volume)[0], status="confirmed", note="seen on the clone's original")
    before, result = lg.findings(volume), lg.caseResult(volume)
    heat, autosave = slicer.util.arrayFromVolume(heatmap_node(volume)).copy(), next(lg.reviewFolder.iterdir())
    saved = autosave.read_text()
    copy = clone(volume)
    lg.detect(copy, model=str(model), falsePositiveRate=0.5)
    assert lg.findings(volume) == before and lg.caseResult(volume) == result
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(heatmap_node(volume)), heat)
    assert {n.GetID() for n in derived_nodes(slicer.mrmlScene, copy)}.isdisjoint(
        {n.GetID() for n in derived_nodes(slicer.mrmlScene, volume)})
    assert lg.caseResult(copy)["pixel_threshold"] != result["pixel_threshold"] and before[0] in lg.findings(copy)
    lg.rejectFinding(lg.findingNodes(copy)[0])  # the clone's own copy of the reader's finding
    assert lg.findings(volume) == before and autosave.read_text() == saved

    kept = clone(volume)  # the original detected again: its clone keeps what they shared
    lg.detect(volume, model=str(model), falsePositiveRate=0.5)
    assert lg.findings(kept) == before and lg.caseResult(kept) == result and before[0] in lg.findings(volume)
    slicer.mrmlScene.RemoveNode(volume)
    assert lg.findings(kept) == before and lg.caseResult(kept) == result


def test_a_clone_never_writes_over_its_originals_autosaved_review(case, model, tmp_path):
    """Slicer's Clone copies a volume's attributes, so a clone held the review files its original had written
    (SSLAnomaly.ReviewFiles): given its own results and named as the original, its autosave wrote over the
    original's review, kept nowhere; with the original deleted, the original's decisions were then in no file."""
    lg, volume = case
    lg.reviewFolder = tmp_path / "reviews"
    lg.reviewFinding(lg.findingNodes(volume)[0], status="confirmed", note="the original's decision")
    originals = next(lg.reviewFolder.iterdir()).read_text()
    copy = clone(volume)
    lg.detect(copy, model=str(model), falsePositiveRate=0.5)  # its own results, the reviewed finding's copy too
    copy.SetName(volume.GetName())
    lg.reviewFinding(lg.findingNodes(copy)[0], status="rejected", note="the clone's decision")
    slicer.mrmlScene.RemoveNode(volume)
    lg.reviewFinding(lg.findingNodes(copy)[0], note="the clone's second thought")
    saved = [p.read_text() for p in lg.reviewFolder.iterdir()]
    assert originals in saved and any("the clone's second thought" in text for text in saved)


def test_a_finding_the_reader_adds_on_a_clone_or_its_original_is_that_volumes_alone(case):
    """A clone shares its original's findings and table: a finding added on the clone went to the clone alone but was
    listed in the shared table, and one added next on the original took the same id, so the clone's table showed the
    original's finding in row 3 and selecting it picked the clone's own: a decision made there went to another finding."""
    lg, volume = case
    copy = clone(volume)
    shared = lg.findings(volume)
    on_clone = lg.addMissedFinding(copy, label="nodule", note="added on the clone")
    on_original = lg.addMissedFinding(volume, label="mass", note="added on the original")
    for node, added in ((copy, on_clone), (volume, on_original)):
        table, notes = lg.findingsTable(node), [f["note"] for f in lg.findings(node)]
        assert [table.GetCellText(row, 14) for row in range(table.GetNumberOfRows())] == notes == \
            [f["note"] for f in shared] + [finding_record(added)["note"]]
        assert lg.findingAtRow(node, len(notes) - 1).GetID() == added.GetID()
    assert lg.findingsTable(copy).GetID() != lg.findingsTable(volume).GetID()


def test_a_review_restored_onto_a_clone_leaves_its_originals_findings_as_they_were(case, tmp_path):
    """Restoring a review onto a clone added the reader's saved finding to the clone alone, and listed it in the table
    the clone shares with its original, as a finding of the original's (the same divergence as a finding added)."""
    lg, volume = case
    lg.reviewFolder = tmp_path / "reviews"
    added = lg.addMissedFinding(volume, bboxIJK=[100, 100, 140, 140], note="saved earlier")
    saved = next(lg.reviewFolder.iterdir())
    lg.reviewFolder = None  # the scene without it, as after a crash and a new detection (its deletion not autosaved)
    slicer.mrmlScene.RemoveNode(added)
    before = lg.findings(volume)
    copy = clone(volume)
    lg.restoreReview(copy, saved)
    assert lg.findings(volume) == before and [f["note"] for f in lg.findings(copy)] == ["" for _ in before] + ["saved earlier"]
    assert lg.findingsTable(volume).GetID() != lg.findingsTable(copy).GetID()


def test_the_results_a_clone_takes_or_keeps_are_named_after_it(case, model):
    """A clone given its own results (its geometry edited, or detected again) or left holding them (its original
    deleted) kept the original's names for its heatmap and lung fields, 'tb0003 anomaly heatmap' beside the
    original's 'tb0003 anomaly heatmap' in the Data module and in a saved scene's files."""
    lg, volume = case
    edited, detected, kept = (clone(volume) for _ in range(3))
    for node, name in ((edited, "edited"), (detected, "detected"), (kept, "kept")):
        node.SetName(name)
    edited.SetSpacing(2.0, 2.0, 1.0)
    lg.detect(detected, model=str(model), falsePositiveRate=TEST_FPR)
    slicer.mrmlScene.RemoveNode(volume)
    for node in (edited, detected, kept):
        results = derived_nodes(slicer.mrmlScene, node)
        assert sorted(n.GetName() for n in results if not n.IsA("vtkMRMLMarkupsROINode")) == \
            [f"{node.GetName()} {what}" for what in ("anomaly heatmap", "findings", "lung fields")]


def test_findings_and_lung_fields_follow_a_geometry_edit_after_the_heatmap_was_deleted_by_hand(case):
    """Without the heatmap (deleted in the Data module), where the findings and lung fields lay was not known, so a
    spacing edited moved none of them: the reviewed box [268, 60, 379, 351] read as [134, 30, 189, 175]."""
    lg, volume = case
    lg.reviewFinding(lg.findingNodes(volume)[0], status="rejected", note="kept without its heatmap")
    before, lungs = lg.findings(volume), lung_mask(volume)
    slicer.mrmlScene.RemoveNode(heatmap_node(volume))
    volume.SetSpacing(2.0, 2.0, 1.0)
    assert [(f["bbox_ijk"], f["status"], f["note"]) for f in lg.findings(volume)] == \
        [(f["bbox_ijk"], f["status"], f["note"]) for f in before]
    np.testing.assert_array_equal(lung_mask(volume), lungs)


@pytest.mark.parametrize("slice_index", [-1, 1])
def test_a_missed_finding_on_a_slice_the_image_has_not_is_refused_naming_the_volume(case, slice_index):
    """A radiograph has one slice: slice -1 was taken (a box off the image, whose segment numpy then put on the
    last slice), slice 1 failed with a bare 'index 1 is out of bounds'."""
    lg, volume = case
    before = lg.findings(volume)
    with pytest.raises(ValueError, match=rf"slice {slice_index} is not one of the 1 slice\(s\).*'{volume.GetName()}'"):
        lg.addMissedFinding(volume, [10, 10, 50, 50], sliceIndex=slice_index, label="nodule")
    assert lg.findings(volume) == before


def test_a_heatmap_deleted_by_hand_is_said_so_and_detecting_again_keeps_the_reviewed_findings(case, model, tmp_path):
    """The heatmap holds the detection's score and thresholds: deleted (Data module), the reviewed findings stayed
    in the scene while the panel said 'no detection yet', export 'no detection has been run... nothing to export',
    and the sensitivity slider's range failed with an AttributeError."""
    lg, volume = case
    lg.reviewFinding(lg.findingNodes(volume)[0], status="confirmed", note="kept without its heatmap")
    before = lg.findings(volume)
    slicer.mrmlScene.RemoveNode(heatmap_node(volume))
    removed = (rf"anomaly heatmap of '{volume.GetName()}' was removed from the scene.*its {len(before)} finding\(s\) "
               rf"and their review are still in the scene: detect anomalies on '{volume.GetName()}' again")
    assert re.match(f"The {removed}", lg.resultText(volume))
    for call in (lambda: lg.sensitivityRange(volume), lambda: lg.setSensitivity(volume, 1.0),
                 lambda: lg.exportCase(volume, tmp_path / "out")):
        with pytest.raises(ValueError, match=removed):
            call()
    assert not (tmp_path / "out").exists() and lg.findings(volume) == before
    lg.detect(volume, model=str(model), falsePositiveRate=TEST_FPR)
    assert before[0] in lg.findings(volume) and lg.sensitivityRange(volume)[2] == lg.caseResult(volume)["sensitivity"]
    assert "json" in lg.exportCase(volume, tmp_path / "out")


def test_a_heatmap_deleted_while_the_slider_hides_findings_shows_them_again_as_the_table_and_findings_say(
        case, model, tmp_path):
    """The slider hid F1 and the heatmap (which holds the slider's threshold) was deleted by hand: logic.findings()
    said F1 shown while its ROI stayed hidden and the table's Shown still said no. Without a detection nothing hides
    a finding: its ROI shows again and the table says so; detected again, the export says what the views show."""
    lg, volume = case
    lg.confirmFinding(lg.findingNodes(volume)[-1])
    lg.setSensitivity(volume, float(np.nextafter(max(f["score"] for f in lg.findings(volume)), np.inf)))
    assert not all(node.GetDisplayNode().GetVisibility() for node in lg.findingNodes(volume))
    slicer.mrmlScene.RemoveNode(heatmap_node(volume))
    assert [f["shown"] for f in lg.findings(volume)] == visibility(lg, volume) == shown_column(volume)
    assert all(visibility(lg, volume))
    lg.detect(volume, model=str(model), falsePositiveRate=TEST_FPR)
    exported = json.loads(Path(lg.exportCase(volume, tmp_path / "out", formats=["json"])["json"]).read_text())
    assert [f["shown"] for f in exported["findings"]] == visibility(lg, volume) == shown_column(volume)
    tables = slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLTableNode")
    slicer.mrmlScene.RemoveNode(volume)  # its heatmap goes with it, and no table is made for it on the way
    assert slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLTableNode") == tables - 1


def visibility(lg, volume) -> list[bool]:
    return [bool(node.GetDisplayNode().GetVisibility()) for node in lg.findingNodes(volume)]


def test_a_scene_saved_into_a_folder_that_is_not_there_makes_it_and_a_file_in_the_way_is_named(case, tmp_path):
    """saveScene into a folder not made yet failed with 'Slicer could not write the scene bundle' and no reason
    (Slicer's zip writer cannot open the file); the export makes its folder, and Slicer's Save dialog offers to."""
    lg, volume = case
    lg.reviewFinding(lg.findingNodes(volume)[0], status="rejected", note="saved into a new folder")
    before = lg.findings(volume)
    bundle = lg.saveScene(tmp_path / "reviews" / "today" / "review.mrb")
    with HeadlessSlicer() as fresh:
        assert fresh.scene.ReadFromMRB(str(bundle))
        reloaded = fresh.scene.GetFirstNode(volume.GetName(), "vtkMRMLScalarVolumeNode")
        assert [seen_record(node) for node in finding_nodes(reloaded)] == before
    (tmp_path / "notes").write_text("a file, not a folder")
    with pytest.raises(NotADirectoryError, match=rf"{tmp_path / 'notes'}: is a file, not a folder"):
        lg.saveScene(tmp_path / "notes" / "review.mrb")
    with pytest.raises(FileExistsError, match=f"not overwriting {bundle}"):
        lg.saveScene(bundle)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["notes", "review.mrb", "reviews", "today"]


def test_a_volume_whose_geometry_is_edited_after_detection_keeps_heatmap_and_findings_on_their_pixels(case, tmp_path):
    """Spacing and origin edited in the Volumes module, or the volume put under a transform, after detection: the
    heatmap, lung fields and finding boxes stayed where they were, over other pixels, and the export read each box
    on the new grid ([268, 60, 379, 351] became [184, 55, 239, 200]) while the heatmap file kept the old one."""
    lg, volume = case
    lg.reviewFinding(lg.findingNodes(volume)[0], status="confirmed", note="on these pixels")
    before, lungs = lg.findings(volume), lung_mask(volume)
    old = ijk_to_ras_matrix(volume)
    volume.SetSpacing(2.0, 2.0, 1.0)
    volume.SetOrigin(100.0, 50.0, 0.0)
    transform = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    transform.SetMatrixTransformToParent(slicer.util.vtkMatrixFromArray(np.eye(4) + np.eye(4, k=3) * 30))
    volume.SetAndObserveTransformNodeID(transform.GetID())
    new = ijk_to_ras_matrix(volume)

    def on_new_pixels(findings):  # the same boxes, the detector's centroids and areas of their pixels now
        return [dict(f, centroid_ras=[round(float(v), 3) for v in (new @ np.linalg.inv(old) @ [*f["centroid_ras"], 1])[:3]],
                     area_mm2=round(f["area_mm2"] * 4, 2)) for f in findings]

    assert lg.findings(volume) == on_new_pixels(before)
    np.testing.assert_array_equal(ijk_to_ras_matrix(heatmap_node(volume)), new)
    np.testing.assert_array_equal(lung_mask(volume), lungs)
    derived = [heatmap_node(volume), lung_node(volume), *lg.findingNodes(volume)]
    assert {node.GetTransformNodeID() for node in derived} == {transform.GetID()}
    document = json.loads(lg.exportCase(volume, tmp_path / "out", formats=["json", "heatmap"])["json"].read_text())
    assert [{k: f[k] for k in ("bbox_ijk", "centroid_ras", "area_mm2")} for f in document["findings"]] == \
        [{k: f[k] for k in ("bbox_ijk", "centroid_ras", "area_mm2")} for f in on_new_pixels(before)]
    heat_file = sitk.ReadImage(str(tmp_path / "out" / f"{volume.GetName()}.heatmap.nrrd"))
    assert heat_file.GetSpacing()[:2] == (2.0, 2.0) and heat_file.GetOrigin()[:2] == (-100.0, -50.0)

    # edited where the Logic does not watch it (a scene opened from the File menu): the export follows it
    bundle = lg.saveScene(tmp_path / "scene.mrb")
    empty_scene()
    assert slicer.mrmlScene.ReadFromMRB(str(bundle))
    reloaded = slicer.mrmlScene.GetFirstNode(volume.GetName(), "vtkMRMLScalarVolumeNode")
    reloaded.SetSpacing(1.0, 1.0, 1.0)
    document = json.loads(lg.exportCase(reloaded, tmp_path / "again", formats=["json"])["json"].read_text())
    assert [f["bbox_ijk"] for f in document["findings"]] == [f["bbox_ijk"] for f in before]
    np.testing.assert_array_equal(ijk_to_ras_matrix(heatmap_node(reloaded)), ijk_to_ras_matrix(reloaded))


@pytest.mark.parametrize("spacing", [1e-300, 1e300, float("nan")])
def test_a_batch_with_a_spacing_no_radiograph_has_is_refused_before_anything_is_written(model, tmp_path, spacing):
    """The command line refuses such a --spacing; the Logic's detectBatch took it and every input failed with
    ITK's 'Singular matrix' (or areas no JSON can hold). Refused by the batch's options, for every front end."""
    empty_scene()
    with pytest.raises(ValueError, match="no radiograph's: give one from 0.001 to 10 mm"):
        logic().detectBatch(str(tb_radiograph()), tmp_path / "out", model=str(model), spacing=spacing)
    assert not (tmp_path / "out").exists()


def test_a_sequence_stepped_to_another_frame_never_shows_or_exports_the_other_frames_result(model, tmp_path):
    """A volume shown by a sequence browser (its proxy) holds another frame's voxels once the browser steps: the
    export wrote the earlier frame's score and findings under the new frame's image_id, and a result arriving after
    the step was put on the new frame. Both are refused, naming the volume; stepping back, or detecting again, exports."""
    from conftest import data_dir

    empty_scene()
    lg = logic()
    lg.reviewFolder = None
    frames = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSequenceNode", "frames")
    for k, path in enumerate(sorted(data_dir("tbx11k_dev", "images").iterdir())[:2]):
        volume = lg.loadVolume(path)
        frames.SetDataNodeAtValue(volume, str(k))
        slicer.mrmlScene.RemoveNode(volume)
    slicer.mrmlScene.RegisterNodeClass(slicer.vtkMRMLSequenceBrowserNode())  # desktop Slicer's Sequences module does
    browser = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSequenceBrowserNode", "browser")
    browser.SetAndObserveMasterSequenceNodeID(frames.GetID())
    sequences = slicer.vtkSlicerSequencesLogic()
    sequences.SetMRMLScene(slicer.mrmlScene)
    sequences.UpdateProxyNodesFromSequences(browser)
    proxy = browser.GetProxyNode(frames)
    first = lg.detect(proxy, model=str(model), falsePositiveRate=TEST_FPR)
    browser.SetSelectedItemNumber(1)
    sequences.UpdateProxyNodesFromSequences(browser)
    with pytest.raises(ValueError, match="'frames' is not exported: the voxels of 'frames' changed since its detection"):
        lg.exportCase(proxy, tmp_path / "stepped")
    assert not (tmp_path / "stepped").exists() or not any((tmp_path / "stepped").iterdir())
    with pytest.raises(ValueError, match="'frames' holds another image than the one scored"):
        lg.showResult(proxy, first)  # as a detection job's result arriving after the step
    browser.SetSelectedItemNumber(0)
    sequences.UpdateProxyNodesFromSequences(browser)
    exported = json.loads(lg.exportCase(proxy, tmp_path / "first")["json"].read_text())
    assert exported["image_id"] == first.image_id and exported["score"] == pytest.approx(first.score)
    browser.SetSelectedItemNumber(1)
    sequences.UpdateProxyNodesFromSequences(browser)
    second = lg.detect(proxy, model=str(model), falsePositiveRate=TEST_FPR)
    exported = json.loads(lg.exportCase(proxy, tmp_path / "second")["json"].read_text())
    assert second.image_id != first.image_id and exported["image_id"] == second.image_id
