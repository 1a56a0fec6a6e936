"""What a radiologist made is never lost or put beside another patient's: an export again after a
review change leaves no stale file of the earlier one, an export never replaces another image's files
of the same name, a volume name is never read as a path, and a deleted volume takes its results along
(also those that arrive after it was deleted)."""

import json

import pytest

from slicer_cases import (TEST_FPR, empty_scene, full_resolution_radiograph, logic, model,  # noqa: F401 (fixture)
                          renamed_model, tb_radiograph, write_dicom_dx)


@pytest.fixture
def dicom_case(model, tmp_path):
    """A real radiograph as a DICOM DX, detected by the module's Logic (autosave off)."""
    empty_scene()
    lg = logic()
    lg.reviewFolder = None
    volume = lg.loadVolume(write_dicom_dx(full_resolution_radiograph("pneumonia"), tmp_path / "IM-0001.dcm"))
    lg.detect(volume, model=str(model), falsePositiveRate=TEST_FPR)
    assert lg.findingNodes(volume)
    return lg, volume


def test_exporting_again_after_rejecting_every_finding_leaves_no_stale_dicom_seg(dicom_case, tmp_path):
    """With every finding rejected there is no SEG to write; the SEG of the earlier export, which shows
    the findings the reader has since rejected, must not stay beside the new SR for the PACS."""
    lg, volume = dicom_case
    first = lg.exportCase(volume, tmp_path / "out")
    assert first["dicom_seg"].exists()
    for node in lg.findingNodes(volume):
        lg.rejectFinding(node)
    again = lg.exportCase(volume, tmp_path / "out", overwrite=True)
    assert "dicom_seg" not in again and not first["dicom_seg"].exists()
    assert again["dicom_sr"].exists()


