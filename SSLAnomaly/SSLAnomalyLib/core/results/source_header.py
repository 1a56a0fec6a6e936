"""The source radiograph's patient and study attributes, made fit for the SEG and SR to copy.

highdicom copies the root attributes of the source's Patient and Study modules as they are, and real
files hold values the standard does not allow: PatientSex 'U', a date '00000000', an AccessionNumber
over the 16 characters of its VR. highdicom refuses some (and with them the whole export); the others
would make objects a strict PACS refuses. Each such value is written empty, as type 2 allows for what is
unknown, and said. highdicom copies the sequences of those modules too (OtherPatientIDsSequence,
ReferringPhysicianIdentificationSequence, ProcedureCodeSequence...), all type 3 for a human patient: one
that holds such a value is left out, and said. The patient's ID and its issuer, by which a PACS files an object under its patient,
are never emptied: a source whose ID is invalid has no SEG and SR (an empty ID files them under no one).

The SEG carries the source's Patient Orientation (the directions of its rows and columns) as well: one the
standard does not allow (not two values of the letters L, R, A, P, H, F) is written empty too, and said.

Text whose bytes are not in the character set the source declares (a modality that says UTF-8 and writes
Latin-1, common in real files) is read as Latin-1, the set such files are written in, not with pydicom's
replacement characters: the patient's name in the SEG and SR (UTF-8) is the readable one, never 'M�ller';
and so is the text inside the sequences copied.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import highdicom as hd
from highdicom._standard_utils import get_iod_module_map, get_module_attribute_map, get_sop_class_iod_map
from pydicom import Dataset, config
from pydicom.charset import convert_encodings, python_encoding
from pydicom.datadict import dictionary_has_tag, dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement, convert_raw_data_element
from pydicom.multival import MultiValue
from pydicom.valuerep import DA, TM, validate_value

TYPE2_PATIENT_STUDY = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
                       "StudyID", "AccessionNumber", "ReferringPhysicianName")
IDENTITY = ("PatientID", "IssuerOfPatientID")
CHECKED_BY_HIGHDICOM = {"PatientSex": (hd.PatientSexValues, "M, F or O"), "PatientBirthDate": (DA, "a date"),
                        "StudyDate": (DA, "a date"), "StudyTime": (TM, "a time")}
ORIENTATION = re.compile(r"[LRAPHF]{1,3}")  # a main direction, refined by one or two more letters
TEXT_VRS = {"LO", "LT", "PN", "SH", "ST", "UC", "UT"}  # those the Specific Character Set applies to
MISDECLARED = python_encoding["ISO_IR 100"]  # Latin-1
STRING_VRS = {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UR"}  # not UI: a study's
# UID, valid or not, is how the PACS holds it, and the SEG and SR must reference it as it is


def copied_keywords(source: Dataset) -> list[str]:
    """What highdicom copies from `source` into a SEG or SR (copy_patient_and_study_information: the root
    attributes of the Patient and Study modules of its IOD), from highdicom's own tables."""
    iod = get_sop_class_iod_map().get(str(source.get("SOPClassUID", "")))
    modules = get_iod_module_map().get(iod, [])
    return [a["keyword"] for m in modules if m["ie"] in ("Patient", "Study")
            for a in get_module_attribute_map()[m["key"]] if not a["path"]]


def invalid_values(source: Dataset) -> dict[str, str]:
    """{keyword: why} for each copied value that pydicom's validation of its VR (length, characters,
    format) or highdicom's (PatientSex M/F/O, a date or time it can parse) refuses (`_refusal`); for a
    sequence, those inside its items."""
    invalid = {}
    for keyword in [k for k in copied_keywords(source) if k in source]:
        element = source.data_element(keyword)
        if element.VR == "SQ":
            refused = [f"{where} ({why})" for where, why in _refused_inside(element)]
            why = f"it holds a value the standard does not allow: {'; '.join(refused)}" if refused else None
        else:
            why = _refusal(keyword, element.VR, element.value)
        if why:
            invalid[keyword] = why
    return invalid


def _refused_inside(sequence) -> Iterator[tuple[str, str]]:
    """(where, why) for each value inside the items of `sequence`, at any depth, that `_refusal` refuses."""
    for element in [e for item in sequence.value for e in item]:
        if element.VR == "SQ":
            yield from ((f"{element.keyword} > {where}", why) for where, why in _refused_inside(element))
        elif why := _refusal(element.keyword, element.VR, element.value):
            yield element.keyword, why


