"""Every export of a reviewed case, read back: CSV, JSON, markups, segmentation, heatmap and scene
through Slicer's own readers; DICOM SEG and SR through pydicom/highdicom, referencing the source.
Also the scene bundle the CLI writes (`sslanomaly detect --mrb`), opened in a fresh scene."""

import csv
import json
import subprocess
from pathlib import Path

import highdicom as hd
import jsonschema
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
import slicer
from PIL import Image

from conftest import REPO
from slicer_cases import (TEST_FPR, empty_scene, full_resolution_radiograph, logic, model,  # noqa: F401 (fixture)
                          tb_radiograph, write_dicom_dx)
from SSLAnomalyLib.core.anatomy.lung_network import BUNDLED_LUNGS
from SSLAnomalyLib.core.results.dicom_export import DicomExportError
from SSLAnomalyLib.core.results.findings_json import SCHEMA
from SSLAnomalyLib.core.results.segments import finding_masks
from SSLAnomalyLib.mrml.bundle import write_mrb
from SSLAnomalyLib.mrml.finding_rois import finding_nodes
from SSLAnomalyLib.mrml.headless import HeadlessSlicer
from SSLAnomalyLib.mrml.heatmap import COLOR_NODE_NAME, heatmap_node
from SSLAnomalyLib.mrml.lungs import lung_mask
from SSLAnomalyLib.mrml.table import COLUMNS, findings_table
from SSLAnomalyLib.mrml.volumes import is_heatmap


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    """A DICOM DX made from a real radiograph, detected, reviewed (one finding rejected with a note,
    one missed finding added) and exported in every format."""
    empty_scene()
    root = tmp_path_factory.mktemp("export")
    dx = write_dicom_dx(full_resolution_radiograph("pneumonia"), root / "cxr.dcm")
    lg = logic()
    volume = lg.loadVolume(dx)
    result = lg.detect(volume, model=str(model), falsePositiveRate=TEST_FPR)
    assert result.findings, "the test image should have findings at the lowered threshold"
    lg.rejectFinding(lg.findingNodes(volume)[0])
    lg.reviewFinding(lg.findingNodes(volume)[0], note="overlapping scapula")
    lg.addMissedFinding(volume, [100, 150, 260, 330], label="nodule", note="right upper zone")
    written = lg.exportCase(volume, root / "out")
    return lg, volume, dx, lg.findings(volume), written


def read_segmentation(path):
    """A written .seg.nrrd read back through Slicer's segmentation storage node, into a new node."""
    segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    storage = slicer.vtkMRMLSegmentationStorageNode()
    storage.SetFileName(str(path))
    assert storage.ReadData(segmentation)
    return segmentation


def test_all_formats_are_written_for_a_dicom_input(exported):
    _, _, _, _, written = exported
    assert set(written) == {"json", "csv", "heatmap", "mrk", "seg", "lungs", "mrb", "dicom_seg", "dicom_sr"}
    assert not list(written["json"].parent.glob(".sslanomaly-*")), "staging folders must not be left behind"


def test_lung_fields_are_exported_as_a_segmentation_on_the_input_grid(exported):
    lg, volume, _, _, written = exported
    segmentation = read_segmentation(written["lungs"])
    segment_id = segmentation.GetSegmentation().GetSegmentIdBySegmentName("Lung fields")
    mask = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segment_id, volume)
    assert mask.shape == slicer.util.arrayFromVolume(volume).shape
    assert 0.1 < (mask > 0).mean() < 0.6
    slicer.mrmlScene.RemoveNode(segmentation)


def as_written(records: list[dict]) -> list[dict]:
    """The panel's finding records as the findings JSON holds them: shown, and each score to the 6 decimals
    (more where two would look equal) that the JSON writes beside the pixel threshold (rounded_together)."""
    return [dict(r, shown=True, score=pytest.approx(r["score"], abs=5e-7)) for r in records]


