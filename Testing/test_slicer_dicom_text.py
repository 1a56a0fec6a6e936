"""DICOM SEG and SR text as a PACS reads it: a reader's accented label and note are UTF-8 under a
declared Specific Character Set (the source's own names re-encoded), a backslash in a label does not
split it into two values, and the SEG carries the source's Patient Orientation. Files are written
and read back with pydicom; the source is a small DX written here in Latin-1."""

import numpy as np
import pydicom
import pytest

from messy_corpus import write_dicom
from SSLAnomalyLib.core.results.dicom_export import make_seg, make_sr, one_value, read_source, source_notes
from SSLAnomalyLib.core.results.segments import FindingMask

LABEL = "épanchement\\pleural"  # a reader's label with an accent and a backslash
NOTE = "base droite, à revoir"
PATIENT = "Müller^Zoë"
RESULT = {"model": "adult-test", "score": 2.0, "abnormal": True, "threshold": 1.7, "pixel_threshold": 0.9,
          "sensitivity": 0.9}


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    path = tmp_path_factory.mktemp("latin1") / "cxr.dcm"
    write_dicom(path, np.random.default_rng(0).integers(0, 4096, (64, 48)), spacing=(0.2, 0.2))
    ds = pydicom.dcmread(path)
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName = PATIENT
    ds.PatientOrientation = ["P", "F"]
    ds.save_as(path)
    assert b"M\xfcller^Zo\xeb" in path.read_bytes()  # the source really is Latin-1
    return read_source(path)


def finding(label: str, note: str) -> dict:
    return {"id": 1, "label": label, "note": note, "origin": "reader", "status": "confirmed",
            "bbox_ijk": [4, 6, 20, 30], "score": 1.5, "area_mm2": 12.0}


@pytest.fixture(scope="module")
def written(source, tmp_path_factory):
    folder = tmp_path_factory.mktemp("out")
    mask = np.zeros((1, 64, 48), dtype=bool)
    mask[0, 6:31, 4:21] = True
    record = finding(LABEL, NOTE)
    make_seg(source, [FindingMask(record, mask)], RESULT).save_as(folder / "seg.dcm")
    make_sr(source, [record], RESULT).save_as(folder / "sr.dcm")
    return pydicom.dcmread(folder / "seg.dcm"), pydicom.dcmread(folder / "sr.dcm"), folder


def test_both_objects_declare_utf8_and_keep_the_patients_accented_name(written):
    seg, sr, folder = written
    for ds, name in ((seg, "seg.dcm"), (sr, "sr.dcm")):
        assert ds.SpecificCharacterSet == "ISO_IR 192"
        assert str(ds.PatientName) == PATIENT
        assert "Müller^Zoë".encode("utf-8") in (folder / name).read_bytes()  # re-encoded, not copied as Latin-1


def test_a_name_in_latin1_under_a_declared_utf8_reaches_both_objects_readable(tmp_path):
    """A source that declares UTF-8 (ISO_IR 192) but holds its names in Latin-1 bytes, as some modalities
    write them, gave 'M\ufffdller^Zo\ufffd' in the SEG and SR: the patient's name changed in the PACS."""
    path = tmp_path / "cxr.dcm"
    write_dicom(path, np.random.default_rng(0).integers(0, 4096, (64, 48)), spacing=(0.2, 0.2))
    ds = pydicom.dcmread(path)
    ds.SpecificCharacterSet, ds.PatientName, ds.ReferringPhysicianName = "ISO_IR 100", PATIENT, "Gérard^Hélène"
    ds.save_as(path)
    path.write_bytes(path.read_bytes().replace(b"ISO_IR 100", b"ISO_IR 192"))  # the bytes stay Latin-1
    record = finding("opacité", "à revoir")
    for ds in (make_seg(read_source(path), [FindingMask(record, np.ones((1, 64, 48), bool))], RESULT),
               make_sr(read_source(path), [record], RESULT)):
        ds.save_as(tmp_path / "out.dcm")
        written = pydicom.dcmread(tmp_path / "out.dcm")
        assert (str(written.PatientName), str(written.ReferringPhysicianName)) == (PATIENT, "Gérard^Hélène")
        assert PATIENT.encode("utf-8") in (tmp_path / "out.dcm").read_bytes()
    assert [n.split(" is ")[0] for n in source_notes(path)] == ["the source's ReferringPhysicianName",
                                                                "the source's PatientName"]