def test_detecting_again_into_a_folder_never_replaces_a_reviewed_export(dicom_case, model, tmp_path, capsys):
    """`sslanomaly detect --out out IM-0001.dcm` into the folder holding the reader's export of that image
    replaced its findings JSON (decisions, notes, the reader's own findings) and heatmap with the model's
    findings alone, exit 0, leaving the export's CSV, markups and segmentation out of step with it."""
    from SSLAnomalyLib.cli import main

    lg, volume = dicom_case
    lg.reviewFinding(lg.findingNodes(volume)[0], status="confirmed", note="the reader's decision")
    lg.addMissedFinding(volume, bboxIJK=[120, 200, 180, 260], label="nodule", note="missed by the model")
    out, dicom = tmp_path / "out", tmp_path / "IM-0001.dcm"
    written = lg.exportCase(volume, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    code = main(["detect", "--model", str(model), "--quiet", "--out", str(out), str(dicom)])
    assert code == 2 and "reviewed findings" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert json.loads(written["json"].read_text())["findings"][0]["note"] == "the reader's decision"


def test_a_batch_never_replaces_a_reviewed_export_without_its_findings_json(dicom_case, model, tmp_path):
    """The reader exported the CSV and DICOM SEG + SR alone (the README's `formats=["csv", "dicom"]`): a Slicer batch of
    that DICOM into the folder wrote the model's unreviewed SR and SEG over the reader's, even without overwrite,
    and with it the CSV too; nothing set aside. Refused as a reviewed findings JSON is, the files kept; an export
    of before the record said it was a reader's fails without overwrite, nothing replaced."""
    from SSLAnomalyLib.core.files.errors import PathError

    lg, volume = dicom_case
    lg.addMissedFinding(volume, bboxIJK=[120, 200, 180, 260], label="nodule", note="missed by the model")
    out, dicom = tmp_path / "out", tmp_path / "IM-0001.dcm"
    lg.exportCase(volume, out, formats=["csv", "dicom"])
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    for overwrite in (False, True):
        with pytest.raises(PathError, match="reviewed findings.*'IM-0001'"):
            lg.detectBatch(str(dicom), out, model=str(model), overwrite=overwrite)
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    (out / "IM-0001.export.json").write_text(json.dumps({"image_id": json.loads(before["IM-0001.export.json"])["image_id"]}))
    [row] = lg.detectBatch(str(dicom), out, model=str(model))
    assert "not overwriting existing file(s)" in row["error"] and "IM-0001.sr.dcm" in row["error"]
    assert all((out / name).read_bytes() == data for name, data in before.items() if name.endswith(".dcm"))


def test_an_export_interrupted_while_moving_its_files_is_incomplete_until_exported_again(dicom_case, model, tmp_path,
                                                                                          monkeypatch):
    """An export moves its files into place one after another: interrupted after the first, the new review's
    findings JSON stood beside the earlier review's CSV, SEG and SR, and its record still vouched for the set. The
    record now lists the files before they move: the set is incomplete, said, until an export with overwrite
    replaces it; an export adding to it is refused, and a batch's --resume does not keep a set unlike its record."""
    import os

    from SSLAnomalyLib.core.results.export_owner import incomplete

    lg, volume = dicom_case
    out, dicom = tmp_path / "out", tmp_path / "IM-0001.dcm"
    lg.exportCase(volume, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    lg.reviewFinding(lg.findingNodes(volume)[0], status="confirmed", note="the reader's later decision")
    real_replace, moved = os.replace, []

    def replace_once(source, target):  # the record's own write is not one of the moves
        if moved and not str(target).endswith(".export.json"):
            raise OSError("interrupted")
        moved.extend([target] * (not str(target).endswith(".export.json")))
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", replace_once)
    with pytest.raises(OSError, match="interrupted"):
        lg.exportCase(volume, out, overwrite=True)
    monkeypatch.setattr(os, "replace", real_replace)
    assert [p.name for p in moved] == ["IM-0001.findings.json"] and before["IM-0001.findings.csv"] == (
        out / "IM-0001.findings.csv").read_bytes()
    assert "IM-0001.findings.csv is not the export's" in incomplete(out, "IM-0001")
    (out / "IM-0001.mrb").unlink()  # an export adding the scene to the set
    interrupted = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(FileExistsError, match="incomplete.*with overwrite"):
        lg.exportCase(volume, out, formats=["mrb"])
    assert {p.name: p.read_bytes() for p in out.iterdir()} == interrupted
    written = lg.exportCase(volume, out, overwrite=True)
    assert incomplete(out, "IM-0001") is None and "the reader's later decision" in written["csv"].read_text()

    batch = tmp_path / "batch"
    lg.detectBatch(str(dicom), batch, model=str(model))
    (batch / "IM-0001.findings.csv").write_text("changed since")
    [row] = lg.detectBatch(str(dicom), batch, model=str(model), resume=True)
    assert "error" not in row and incomplete(batch, "IM-0001") is None


def test_overwrite_never_replaces_the_export_of_another_image_of_the_same_name(model, tmp_path):
    """Volume names repeat across patients ('1: DX CHEST PA', 'IM-0001'): with Overwrite ticked for
    re-exporting one's own case, another patient's export of that name must not be replaced (nor
    left half: its DICOM SEG and SR beside this patient's JSON). The batch already refuses this."""
    empty_scene()
    lg = logic()
    lg.reviewFolder = None
    first = lg.loadVolume(write_dicom_dx(full_resolution_radiograph("pneumonia"), tmp_path / "IM-0001.dcm"))
    lg.detect(first, model=str(model), falsePositiveRate=TEST_FPR)
    lg.reviewFinding(lg.findingNodes(first)[0], status="confirmed", note="patient A's decision")
    written = lg.exportCase(first, tmp_path / "out")
    before = {kind: path.read_bytes() for kind, path in written.items()}
    other = lg.loadVolume(tb_radiograph())
    other.SetName(first.GetName())
    lg.detect(other, model=str(model), falsePositiveRate=TEST_FPR)
    with pytest.raises(FileExistsError, match=r"IM-0001\.findings\.json.*another image"):
        lg.exportCase(other, tmp_path / "out", overwrite=True)
    assert {kind: path.read_bytes() for kind, path in written.items()} == before
    lg.exportCase(first, tmp_path / "out", formats=["json"], overwrite=True)  # its own export: replaced
    assert json.loads(written["json"].read_text())["findings"][0]["note"] == "patient A's decision"


def test_the_latest_autosave_is_restored_whichever_name_the_image_was_reviewed_under(model, tmp_path):
    """The same image reviewed as 'IM-0001' (its file), then from the DICOM browser as '1: DX CHEST PA',
    is autosaved under both names: after a crash, loaded from its file again, the later decisions must
    come back, not the earlier file's that happens to carry the name."""
    empty_scene()
    lg = logic()
    lg.reviewFolder = tmp_path / "reviews"
    dx = write_dicom_dx(full_resolution_radiograph("pneumonia"), tmp_path / "IM-0001.dcm")
    volume = lg.loadVolume(dx)
    lg.detect(volume, model=str(model), falsePositiveRate=TEST_FPR)
    lg.rejectFinding(lg.findingNodes(volume)[0])
    volume.SetName("1: DX CHEST PA")
    lg.reviewFinding(lg.findingNodes(volume)[0], status="confirmed", note="on the prior film too")
    latest = lg.findings(volume)

    empty_scene()  # Slicer crashed
    again = logic()
    again.reviewFolder = tmp_path / "reviews"
    volume = again.loadVolume(dx)
    again.detect(volume, model=str(model), falsePositiveRate=TEST_FPR)
    again.restoreReview(volume)
    assert again.findings(volume) == latest


def test_a_box_dragged_alone_is_in_the_table_and_survives_a_crash(model, tmp_path):
    """Dragging a finding's box in a slice view (or typing its centre in the Markups module) is a review
    change no button reports: the table must show the box where it is, and the autosave must hold it."""
    import slicer

    from SSLAnomalyLib.core.results.review import load_review
    from SSLAnomalyLib.mrml.table import findings_table
    from test_slicer_detection import as_exported

    empty_scene()
    lg = logic()
    lg.reviewFolder = tmp_path / "reviews"
    volume = lg.loadVolume(tb_radiograph())
    lg.detect(volume, model=str(model), falsePositiveRate=TEST_FPR)
    lg.rejectFinding(lg.findingNodes(volume)[-1])  # an earlier decision: the autosave exists
    node = lg.findingNodes(volume)[0]
    center = list(node.GetCenter())
    node.InvokeEvent(slicer.vtkMRMLMarkupsNode.PointStartInteractionEvent)  # the reader drags the box ...
    node.SetCenter(center[0] + 8, center[1] + 5, center[2])
    assert load_review(lg.savedReview(volume))["findings"][0]["bbox_ijk"] != lg.findings(volume)[0]["bbox_ijk"]
    node.InvokeEvent(slicer.vtkMRMLMarkupsNode.PointEndInteractionEvent)  # ... saved once, as the drag ends
    moved = lg.findings(volume)
    assert as_exported(load_review(lg.savedReview(volume))["findings"]) == moved
    node.SetCenter(center[0] + 9, center[1] + 5, center[2])  # typed in the Markups module: no drag
    moved = lg.findings(volume)
    table = findings_table(volume)
    assert [int(table.GetCellText(0, c)) for c in range(7, 11)] == moved[0]["bbox_ijk"]

    empty_scene()  # Slicer crashed
    again = logic()
    again.reviewFolder = tmp_path / "reviews"
    volume = again.loadVolume(tb_radiograph())
    again.detect(volume, model=str(model), falsePositiveRate=TEST_FPR)
    again.restoreReview(volume)
    assert again.findings(volume) == moved


def test_a_volume_name_is_never_read_as_a_path_on_export(model, tmp_path):
    """Slicer names a DICOM series volume after its description: '2: CHEST PA/LAT' put the export in a
    folder '2: CHEST PA' as 'LAT.*', and '../x' outside the folder chosen; ':' is no file name on Windows."""
    empty_scene()
    lg = logic()
    lg.reviewFolder = None
    volume = lg.loadVolume(tb_radiograph())
    lg.detect(volume, model=str(model), falsePositiveRate=TEST_FPR)
    for name in ("2: CHEST PA/LAT", "../x"):
        volume.SetName(name)
        written = lg.exportCase(volume, tmp_path / "out", formats=["json", "csv"])
        assert {p.parent for p in written.values()} == {tmp_path / "out"}
        assert all(not set(p.name) & set(':/\\') for p in written.values())


def test_deleting_a_volume_takes_what_detection_made_for_it_and_keeps_its_review(model, tmp_path):
    """A volume deleted (Data module, Delete key, console) left its heatmap as the slice views' foreground and
    its finding boxes, lung fields and findings table in the scene: the next image loaded was shown under
    the deleted patient's findings. The reader's autosaved review stays on disk, to restore."""
    import slicer

    from SSLAnomalyLib.mrml.heatmap import heatmap_node, slice_composite_nodes
    from SSLAnomalyLib.mrml.lungs import lung_node
    from SSLAnomalyLib.mrml.table import findings_table

    empty_scene()
    lg = logic()
    lg.reviewFolder = tmp_path / "reviews"
    volume = lg.loadVolume(tb_radiograph())
    lg.detect(volume, model=str(model), falsePositiveRate=TEST_FPR)
    lg.rejectFinding(lg.findingNodes(volume)[0])
    decided = lg.findings(volume)
    saved = lg.savedReview(volume)
    review = saved.read_bytes()
    derived = [heatmap_node(volume), lung_node(volume), findings_table(volume), *lg.findingNodes(volume)]
    assert None not in derived and [c.GetForegroundVolumeID() for c in slice_composite_nodes()]

    slicer.mrmlScene.RemoveNode(volume)
    assert [n.GetName() for n in derived if n.GetScene() is not None] == []
    assert not slicer.util.getNodesByClass("vtkMRMLMarkupsROINode")
    assert {c.GetForegroundVolumeID() for c in slice_composite_nodes()} == {None}
    assert saved.read_bytes() == review

    again = lg.loadVolume(tb_radiograph())  # the same image, loaded again: its review comes back
    lg.detect(again, model=str(model), falsePositiveRate=TEST_FPR)
    lg.restoreReview(again)
    assert lg.findings(again) == decided


def test_an_export_is_overwritten_by_its_own_image_only_with_or_without_its_findings_json(model, tmp_path):
    """Only `<name>.findings.json` said whose an export is, so patient A's case exported as CSV alone could be
    overwritten by nobody, not even by A's export again. Every export now writes `<name>.export.json` naming its
    image: A's export is replaced by A's (with Overwrite), another image of the same name is refused whatever it
    writes, and where neither file is there (an export of before the record) nothing is written beside it."""
    empty_scene()
    lg = logic()
    lg.reviewFolder = None
    out = tmp_path / "out"
    first = lg.loadVolume(full_resolution_radiograph("pneumonia"))
    first.SetName("IM-0001")
    lg.detect(first, model=str(model), falsePositiveRate=TEST_FPR)
    lg.reviewFinding(lg.findingNodes(first)[0], status="confirmed", note="patient A's decision")
    table = lg.exportCase(first, out, formats=["csv"])["csv"]
    lg.reviewFinding(lg.findingNodes(first)[0], note="patient A, revised")
    assert lg.exportCase(first, out, formats=["csv"], overwrite=True) == {"csv": table}
    assert "patient A, revised" in table.read_text(encoding="utf-8")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(before) == {"IM-0001.findings.csv", "IM-0001.export.json"}

    other = lg.loadVolume(full_resolution_radiograph("normal"))
    other.SetName("IM-0001")
    lg.detect(other, model=str(model), falsePositiveRate=TEST_FPR)
    for formats in (["csv"], ["json"], None):
        with pytest.raises(FileExistsError, match=r"IM-0001\.export\.json.*another image"):
            lg.exportCase(other, out, formats=formats, overwrite=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before

    (out / "IM-0001.export.json").unlink()  # as an export of before the record: nothing says whose the CSV is
    for volume in (other, first):
        with pytest.raises(FileExistsError, match=r"IM-0001\.findings\.csv.*IM-0001\.findings\.json"):
            lg.exportCase(volume, out, formats=["json"], overwrite=True)
    assert [p.name for p in out.iterdir()] == [table.name] and table.read_bytes() == before[table.name]


def test_a_result_that_arrives_after_its_volume_was_deleted_is_not_shown(model):
    """The panel scores in the background: a volume deleted meanwhile got its heatmap and finding boxes
    put into the scene, attached to nothing, over the next image."""
    import slicer

    empty_scene()
    lg = logic()
    lg.reviewFolder = None
    volume = lg.loadVolume(tb_radiograph())
    result = lg.loadDetector(str(model), "cpu", TEST_FPR).detect(lg.radiographFromVolume(volume), lungs=True)
    slicer.mrmlScene.RemoveNode(volume)
    with pytest.raises(ValueError, match="removed from the scene while it was being scored"):
        lg.showResult(volume, result)
    assert not slicer.util.getNodesByClass("vtkMRMLMarkupsROINode")
    assert [n.GetName() for n in slicer.util.getNodesByClass("vtkMRMLScalarVolumeNode")] == []


def test_a_finding_kept_through_another_models_detection_names_the_model_that_made_it(model, tmp_path):
    """Detecting again with another model keeps each finding the reader touched, with the first model's
    score; the findings JSON, CSV, DICOM SR and SEG named the second model for it, so a PACS showed a
    finding and score that model never made. Each model finding names its own model, after a crash and
    restore too; the reader's own stays MANUAL, with none. A scene saved before: the case's model."""
    import csv

    import highdicom as hd
    from pydicom.sr.codedict import codes

    site = renamed_model(model, tmp_path / "site", "site-copy")
    empty_scene()
    lg = logic()
    lg.reviewFolder = tmp_path / "reviews"
    dx = write_dicom_dx(full_resolution_radiograph("pneumonia"), tmp_path / "IM-0001.dcm")
    volume = lg.loadVolume(dx)
    first = lg.detect(volume, model=str(model), falsePositiveRate=TEST_FPR).model_id
    assert len(lg.findingNodes(volume)) >= 2 and first != "site-copy"
    lg.reviewFinding(lg.findingNodes(volume)[0], status="confirmed", note="seen under the first model")
    lg.addMissedFinding(volume, [10, 10, 40, 40])
    lg.detect(volume, model=str(site), falsePositiveRate=TEST_FPR)
    records = lg.findings(volume)
    models = {f"F{r['id']}": r.get("model") for r in records}
    kept, = (r for r in records if r["note"] == "seen under the first model")
    assert models.pop(f"F{kept['id']}") == first
    assert sorted(models.values(), key=str) == [None] + ["site-copy"] * (len(records) - 2)  # None: the reader's

    written = lg.exportCase(volume, tmp_path / "out", formats=["json", "csv", "dicom"])
    models[f"F{kept['id']}"] = first
    document = json.loads(written["json"].read_text())
    assert document["model"] == "site-copy"
    assert {f"F{f['id']}": f.get("model") for f in document["findings"]} == models
    with open(written["csv"], newline="", encoding="utf-8") as f:
        assert {f"F{row['ID']}": row["Model"] or None for row in csv.DictReader(f)} == models
    named = {name: [f"model={m}"] if m else [] for name, m in models.items()}  # the reader's: no algorithm
    groups = hd.sr.srread(written["dicom_sr"]).content.get_planar_roi_measurement_groups()
    assert {g.tracking_identifier.split()[0]: [i.value for i in g[0].ContentSequence
                                               if i.name == codes.DCM.AlgorithmParameters] for g in groups} == named
    segments = hd.seg.segread(written["dicom_seg"]).SegmentSequence
    assert {s.SegmentLabel.split()[0]: [a.AlgorithmParameters.split(",")[0] for a in  # then the cut: pixel_threshold=
                                        s.get("SegmentationAlgorithmIdentificationSequence", [])]
            for s in segments} == named

    empty_scene()  # Slicer crashed; the image is detected again with the site's model and the review restored
    again = logic()
    again.reviewFolder = tmp_path / "reviews"
    volume = again.loadVolume(dx)
    again.detect(volume, model=str(site), falsePositiveRate=TEST_FPR)
    again.restoreReview(volume)

    def shown(findings):
        return sorted((f.get("model") or "", f["bbox_ijk"], f["score"], f["status"], f["note"]) for f in findings)

    assert shown(again.findings(volume)) == shown(records)
    node, = (n for n in again.findingNodes(volume) if n.GetAttribute("SSLAnomaly.Note") == "seen under the first model")
    node.RemoveAttribute("SSLAnomaly.EngineModel")  # as in a scene saved before findings named their model
    assert again.findings(volume)[again.findingNodes(volume).index(node)]["model"] == "site-copy"


def test_a_batch_sets_aside_what_a_stopped_batch_left_of_a_case_but_never_a_readers_export(model, tmp_path, caplog):
    """A full disk stops a batch after a case's heatmap (the command line) or its Slicer export (detectBatch) but
    before its findings JSON: a Slicer batch run again without overwrite failed that case ('not overwriting
    existing file(s)'). Those files are the batch's own: set aside as a failed case's are, said, and the case
    detected; a reader's export (its record says so), or a CSV beside them with no record, still is not."""
    from SSLAnomalyLib.core.files.errors import PathError

    empty_scene()
    lg, out, image = logic(), tmp_path / "out", tb_radiograph()

    def files() -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in out.glob(f"{image.stem}.*")}

    lg.detectBatch(str(image), out, model=str(model))
    json_file, record = out / f"{image.stem}.findings.json", out / f"{image.stem}.export.json"
    for left in ("export", "heatmap"):  # detectBatch's files, then the command line's heatmap and overlay
        json_file.unlink()
        for p in out.glob(f"{image.stem}.*"):
            if left == "heatmap" and not p.name.endswith((".heatmap.nrrd", ".overlay.png")):
                p.unlink()
        before = files()
        [row] = lg.detectBatch(str(image), out, model=str(model))
        assert "files" in row, row
        assert "did not finish the case (no findings JSON)" in caplog.text
        folder = max((out / "set_aside").iterdir(), key=lambda p: p.stat().st_mtime_ns)
        assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    json_file.unlink()
    (out / f"{image.stem}.findings.csv").rename(tmp_path / "theirs.csv")
    record.write_text(json.dumps(dict(json.loads(record.read_text()), review=True)))  # a reader's export
    before = files()
    with pytest.raises(PathError, match="reviewed findings"):
        lg.detectBatch(str(image), out, model=str(model))
    assert files() == before
    record.unlink()
    (tmp_path / "theirs.csv").rename(out / f"{image.stem}.findings.csv")  # beside a heatmap, and no record says whose
    before = files()
    [row] = lg.detectBatch(str(image), out, model=str(model))
    assert "not overwriting existing file(s)" in row["error"] and files() == before