def test_csv_and_json_hold_the_reviewed_findings(exported, model):
    lg, volume, dx, records, written = exported
    with open(written["csv"], newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["ID"] for r in rows] == [str(r["id"]) for r in records]
    assert [r["Status"] for r in rows] == [r["status"] for r in records]
    assert rows[0]["Note"] == "overlapping scapula" and rows[-1]["Label"] == "nodule"
    assert list(rows[0]) == [t for t, _, _ in COLUMNS] and {r["Shown"] for r in rows} == {"yes"}
    data = json.loads(written["json"].read_text())
    assert {"input", "score", "threshold", "abnormal", "percentile", "model", "findings"} <= set(data)
    assert data["input"] == str(dx) and data["findings"] == as_written(records)
    assert data["score"] == pytest.approx(lg.caseResult(volume)["score"])
    # the model folder's seal, by which `detect --resume` keeps this review rather than redo the case
    assert data["model_sha256"] == json.loads((model / "manifest.json").read_text())["manifest_sha256"]
    # and the lung network's, which `detect --resume` compares as well
    lungs = json.loads((BUNDLED_LUNGS / "manifest.json").read_text())
    assert (data["lung_network"], data["lung_network_sha256"]) == (lungs["model_id"], lungs["manifest_sha256"])


def test_csv_is_utf8_whatever_the_locale(exported, tmp_path):
    """A note in any language is exported under any locale (Windows Slicer runs with cp1252, a
    service may run with C/ASCII), and as UTF-8 like every other text file the tool writes."""
    import os
    import sys

    _, _, _, records, _ = exported
    record = dict(records[0], label="épanchement, \"gauche\"", note="à revoir\n中 ≥ 2 cm", shown=True)
    path = tmp_path / "f.findings.csv"
    script = ("import json, sys; from pathlib import Path; from SSLAnomalyLib.mrml.export import _write_csv; "
              "_write_csv(Path(sys.argv[1]), [json.loads(sys.argv[2])])")
    environment = dict(os.environ, LC_ALL="C", LANG="C", PYTHONUTF8="0", PYTHONCOERCECLOCALE="0")
    r = subprocess.run([sys.executable, "-c", script, str(path), json.dumps(record)], env=environment,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    with open(path, newline="", encoding="utf-8") as f:
        row, = csv.DictReader(f)
    assert (row["Label"], row["Note"]) == (record["label"], record["note"])


def test_csv_writes_a_label_or_note_that_starts_like_a_formula_as_text(exported, tmp_path):
    """A reader's note or label that a spreadsheet would run (CSV injection, OWASP) is prefixed with an apostrophe,
    so that Excel shows it as text; numbers, a negative coordinate among them, stay numbers."""
    from SSLAnomalyLib.mrml.export import _write_csv

    _, _, _, records, _ = exported
    hostile = ['=HYPERLINK("http://x","click")', "+cmd|' /C calc'!A0", "-2+3", "@SUM(1)", "\tx", "\r=1"]
    written = [dict(records[0], label=text, note=text, shown=True) for text in hostile]
    path = tmp_path / "f.findings.csv"
    _write_csv(path, written)
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [(row["Label"], row["Note"]) for row in rows] == [("'" + text, "'" + text) for text in hostile]
    assert [float(row["R"]) for row in rows] == [record["centroid_ras"][0] for record in written]
    assert all(not row[title].startswith("'") for row in rows for title in ("ID", "Score", "R", "A", "S"))


def test_a_volume_named_near_the_file_name_limit_is_autosaved_and_exported(exported, tmp_path):
    """A volume of a file whose name is near the file system's 255 bytes (240 bytes of accented letters):
    its review's autosave and its export, suffixes added, failed with 'File name too long' (the reader's
    decisions then never reached the crash-safe copy); its name is cut as a batch's case names are."""
    from SSLAnomalyLib.core.results.review import load_review, review_path, save_review
    from SSLAnomalyLib.mrml.review import review_of

    lg, volume, _, _, _ = exported
    name = volume.GetName()
    volume.SetName("\u00e9" * 120)
    try:
        review = review_of(volume)
        saved = save_review(review_path(tmp_path / "reviews", volume.GetName(), review["image_id"]), review)
        written = lg.exportCase(volume, tmp_path / "out", formats=["json", "csv", "mrk", "mrb"])
    finally:
        volume.SetName(name)
    assert load_review(saved)["findings"] == review["findings"]
    assert all(len(p.name.encode()) <= 255 and p.name.startswith("\u00e9" * 100) for p in (saved, *written.values()))
    assert json.loads(written["json"].read_text())["image_id"] == review["image_id"]


def test_markups_file_holds_one_roi_per_finding(exported):
    """Read back as Slicer's Add Data does (the markups logic loads every markup in the file)."""
    _, volume, _, records, written = exported
    originals = finding_nodes(volume)
    before = {n.GetID() for n in slicer.util.getNodesByClass("vtkMRMLMarkupsROINode")}
    assert slicer.modules.markups.logic().LoadMarkups(str(written["mrk"]))
    loaded = [n for n in slicer.util.getNodesByClass("vtkMRMLMarkupsROINode") if n.GetID() not in before]
    assert len(loaded) == len(records) == len(originals)
    for node, original in zip(loaded, originals):
        assert node.GetNthControlPointLabel(0) == original.GetName()
        assert node.GetNthControlPointDescription(0) == original.GetNthControlPointDescription(0)
        np.testing.assert_allclose(node.GetCenter(), original.GetCenter(), atol=1e-4)
        np.testing.assert_allclose(node.GetSize(), original.GetSize(), atol=1e-4)


def test_segmentation_has_a_segment_per_kept_finding(exported):
    _, volume, _, records, written = exported
    segmentation = read_segmentation(written["seg"])
    kept = [r for r in records if r["status"] != "rejected"]
    segments = segmentation.GetSegmentation()
    names = [segments.GetNthSegment(i).GetName() for i in range(segments.GetNumberOfSegments())]
    assert names == [f"F{r['id']} {r['label']}" for r in kept]
    heat = slicer.util.arrayFromVolume(heatmap_node(volume))
    lungs = lung_mask(volume) > 0
    expected = finding_masks(heat, records, json.loads(written["json"].read_text())["review"]["sensitivity"], lungs)
    for i, (record, mask, _) in enumerate(expected):
        got = slicer.util.arrayFromSegmentBinaryLabelmap(segmentation, segments.GetNthSegmentID(i), volume)
        np.testing.assert_array_equal(got > 0, mask)
        if record["origin"] == "model":  # detection's region: heat outside the lung fields is no part of it
            assert (got > 0).any() and not (got > 0)[~lungs].any()


def test_heatmap_file_is_the_heatmap_on_the_input_grid(exported):
    _, volume, _, _, written = exported
    image = sitk.ReadImage(str(written["heatmap"]))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image).reshape(-1),
                                  slicer.util.arrayFromVolume(heatmap_node(volume)).reshape(-1))
    np.testing.assert_allclose(image.GetSpacing()[:2], volume.GetSpacing()[:2])