def test_a_label_with_an_accent_and_a_backslash_stays_one_readable_value(written):
    seg, sr, folder = written
    segment = seg.SegmentSequence[0]
    assert segment.SegmentLabel == "F1 épanchement/pleural"
    assert segment["SegmentLabel"].VM == 1
    meaning = segment.SegmentedPropertyTypeCodeSequence[0]
    assert meaning.CodeMeaning == "épanchement/pleural" and meaning["CodeMeaning"].VM == 1
    assert meaning.CodeValue.startswith("EPANCHE_") and len(meaning.CodeValue) == 16 and meaning.CodeValue.isascii()
    assert "épanchement".encode("utf-8") in (folder / "seg.dcm").read_bytes()


def test_the_reports_roi_carries_the_label_and_note_in_utf8(written):
    _, sr, folder = written
    texts = [item.TextValue for item in _content_items(sr) if "TextValue" in item]
    assert "F1 épanchement/pleural: base droite, à revoir" in texts
    assert "à revoir".encode("utf-8") in (folder / "sr.dcm").read_bytes()


def test_a_long_note_reaches_the_report_whole(source, tmp_path):
    """A Tracking Identifier is TEXT (UT, unlimited): the reader's note is not cut at an LO's 64 characters."""
    import highdicom as hd

    note = ("opacité basale droite, probablement une pneumonie; comparer avec le cliché du 2024-03-02 "
            "et corréler à la CRP")
    make_sr(source, [finding("consolidation", note)], RESULT
            ).save_as(tmp_path / "sr.dcm")
    group, = hd.sr.srread(tmp_path / "sr.dcm").content.get_planar_roi_measurement_groups()
    assert group.tracking_identifier == f"F1 consolidation: {note}"


def test_labels_alike_in_their_first_letters_get_codes_of_their_own(source, tmp_path):
    """Labels were coded by their first 16 letters: 'consolidation right upper' and '... lower' shared one
    code value with two meanings, which a PACS or a query by code merges. Read back with highdicom, each
    label has its own code in the SEG and the SR, and the same label the same code in another export."""
    import highdicom as hd

    labels = ["consolidation right upper", "consolidation right lower"]
    records = [{**finding(label, ""), "id": i} for i, label in enumerate(labels, 1)]
    masks = [FindingMask(r, np.ones((1, 64, 48), bool)) for r in records]
    codes = []
    for n in (1, 2):  # two exports of the same findings
        make_seg(source, masks, RESULT).save_as(tmp_path / f"seg{n}.dcm")
        make_sr(source, records, RESULT).save_as(tmp_path / f"sr{n}.dcm")
        seg = hd.seg.segread(tmp_path / f"seg{n}.dcm")
        sr = hd.sr.srread(tmp_path / f"sr{n}.dcm")
        segmented = [seg.get_segment_description(i).segmented_property_type for i in (1, 2)]
        found = [g.finding_type for g in sr.content.get_planar_roi_measurement_groups()]
        assert [c.meaning for c in segmented] == [c.meaning for c in found] == labels
        assert [c.value for c in segmented] == [c.value for c in found]
        codes.append([c.value for c in found])
    assert codes[0] == codes[1] and len(set(codes[0])) == 2


def test_the_seg_copies_the_sources_patient_orientation(written, source):
    seg, _, _ = written
    assert list(seg.PatientOrientation) == ["P", "F"] == list(source.PatientOrientation)


def test_one_value_replaces_separators_and_control_characters():
    assert one_value("a\\b\nc\td") == "a/b c d"
    assert one_value("x" * 100) == "x" * 64


def _content_items(dataset):
    for item in dataset.get("ContentSequence", []):
        yield item
        yield from _content_items(item)
