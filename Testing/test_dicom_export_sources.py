"""DICOM SEG and SR made from the source files hospitals really have: header values the standard does
not allow, and attributes missing. Each object is written, read back with pydicom and highdicom, and
carries the source's patient and study."""

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.valuerep import PersonName, validate_value

from messy_corpus import PATIENT_ID, PATIENT_NAME, write_dicom
from SSLAnomalyLib.core.results.dicom_export import (DicomExportError, make_seg, make_sr, read_source, source_notes,
                                                     source_problem)
from SSLAnomalyLib.core.results.segments import FindingMask

ROWS, COLS = 64, 48
FINDING = {"id": 1, "label": "opacity", "note": "", "origin": "model", "model": "adult-test", "status": "unreviewed",
           "bbox_ijk": [4, 6, 20, 30], "score": 1.5, "area_mm2": 12.0}
RESULT = {"model": "adult-test", "score": 2.0, "abnormal": True, "threshold": 1.7, "pixel_threshold": 0.9,
          "sensitivity": 0.9}


def source_file(path, **attributes):
    """A small DX with a patient, edited: an attribute set to a value, or removed where the value is None."""
    write_dicom(path, np.random.default_rng(0).integers(0, 4096, (ROWS, COLS)), spacing=(0.2, 0.2))
    ds = pydicom.dcmread(path)
    for keyword, value in attributes.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    ds.save_as(path)
    return path


def exported(path, folder):
    """The SEG and SR of one finding on the source at `path`, as read back from their files."""
    source = read_source(path, instance_uids=[pydicom.dcmread(path).SOPInstanceUID])
    mask = np.zeros((1, ROWS, COLS), bool)
    mask[0, 6:31, 4:21] = True
    make_seg(source, [FindingMask(FINDING, mask)], RESULT).save_as(folder / "seg.dcm", enforce_file_format=True)
    make_sr(source, [FINDING], RESULT).save_as(folder / "sr.dcm", enforce_file_format=True)
    hd.seg.segread(folder / "seg.dcm")
    hd.sr.srread(folder / "sr.dcm")
    return pydicom.dcmread(folder / "seg.dcm"), pydicom.dcmread(folder / "sr.dcm")


@pytest.mark.parametrize("keyword, value", [("PatientSex", "U"), ("PatientBirthDate", "00000000"),
                                            ("StudyDate", "2024"), ("StudyTime", "12:30:00")])
def test_a_header_value_highdicom_refuses_is_written_empty_not_the_end_of_the_export(tmp_path, keyword, value):
    """PatientSex 'U' (unknown, as many modalities write it) ended the export with "'U' is not a valid
    PatientSexValues": no SEG, no SR, and in Slicer none of the case's other files either."""
    path = source_file(tmp_path / "cxr.dcm", **{keyword: value})
    for ds in exported(path, tmp_path):
        assert ds[keyword].value in ("", None)
        assert (str(ds.PatientName), ds.PatientID) == (PATIENT_NAME, PATIENT_ID)
        assert ds.StudyInstanceUID == pydicom.dcmread(path).StudyInstanceUID


@pytest.mark.parametrize("keyword, value", [("AccessionNumber", "ACC-2024-000012345"),  # SH: 16 at most
                                            ("StudyDescription", "CHEST PA AND LATERAL " * 4),  # LO: 64
                                            ("ReferringPhysicianName", "X" * 70 + "^Anna"),  # PN: 64 a group
                                            ("PatientAge", "45")])  # AS: nnnY
def test_a_value_longer_or_other_than_its_vr_allows_is_written_empty_and_said(tmp_path, keyword, value):
    """An AccessionNumber of 18 characters (SH allows 16) was copied as it was: SEG and SR that a strict
    PACS refuses. Every root value of both now passes pydicom's validation of its VR."""
    path = source_file(tmp_path / "cxr.dcm", **{keyword: value})
    for ds in exported(path, tmp_path):
        assert ds[keyword].value in ("", None)
        for element in ds:
            if element.VR not in ("SQ", "UI") and isinstance(element.value, (str, PersonName)):
                validate_value(element.VR, str(element.value), pydicom.config.RAISE)
        assert (str(ds.PatientName), ds.PatientID) == (PATIENT_NAME, PATIENT_ID)
    [note] = source_notes(path)
    assert keyword in note and "left empty" in note


def test_a_patient_id_longer_than_its_vr_allows_leaves_the_seg_and_sr_out(tmp_path):
    """A 100-character PatientID (LO allows 64) was copied: invalid objects. Written empty, the SEG and SR
    would be filed under no patient, so none is made, and why is said."""
    path = source_file(tmp_path / "cxr.dcm", PatientID="P" * 100)
    assert "PatientID" in source_problem(path) and "64" in source_problem(path)
    with pytest.raises(DicomExportError, match="cxr.dcm.*PatientID"):
        exported(path, tmp_path)