def test_dicom_seg_references_the_source_and_holds_the_kept_findings(exported):
    _, volume, dx, records, written = exported
    source = pydicom.dcmread(dx)
    seg = hd.seg.segread(written["dicom_seg"])
    assert seg.StudyInstanceUID == source.StudyInstanceUID and seg.PatientID == source.PatientID
    assert seg.Modality == "SEG" and seg.SeriesInstanceUID != source.SeriesInstanceUID
    assert list(seg.PatientOrientation) == list(source.PatientOrientation) == ["L", "F"]
    assert seg.SpecificCharacterSet == "ISO_IR 192"
    referenced = seg.ReferencedSeriesSequence[0]
    assert referenced.SeriesInstanceUID == source.SeriesInstanceUID
    assert referenced.ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    kept = [r for r in records if r["status"] != "rejected"]
    assert [s.SegmentLabel for s in seg.SegmentSequence] == [f"F{r['id']} {r['label']}" for r in kept]
    assert seg.SegmentSequence[-1].SegmentAlgorithmType == "MANUAL"  # the reader's own finding
    pixels = seg.get_pixels_by_source_instance([source.SOPInstanceUID], combine_segments=False)
    heat = slicer.util.arrayFromVolume(heatmap_node(volume))
    masks = [m.mask[0] for m in finding_masks(heat, records, json.loads(written["json"].read_text())["review"]["sensitivity"],
                                            lung_mask(volume))]
    np.testing.assert_array_equal(pixels[0].astype(bool), np.stack(masks, axis=-1))