def _refusal(keyword: str, vr: str, value) -> str | None:
    """Why `value` is refused, or None; never quoting it (a birth date is the patient's, and the notes
    reach logs and the findings JSON): pydicom's length messages quote none, its others and highdicom's do."""
    if vr not in STRING_VRS or value in (None, ""):
        return None
    try:
        for one in value if isinstance(value, MultiValue) else [value]:
            validate_value(vr, str(one), config.RAISE)
    except (TypeError, ValueError) as e:
        return str(e) if "length" in str(e) else f"not a valid {vr} (value not shown)"
    if keyword in CHECKED_BY_HIGHDICOM:
        check, takes = CHECKED_BY_HIGHDICOM[keyword]
        try:
            check(value)
        except (TypeError, ValueError):
            return f"highdicom takes only {takes} (value not shown)"
    return None


def identity_problem(source: Dataset) -> str | None:
    """Why the patient's identity cannot be copied, or None."""
    invalid = invalid_values(source)
    wrong = [f"{keyword} ({invalid[keyword]})" for keyword in IDENTITY if keyword in invalid]
    return (f"has a {' and a '.join(wrong)} the standard does not allow: a SEG and SR with it would be invalid, "
            "and without it filed under no patient") if wrong else None


def read_as_stored(source: Dataset) -> list[str]:
    """Read each text value highdicom copies from `source` (those inside the sequences it copies too)
    whose bytes the declared character set cannot decode as Latin-1 instead (see above); one line per
    value. Before anything reads them: a value read is decoded."""
    declared = source.get("SpecificCharacterSet") or "ISO_IR 6"
    copied = sorted(tag for tag in map(tag_for_keyword, copied_keywords(source)) if tag in source)
    return [f"the source's {where} is not in the character set it declares ({declared}): read as Latin-1 (ISO_IR 100)"
            for where in _read_latin1(source, copied, declared)]


def _read_latin1(dataset: Dataset, tags, declared: str) -> list[str]:
    """Where each text value at `tags` of `dataset`, or inside the items of a sequence among them, was
    read as Latin-1 ('OtherPatientIDsSequence > IssuerOfPatientID'); an item that declares its own
    character set is read in it."""
    declared = dataset.get("SpecificCharacterSet") or declared
    encoding = convert_encodings(declared)[0]
    read = []
    for tag in tags:
        raw = dataset.get_item(tag)
        vr = raw.VR or (dictionary_VR(tag) if dictionary_has_tag(tag) else None)  # implicit VR
        if vr == "SQ":
            element = dataset[tag]
            read += [f"{element.keyword} > {where}" for item in element.value
                     for where in _read_latin1(item, list(item.keys()), declared)]
        elif vr in TEXT_VRS and isinstance(raw, RawDataElement) and raw.value and b"\x1b" not in raw.value:
            try:  # \x1b above: code extensions, which pydicom decodes itself
                raw.value.decode(encoding)
            except UnicodeDecodeError:
                dataset[tag] = convert_raw_data_element(raw, encoding=MISDECLARED)
                read.append(dataset[tag].keyword or str(tag))
    return read


def fit_to_copy(source: Dataset) -> list[str]:
    """Make `source` fit to copy: its text read as stored (read_as_stored), absent type 2 patient and
    study attributes present but empty (many real files omit some), and invalid values empty (but the
    identity: see identity_problem), and so is an invalid PatientOrientation. One line per value read as Latin-1 or
    emptied, saying why."""
    notes = read_as_stored(source)
    for keyword in TYPE2_PATIENT_STUDY:
        if keyword not in source:
            setattr(source, keyword, "")
    for keyword, why in invalid_values(source).items():
        if keyword in IDENTITY:
            continue
        if source.data_element(keyword).VR == "SQ":  # type 3 (or a non-human patient's): left out whole
            delattr(source, keyword)
            notes.append(f"the source's {keyword} is left out: {why}")
        else:
            setattr(source, keyword, "")
            notes.append(f"the source's {keyword} is left empty: {why}")
    if not _valid_orientation(source.get("PatientOrientation")):
        source.PatientOrientation = ""
        notes.append("the source's PatientOrientation is left empty: not two values of the letters L, R, A, P, H, F "
                     "(a human patient's)")
    return notes


def _valid_orientation(value) -> bool:
    """Whether a Patient Orientation is empty (unknown) or two directions of a human patient, e.g. L\\F."""
    values = list(value) if isinstance(value, MultiValue) else [value] if value else []
    return not values or len(values) == 2 and all(ORIENTATION.fullmatch(str(v)) for v in values)