def test_the_sequences_highdicom_copies_are_read_as_stored_and_left_out_where_invalid(tmp_path):
    """highdicom copies the Patient and Study modules' sequences too, as they are: another ID and its issuer
    in Latin-1 under a declared UTF-8 reached both objects as 'M\ufffdLLER-42', and a referring physician's
    80-character institution (LO: 64) made both invalid. Text inside copied sequences is now read as Latin-1
    as the root's is, and a sequence holding an invalid value is left out; each is said."""
    other, physician = Dataset(), Dataset()
    other.PatientID, other.IssuerOfPatientID, other.TypeOfPatientID = "MÜLLER-42", "Hôpital Saint-Éloi", "TEXT"
    physician.InstitutionName = "X" * 80
    path = source_file(tmp_path / "cxr.dcm", SpecificCharacterSet="ISO_IR 100", OtherPatientIDsSequence=[other],
                       ReferringPhysicianIdentificationSequence=[physician])
    path.write_bytes(path.read_bytes().replace(b"ISO_IR 100", b"ISO_IR 192"))  # the bytes stay Latin-1
    for ds in exported(path, tmp_path):
        [item] = ds.OtherPatientIDsSequence
        assert (item.PatientID, item.IssuerOfPatientID) == ("MÜLLER-42", "Hôpital Saint-Éloi")
        assert "ReferringPhysicianIdentificationSequence" not in ds
    assert [n.split(" is ")[0] for n in source_notes(path)] == [
        "the source's OtherPatientIDsSequence > PatientID", "the source's OtherPatientIDsSequence > IssuerOfPatientID",
        "the source's ReferringPhysicianIdentificationSequence"]
    assert "left out" in source_notes(path)[-1] and "InstitutionName" in source_notes(path)[-1]


@pytest.mark.parametrize("damaged", [[0, 0], [0.3]])
def test_a_damaged_pixel_spacing_gives_way_to_the_imager_spacing_in_reading_and_in_the_seg(tmp_path, damaged):
    """PixelSpacing 0\\0 (or one value) hid a good ImagerPixelSpacing: the reader assumed 1.0 mm
    (areas in mm² five-fold off) and the SEG was written with a pixel spacing of 0\\0."""
    from SSLAnomalyLib.core.reading.images import read_radiograph

    path = source_file(tmp_path / "cxr.dcm", PixelSpacing=damaged, ImagerPixelSpacing=[0.2, 0.15])
    image = read_radiograph(path)
    assert image.spacing[:2] == (0.15, 0.2) and not any("1.0 mm assumed" in w for w in image.warnings)
    seg, _ = exported(path, tmp_path)
    assert [float(v) for v in seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing] == [0.2, 0.15]


def test_the_report_carries_the_thresholds_the_scores_are_judged_against(tmp_path):
    """The SR held the image's score and the findings' but neither threshold: its reader could not tell
    why the image was called abnormal. Each score now carries its threshold as the upper limit of its
    normal range (TID 310/312), the image's with its normality."""
    _, sr = exported(source_file(tmp_path / "cxr.dcm"), tmp_path)
    content = hd.sr.srread(tmp_path / "sr.dcm").content
    [image_score] = content.get_image_measurement_groups()[0].get_measurements()
    [finding_score] = [m for m in content.get_planar_roi_measurement_groups()[0].get_measurements()
                       if m.name.meaning == "Anomaly score"]
    assert properties(image_score) == {"Normal Range Upper Limit": 1.7, "Normality": "Abnormal"}
    assert properties(finding_score) == {"Normal Range Upper Limit": 0.9}