def test_dicom_sr_reports_the_score_and_each_kept_finding_on_the_source(exported):
    lg, volume, dx, records, written = exported
    source = pydicom.dcmread(dx)
    sr = hd.sr.srread(written["dicom_sr"])
    assert sr.StudyInstanceUID == source.StudyInstanceUID and sr.Modality == "SR"
    assert sr.SpecificCharacterSet == "ISO_IR 192"
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    groups = sr.content.get_planar_roi_measurement_groups()
    kept = [r for r in records if r["status"] != "rejected"]
    assert len(groups) == len(kept)
    for group, record in zip(groups, kept):
        assert group.tracking_identifier.startswith(f"F{record['id']} {record['label']}")
        assert group.roi.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
        i0, j0, i1, j1 = record["bbox_ijk"]
        np.testing.assert_allclose(group.roi.value, [[i0, j0], [i1 + 1, j0], [i1 + 1, j1 + 1], [i0, j1 + 1], [i0, j0]])
        score = next(m for m in group.get_measurements() if m.name.meaning == "Anomaly score")
        assert score.value == pytest.approx(record["score"])
    image_level = sr.content.get_image_measurement_groups()
    assert image_level[0].get_measurements()[0].value == pytest.approx(lg.caseResult(volume)["score"])


def test_export_never_replaces_a_file_unless_asked(exported):
    lg, volume, _, _, written = exported
    before = written["csv"].read_bytes()
    edited = json.loads(written["json"].read_text())
    edited["findings"][0]["note"] = "the radiologist's edited copy"
    written["json"].write_text(json.dumps(edited))
    with pytest.raises(FileExistsError, match="cxr.findings.json is not the export's .* or a file changed since"):
        lg.exportCase(volume, written["csv"].parent)  # the edited copy no longer matches the export's record
    assert json.loads(written["json"].read_text()) == edited and written["csv"].read_bytes() == before
    lg.exportCase(volume, written["csv"].parent, formats=["json"], overwrite=True)
    assert json.loads(written["json"].read_text())["findings"] == as_written(lg.findings(volume))


def test_exporting_into_a_file_names_it_and_says_it_is_no_folder(exported, tmp_path):
    """A file chosen as the export folder (or above it) gets an error that says so, not 'File exists',
    which reads as if ticking Overwrite would help."""
    lg, volume, _, _, _ = exported
    (tmp_path / "report.pdf").write_text("the reader's report")
    for folder in (tmp_path / "report.pdf", tmp_path / "report.pdf" / "out"):
        with pytest.raises(NotADirectoryError, match="report.pdf: is a file, not a folder"):
            lg.exportCase(volume, folder, formats=["csv"], overwrite=True)
    assert (tmp_path / "report.pdf").read_text() == "the reader's report"


def test_dicom_export_needs_a_dicom_input(model, tmp_path):
    empty_scene()
    lg = logic()
    volume = lg.loadVolume(tb_radiograph())
    lg.detect(volume, model=str(model))
    assert "dicom" not in lg.exportCase(volume, tmp_path / "a")  # not offered for a PNG ...
    with pytest.raises(DicomExportError, match="DICOM"):  # ... and refused when asked for
        lg.exportCase(volume, tmp_path / "b", formats=["dicom"])


def test_the_dicom_export_states_the_sensitivity_the_reader_set(model, tmp_path):
    """The SEG's segments are cut at the sensitivity slider's threshold: where the reader moved it off
    the calibrated pixel threshold, the SR and the SEG say so."""
    empty_scene()
    lg = logic()
    volume = lg.loadVolume(write_dicom_dx(full_resolution_radiograph("pneumonia"), tmp_path / "cxr.dcm"))
    result = lg.detect(volume, model=str(model), falsePositiveRate=TEST_FPR)
    lg.setSensitivity(volume, 1.5 * result.pixel_threshold)
    written = lg.exportCase(volume, tmp_path / "out", formats=["dicom"])
    image, = hd.sr.srread(written["dicom_sr"]).content.get_image_measurement_groups()
    stated = {m.name.meaning: m.value for m in image.get_measurements()}
    assert stated["Pixel threshold set by the reader: SEG segments cut at it"] == pytest.approx(
        1.5 * result.pixel_threshold)
    seg = hd.seg.segread(written["dicom_seg"])
    assert seg.SeriesDescription == "SSLAnomaly findings, cut at the reader's pixel threshold"
    assert f"pixel_threshold={1.5 * result.pixel_threshold:.6g} (set by the reader" in \
        seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0].AlgorithmParameters


def test_a_finding_the_slider_hid_is_in_no_segmentation_and_marked_in_the_findings(model, tmp_path):
    """The exports state what the reader saw: a model finding nobody touched whose score is below the sensitivity
    the reader set was hidden, so no segmentation (.seg.nrrd, DICOM SEG) draws it (it was a whole-box segment)
    and the SR does not report it but counts it; the findings JSON and CSV keep it, marked not shown. A finding
    the reader touched is never hidden, whatever its score."""
    empty_scene()
    lg = logic()
    dx = write_dicom_dx(full_resolution_radiograph("pneumonia"), tmp_path / "cxr.dcm")
    volume = lg.loadVolume(dx)
    result = lg.detect(volume, model=str(model), falsePositiveRate=TEST_FPR)
    low, high = sorted(f.score for f in result.findings)[:2]
    lg.setSensitivity(volume, (low + high) / 2)  # hides the lowest-scoring finding alone
    hidden, = [r["id"] for r in lg.findings(volume) if r["score"] == low]
    shown = [r for r in lg.findings(volume) if r["id"] != hidden]
    written = lg.exportCase(volume, tmp_path / "out")

    document = json.loads(written["json"].read_text())
    jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text())).validate(document)
    assert {f["id"]: f["shown"] for f in document["findings"]} == {r["id"]: r["id"] != hidden for r in lg.findings(volume)}
    with open(written["csv"], newline="") as f:
        assert {row["ID"]: row["Shown"] for row in csv.DictReader(f)}[str(hidden)] == "no"
    labels = [f"F{r['id']} {r['label']}" for r in shown]
    segments = read_segmentation(written["seg"]).GetSegmentation()
    assert [segments.GetNthSegment(i).GetName() for i in range(segments.GetNumberOfSegments())] == labels
    assert [s.SegmentLabel for s in hd.seg.segread(written["dicom_seg"]).SegmentSequence] == labels
    sr = hd.sr.srread(written["dicom_sr"]).content
    assert [g.tracking_identifier for g in sr.get_planar_roi_measurement_groups()] == labels
    image, = sr.get_image_measurement_groups()
    stated = {m.name.meaning: m.value for m in image.get_measurements()}
    assert stated["Model findings below the reader's threshold, not reported"] == 1

    lg.reviewFinding(next(n for n in lg.findingNodes(volume) if n.GetAttribute("SSLAnomaly.FindingID") == str(hidden)),
                     note="seen in the table")  # touched: the reader's, never hidden
    again = lg.exportCase(volume, tmp_path / "again", formats=["json", "dicom"])
    assert all(f["shown"] for f in json.loads(again["json"].read_text())["findings"])
    segments = {s.SegmentLabel.split()[0]: s for s in hd.seg.segread(again["dicom_seg"]).SegmentSequence}
    assert len(segments) == len(shown) + 1
    kept = segments[f"F{hidden}"]  # below the threshold: its whole box, which the SEG says, not a cut at it
    assert kept.SegmentAlgorithmType == "AUTOMATIC"  # noted, not confirmed: the model's box
    parameters = kept.SegmentationAlgorithmIdentificationSequence[0].AlgorithmParameters
    assert "segment=its whole box as the reader saw it, not cut" in parameters and "pixel_threshold=" not in parameters
    image, = hd.sr.srread(again["dicom_sr"]).content.get_image_measurement_groups()
    assert "Model findings below the reader's threshold, not reported" not in {
        m.name.meaning for m in image.get_measurements()}