@pytest.mark.parametrize("sensitivity", [0.9, 1.2])
def test_the_pixel_threshold_the_reader_set_is_stated_where_it_is_not_the_calibrated_one(tmp_path, sensitivity):
    """Slicer cuts the SEG's segments at the sensitivity the reader set with the slider, which neither
    object stated: a reader in the PACS could not tell they were cut at another threshold than the one
    the findings' scores are judged against. The SR gives it as a measurement of the image, the SEG in
    its model segments' algorithm parameters and its series description."""
    path = source_file(tmp_path / "cxr.dcm")
    source = read_source(path)
    result = dict(RESULT, sensitivity=sensitivity)
    make_sr(source, [FINDING], result).save_as(tmp_path / "sr.dcm")
    mask = np.zeros((1, ROWS, COLS), bool)
    mask[0, 6:31, 4:21] = True
    make_seg(source, [FindingMask(FINDING, mask)], result).save_as(tmp_path / "seg.dcm")
    image, = hd.sr.srread(tmp_path / "sr.dcm").content.get_image_measurement_groups()
    stated = {m.name.meaning: m.value for m in image.get_measurements()}
    seg = hd.seg.segread(tmp_path / "seg.dcm")
    [algorithm] = seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence
    if sensitivity == RESULT["pixel_threshold"]:
        assert set(stated) == {"Anomaly score"}
        assert algorithm.AlgorithmParameters == "model=adult-test,pixel_threshold=0.9 (calibrated)"
        assert seg.SeriesDescription == "SSLAnomaly findings"
    else:
        assert stated == {"Anomaly score": 2.0, "Pixel threshold set by the reader: SEG segments cut at it": 1.2}
        assert algorithm.AlgorithmParameters == ("model=adult-test,pixel_threshold=1.2 (set by the reader; "
                                                 "calibrated 0.9)")
        assert seg.SeriesDescription == "SSLAnomaly findings, cut at the reader's pixel threshold"


@pytest.mark.parametrize("score, said", [(float("nan"), "Not a number"), (float("inf"), "Positive Infinity"),
                                         (float("-inf"), "Negative Infinity")])
def test_a_score_that_is_not_a_number_is_said_in_the_report_not_the_end_of_it(tmp_path, score, said):
    """A NaN or infinite score (highdicom refuses it: 'Cannot encode non-finite floats as DICOM decimal
    strings') ended the export. The measurement is left out and an evaluation says why (CID 42)."""
    path = source_file(tmp_path / "cxr.dcm")
    source = read_source(path)
    make_sr(source, [dict(FINDING, score=score)], dict(RESULT, score=score)).save_as(tmp_path / "sr.dcm")
    content = hd.sr.srread(tmp_path / "sr.dcm").content
    image, = content.get_image_measurement_groups()
    finding, = content.get_planar_roi_measurement_groups()
    assert image.get_measurements() == [] and [m.name.meaning for m in finding.get_measurements()] == ["Area"]
    for group in (image, finding):
        evaluations = [(e.name.meaning, e.value.meaning) for e in group.get_qualitative_evaluations()]
        assert ("Anomaly score", said) in evaluations


def properties(measurement) -> dict:
    """The numbers and codes below a measurement's value item (its TID 310 properties), by concept name."""
    items = measurement[0].ContentSequence
    return {item.ConceptNameCodeSequence[0].CodeMeaning: float(item.MeasuredValueSequence[0].NumericValue)
            if item.ValueType == "NUM" else item.ConceptCodeSequence[0].CodeMeaning
            for item in items if item.ValueType in ("NUM", "CODE")}


@pytest.mark.parametrize("orientation, written", [(None, ""), ("", ""), ("L", ""), (["X", "Y"], ""),
                                                  (["P", "FR"], ["P", "FR"])])
def test_the_seg_always_carries_a_patient_orientation_the_standard_allows(tmp_path, orientation, written):
    """A source without PatientOrientation (most CR, many DX) gave a SEG without it, which its General Image module
    requires (type 2C: a SEG of a projection has no plane orientation), and one with a damaged value ('L', 'X\\\\Y')
    passed it on: dciodvfy errors, SEGs a strict PACS refuses. It is now always there, empty where unknown or invalid
    (which is said), and the source's where valid."""
    path = source_file(tmp_path / "cxr.dcm", **({} if orientation is None else {"PatientOrientation": orientation}))
    seg, _ = exported(path, tmp_path)
    assert "PatientOrientation" in seg and (list(seg.PatientOrientation) if written else seg.PatientOrientation) == written
    assert any("PatientOrientation" in note for note in source_notes(path)) == (orientation in ("L", ["X", "Y"]))


def test_each_export_is_a_new_series_numbered_and_described_alike(tmp_path):
    """What README says a PACS receives when a case is exported again: new series and instances (never the earlier
    export's UIDs), with the same series number and description, referencing the same source image."""
    path = source_file(tmp_path / "cxr.dcm")
    (tmp_path / "first").mkdir(), (tmp_path / "again").mkdir()
    first, again = exported(path, tmp_path / "first"), exported(path, tmp_path / "again")
    for one, two in zip(first, again):
        assert one.SeriesInstanceUID != two.SeriesInstanceUID and one.SOPInstanceUID != two.SOPInstanceUID
        assert (one.SeriesNumber, one.SeriesDescription) == (two.SeriesNumber, two.SeriesDescription)
        assert one.StudyInstanceUID == two.StudyInstanceUID == pydicom.dcmread(path).StudyInstanceUID
    assert [ds.SeriesNumber for ds in first] == [901, 902]