def test_dicom_export_refuses_a_source_file_now_holding_another_image(model, tmp_path):
    """DICOM file names repeat (IM-0001.dcm in every export): when the file a case was read from now
    holds another image, e.g. another patient's, the SEG and SR must not take that patient's identity."""
    empty_scene()
    lg = logic()
    dx = write_dicom_dx(full_resolution_radiograph("pneumonia"), tmp_path / "IM-0001.dcm")
    volume = lg.loadVolume(dx)
    lg.detect(volume, model=str(model), falsePositiveRate=TEST_FPR)
    lg.confirmFinding(lg.findingNodes(volume)[0])
    write_dicom_dx(full_resolution_radiograph("pneumonia"), dx)  # same size, a new image (new UIDs) at that path
    with pytest.raises(DicomExportError, match="IM-0001.dcm.*another image"):
        lg.exportCase(volume, tmp_path / "out", formats=["dicom", "csv"])
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_a_dicom_case_whose_source_file_is_gone_says_why_it_has_no_dicom_export(model, tmp_path):
    """The SEG and SR copy the source's patient and study: with the file moved or deleted they cannot be
    made, and the reader who expects them for the PACS is told why, the rest of the export written."""
    empty_scene()
    lg = logic()
    dx = write_dicom_dx(full_resolution_radiograph("pneumonia"), tmp_path / "IM-0001.dcm")
    volume = lg.loadVolume(dx)
    lg.detect(volume, model=str(model), falsePositiveRate=TEST_FPR)
    assert lg.exportLeftOut(volume) == []
    dx.unlink()
    written = lg.exportCase(volume, tmp_path / "out")
    assert "json" in written and not {"dicom_seg", "dicom_sr"} & set(written)
    [why] = lg.exportLeftOut(volume)
    assert why.startswith("DICOM SEG and SR not written") and str(dx) in why


@pytest.mark.parametrize("kind, why", [("frames", "has 2 frames"), ("no study", "has no StudyInstanceUID"),
                                       ("long id", "has a PatientID")])
def test_a_dicom_source_no_seg_can_be_made_from_leaves_them_out_not_the_whole_export(model, tmp_path, kind, why):
    """A multi-frame DICOM (or one without a study UID) ended the panel's export with 'DICOM export supports
    single-frame radiographs only', naming no file: staged all-or-nothing, the review was not exported at all."""
    import pydicom

    from messy_corpus import write_dicom

    empty_scene()
    lg = logic()
    pixels = np.asarray(Image.open(full_resolution_radiograph()).convert("L").reduce(4), dtype=np.uint16) * 16
    dx = write_dicom(tmp_path / "IM-0001.dcm", np.stack([pixels, pixels]) if kind == "frames" else pixels)
    if kind != "frames":
        ds = pydicom.dcmread(dx)
        if kind == "no study":
            del ds.StudyInstanceUID
        else:
            ds.PatientID = "P" * 100  # LO allows 64: invalid objects with it, filed under no patient without it
        ds.save_as(dx)
    volume = lg.loadVolume(dx)
    lg.detect(volume, model=str(model), falsePositiveRate=TEST_FPR)
    written = lg.exportCase(volume, tmp_path / "out")
    assert "json" in written and not {"dicom_seg", "dicom_sr"} & set(written)
    [said] = lg.exportLeftOut(volume)
    assert said.startswith("DICOM SEG and SR not written") and str(dx) in said and why in said
    with pytest.raises(DicomExportError, match=f"IM-0001.dcm' {why}"):
        lg.exportCase(volume, tmp_path / "asked", formats=["dicom"])


def test_a_source_value_the_seg_and_sr_leave_empty_is_said(model, tmp_path):
    """An AccessionNumber over the 16 characters of its VR is written empty (copied, a strict PACS refuses
    the SEG and SR), and the panel's export says so beside what it wrote."""
    import pydicom

    from messy_corpus import write_dicom

    empty_scene()
    lg = logic()
    pixels = np.asarray(Image.open(full_resolution_radiograph()).convert("L").reduce(4), dtype=np.uint16) * 16
    dx = write_dicom(tmp_path / "IM-0001.dcm", pixels)
    ds = pydicom.dcmread(dx)
    ds.AccessionNumber = "ACC-2024-000012345"
    ds.save_as(dx)
    volume = lg.loadVolume(dx)
    lg.detect(volume, model=str(model), falsePositiveRate=TEST_FPR)
    written = lg.exportCase(volume, tmp_path / "out")
    assert pydicom.dcmread(written["dicom_sr"]).AccessionNumber == ""
    [said] = lg.exportLeftOut(volume)
    assert said.startswith("DICOM SEG and SR: the source's AccessionNumber is left empty") and "16" in said


def test_a_batch_says_what_the_seg_and_sr_leave_empty_without_quoting_it(model, tmp_path, caplog):
    """Only the panel's export said it: detectBatch wrote a DICOM's SEG and SR with its PatientSex and birth
    date emptied, and no word of it. The case's warnings (findings JSON, Slicer's log) now say which, as the
    panel does, never quoting the value (a birth date is the patient's)."""
    from messy_corpus import write_dicom

    empty_scene()
    pixels = np.asarray(Image.open(full_resolution_radiograph()).convert("L").reduce(4), dtype=np.uint16) * 16
    dx = write_dicom(tmp_path / "IM-0001.dcm", pixels)
    ds = pydicom.dcmread(dx)
    ds.PatientSex, ds.PatientBirthDate = "U", "19450231"  # highdicom takes M, F, O; no 31 February
    ds.save_as(dx)
    with caplog.at_level("WARNING"):
        [row] = logic().detectBatch(str(dx), tmp_path / "out", model=str(model))
    assert pydicom.dcmread(row["files"]["dicom_sr"]).PatientSex == ""
    said = [w for w in json.loads(open(row["files"]["findings"]).read())["warnings"] if w.startswith("DICOM SEG")]
    assert sorted(w.split(" is ")[0] for w in said) == ["DICOM SEG and SR: the source's PatientBirthDate",
                                                       "DICOM SEG and SR: the source's PatientSex"]
    assert all(w in caplog.text for w in said) and not any("1945" in w or "'U'" in w for w in said)


def bundle_contents(path) -> dict:
    """What a bundle holds, opened in a fresh application that nothing else in the process shares."""
    with HeadlessSlicer() as fresh:
        assert fresh.scene.ReadFromMRB(str(path)), f"{path} does not open"
        volumes = [fresh.scene.GetNthNodeByClass(i, "vtkMRMLScalarVolumeNode")
                   for i in range(fresh.scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode"))]
        volume = next(n for n in volumes if not is_heatmap(n))
        heat = heatmap_node(volume)
        composite = fresh.scene.GetSingletonNode("Red", "vtkMRMLSliceCompositeNode")
        return {"name": volume.GetName(), "volumes": len(volumes), "rois": len(finding_nodes(volume)),
                "rows": findings_table(volume).GetNumberOfRows(),
                "same_grid": volume.GetImageData().GetDimensions() == heat.GetImageData().GetDimensions(),
                "colours": heat.GetDisplayNode().GetColorNode().GetName(),
                "foreground": composite.GetForegroundVolumeID() == heat.GetID()}


def test_a_cases_scene_bundle_holds_that_case_and_no_other_patient(model, tmp_path):
    """A case's .mrb is sent to a colleague or a PACS: it held the whole scene, so the other patient loaded
    beside it went along (image, findings, note, subject-hierarchy entry). Read back into a fresh scene it
    holds this case only, complete and shown in the views; the scene itself is left as it was."""
    import zipfile

    from SSLAnomalyLib.mrml.finding_rois import seen_record
    from SSLAnomalyLib.mrml.heatmap import slice_composite_nodes
    from SSLAnomalyLib.mrml.lungs import lung_node

    empty_scene()
    lg = logic()
    lg.reviewFolder = None
    case = lg.loadVolume(tb_radiograph())
    case.SetName("Patient A chest")
    lg.detect(case, model=str(model), falsePositiveRate=TEST_FPR)
    lg.rejectFinding(lg.findingNodes(case)[0])
    other = lg.loadVolume(full_resolution_radiograph())
    other.SetName("Patient B chest")
    lg.detect(other, model=str(model), falsePositiveRate=TEST_FPR)
    lg.reviewFinding(lg.findingNodes(other)[0], note="Patient B: follow up")
    hierarchy = slicer.mrmlScene.GetSubjectHierarchyNode()  # as the DICOM browser files a loaded series
    hierarchy.CreateItem(hierarchy.CreateSubjectItem(hierarchy.GetSceneItemID(), "Patient B^Jane"), other)
    shown = [(c.GetBackgroundVolumeID(), c.GetForegroundVolumeID()) for c in slice_composite_nodes()]

    path = lg.exportCase(case, tmp_path / "out", formats=["mrb"])["mrb"]
    with zipfile.ZipFile(path) as bundle:
        assert [n for n in bundle.namelist() if b"Patient B" in bundle.read(n)] == []
    with HeadlessSlicer() as fresh:
        assert fresh.scene.ReadFromMRB(str(path))
        volumes = [fresh.scene.GetNthNodeByClass(i, "vtkMRMLScalarVolumeNode")
                   for i in range(fresh.scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode"))]
        assert sorted(v.GetName() for v in volumes) == ["Patient A chest", "Patient A chest anomaly heatmap"]
        volume = next(v for v in volumes if not is_heatmap(v))
        assert [seen_record(n) for n in finding_nodes(volume)] == lg.findings(case)
        assert fresh.scene.GetNumberOfNodesByClass("vtkMRMLMarkupsROINode") == len(lg.findings(case))
        assert findings_table(volume).GetNumberOfRows() == len(lg.findings(case)) and lung_node(volume) is not None
        composite = fresh.scene.GetSingletonNode("Red", "vtkMRMLSliceCompositeNode")
        assert (composite.GetBackgroundVolumeID(), composite.GetForegroundVolumeID()) == (
            volume.GetID(), heatmap_node(volume).GetID())
    assert [(c.GetBackgroundVolumeID(), c.GetForegroundVolumeID()) for c in slice_composite_nodes()] == shown
    assert other.GetSaveWithScene() and all(n.GetSaveWithScene() for n in lg.findingNodes(other))


def test_write_mrb_bundles_one_case_without_touching_the_scene(model, tmp_path):
    from SSLAnomalyLib.core.detection.detector import AnomalyDetector
    from SSLAnomalyLib.core.reading.images import read_radiograph

    app = empty_scene()
    image = read_radiograph(tb_radiograph())
    detector = AnomalyDetector.load(model, device="cpu")
    detector.calibration = detector.calibration.with_false_positive_rate(TEST_FPR)
    result = detector.detect(image)
    nodes = app.scene.GetNumberOfNodes()
    path = write_mrb(image, result, tmp_path / "case.mrb")
    assert slicer.mrmlScene is app.scene and app.scene.GetNumberOfNodes() == nodes
    bundle = bundle_contents(path)
    assert bundle["volumes"] == 2 and bundle["same_grid"] and bundle["foreground"]
    assert bundle["colours"] == COLOR_NODE_NAME
    assert bundle["rois"] == bundle["rows"] == len(result.findings) > 0
    with pytest.raises(FileExistsError):
        write_mrb(image, result, path)


def test_write_mrb_from_the_batch_writers_threads_bundles_each_case_alone(model, tmp_path):
    """`detect --mrb` writes cases on two threads, and each bundle is built in a scene installed as the
    process's `slicer.mrmlScene`: one case's image and heatmap went into another's bundle, a third's came
    out empty. Bundles written at once each hold their own case and nothing else."""
    import zipfile
    from concurrent.futures import ThreadPoolExecutor

    from SSLAnomalyLib.core.detection.detector import AnomalyDetector
    from SSLAnomalyLib.core.reading.images import read_radiograph

    empty_scene()
    image = read_radiograph(tb_radiograph())
    detector = AnomalyDetector.load(model, device="cpu")
    result = detector.detect(image)
    cases = [f"case{i}" for i in range(8)]

    def write(name):
        case = image.with_pixels(image.pixels)
        case.source = f"{name}.png"
        return write_mrb(case, result, tmp_path / f"{name}.mrb")

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(write, cases))
    for name in cases:
        volumes = sorted(Path(n).name for n in zipfile.ZipFile(tmp_path / f"{name}.mrb").namelist()
                         if n.endswith(".nrrd") and not n.endswith(".seg.nrrd"))
        assert volumes == [f"{name} anomaly heatmap.nrrd", f"{name}.nrrd"], name


def test_cli_detect_mrb_writes_bundles_that_open_in_a_fresh_scene(model, tmp_path):
    r = subprocess.run([str(REPO / ".venv" / "bin" / "sslanomaly"), "detect", "--model", str(model), "--out",
                        str(tmp_path), "--mrb", "--quiet", "--fpr", str(TEST_FPR), str(tb_radiograph())],
                       capture_output=True, text=True, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "ERR|" not in r.stdout + r.stderr and "vtkSlicerColorLogic" not in r.stderr, r.stderr  # no VTK error lines
    name = tb_radiograph().stem
    findings = json.loads((tmp_path / f"{name}.findings.json").read_text())["findings"]
    bundle = bundle_contents(tmp_path / f"{name}.mrb")
    assert bundle["name"] == name and bundle["volumes"] == 2 and bundle["foreground"]
    assert bundle["rois"] == bundle["rows"] == len(findings)
