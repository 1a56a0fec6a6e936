"""DICOM objects a PACS accepts for a reviewed case: a SEG with one segment per finding kept after
review (and shown to the reader: `review.reported`), and a Comprehensive SR with the image-level result
and one planar ROI per kept finding.
Both are written with highdicom from the source radiograph's own dataset, so they carry its
patient and study and reference its series and instance.

Only single-frame sources are supported (a CR/DX/... radiograph): a finding's box is a 2D region
of that one image. Pure Python (no Slicer), so that the CLI can use it as well.

A reader's labels and notes are free text in any language: both objects are UTF-8 (Specific
Character Set ISO_IR 192, the source's names re-encoded; bytes the source's declared set cannot decode
are read as Latin-1: source_header), and a backslash, which separates the values of a DICOM string,
is written as '/' so that a label stays one value.
"""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata

import highdicom as hd
import numpy as np
import pydicom
from highdicom.sr import CodedConcept
from pydicom import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

from SSLAnomalyLib import __version__
from SSLAnomalyLib.core.reading.dicom_header import dataset_start
from SSLAnomalyLib.core.reading.dicom_reader import pixel_spacing, usable_spacing
from SSLAnomalyLib.core.results.review import reported
from SSLAnomalyLib.core.results.segments import FindingMask
from SSLAnomalyLib.core.results.source_header import fit_to_copy, identity_problem

SCHEME = "99SSLA"  # private coding scheme for what no public code names
ANOMALY_SCORE = CodedConcept("ANOMALY_SCORE", SCHEME, "Anomaly score")
REVIEW_STATUS = CodedConcept("REVIEW_STATUS", SCHEME, "Review status")
CHEST_RADIOGRAPH = CodedConcept("399208008", "SCT", "Plain chest X-ray")
MANUFACTURER = "SSLAnomaly"
SEG_SERIES_NUMBER, SR_SERIES_NUMBER = 901, 902
CHARACTER_SET = "ISO_IR 192"  # UTF-8
IMAGE_THRESHOLD = "Image threshold: an image scoring above it is abnormal"
NON_FINITE = {"nan": codes.DCM.NotANumber, "inf": codes.DCM.PositiveInfinity, "-inf": codes.DCM.NegativeInfinity}
PIXEL_THRESHOLD = "Pixel threshold: heatmap pixels at or above it are suspicious; a finding's score is its maximum"
READER_THRESHOLD = CodedConcept("READER_THRESHOLD", SCHEME, "Pixel threshold set by the reader: SEG segments cut at it")
HIDDEN_FINDINGS = CodedConcept("HIDDEN_FINDINGS", SCHEME, "Model findings below the reader's threshold, not reported")

REFERENCED_UIDS = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")


class DicomExportError(ValueError):
    """A case that cannot be exported to DICOM, with the reason."""


def read_source(path, instance_uids=None) -> Dataset:
    """The source radiograph's dataset, fit for the SEG and SR to copy (source_header.fit_to_copy: absent
    type 2 attributes present but empty, a value the standard does not allow, such as PatientSex 'U' or an
    AccessionNumber over 16 characters, empty). With `instance_uids` (those of the image the findings were
    made on), a file that now holds another image (file names like IM-0001.dcm repeat across patients) is
    refused. A bare data set (no preamble), which the reader takes, is read too."""
    source = pydicom.dcmread(path, force=dataset_start(path) == 0)
    if instance_uids is not None and source.get("SOPInstanceUID") not in instance_uids:
        raise DicomExportError(f"{path}: now holds another image (SOP Instance UID {source.get('SOPInstanceUID')}), "
                               "not the one the findings were made on; its patient and study would be wrong, "
                               "so no DICOM is written")
    fit_to_copy(source)
    if "PixelSpacing" in source and usable_spacing(source.PixelSpacing) is None:
        del source.PixelSpacing  # damaged (0\0, one value): highdicom would copy it; the reader took another
    return source


def unexportable(source: Dataset) -> str | None:
    """Why no SEG and SR can be made from `source`, or None: they are made on its one frame and
    reference its study, series and instance by UID."""
    frames = int(source.get("NumberOfFrames", 1) or 1)
    if frames != 1:
        return f"has {frames} frames (DICOM export supports single-frame radiographs only)"
    missing = [keyword for keyword in REFERENCED_UIDS if not source.get(keyword)]
    if missing:
        return f"has no {', '.join(missing)}, which the SEG and SR must reference"
    return identity_problem(source)


def source_problem(path) -> str | None:
    """`unexportable` from the header of the DICOM file at `path`, or why it cannot be read: asked
    before an export, so that such a source leaves its SEG and SR out instead of failing the whole export."""
    try:
        header = pydicom.dcmread(path, stop_before_pixels=True, force=dataset_start(path) == 0)
    except Exception as e:  # whatever the reason, it is this file's, and is said
        return f"cannot be read as DICOM ({type(e).__name__})"
    return unexportable(header)


def source_notes(path) -> list[str]:
    """What of the header of the DICOM file at `path` (one `source_problem` passes) the SEG and SR leave
    out, one line each (source_header.fit_to_copy), for the reader who sends them to a PACS."""
    return fit_to_copy(pydicom.dcmread(path, stop_before_pixels=True, force=dataset_start(path) == 0))


def check_source(source: Dataset) -> None:
    why = unexportable(source)
    if why:
        raise DicomExportError(f"'{getattr(source, 'filename', None) or 'the source'}' {why}")


def one_value(text: str, length: int | None = 64) -> str:
    """Free text as one value of a DICOM string (LO and the like): no backslash (the value separator,
    written as '/'), no control characters, at most `length` characters (None: UT, unlimited)."""
    return re.sub(r"[\x00-\x1f\x7f]", " ", text.replace("\\", "/"))[:length]


def _label_concept(label: str) -> CodedConcept:
    """The private code of a label, the label itself as the meaning. The code value (at most 16
    characters) is the label's first ASCII letters (accents dropped), to be read, and a digest of the
    whole label, so that labels alike up to there ('consolidation right upper' and '... lower') get
    codes of their own, which a PACS or a query by code keeps apart, and a label the same code in
    every export."""
    text = unicodedata.normalize("NFC", one_value(label, None)) or "anomaly"
    ascii_label = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().upper()
    prefix = re.sub(r"[^A-Z0-9.-]+", "_", ascii_label).strip("_")[:7] or "LABEL"
    digest = hashlib.sha256(text.encode()).hexdigest()[:8].upper()
    return CodedConcept(f"{prefix}_{digest}", SCHEME, text[:64])


def _reader_threshold(result: dict) -> float | None:
    """The pixel threshold the reader set with the sensitivity slider (`result["sensitivity"]`), where it
    is not the calibrated one: the model's segments are cut at it, which a reader in the PACS is told."""
    sensitivity = float(result["sensitivity"])
    return None if sensitivity == float(result["pixel_threshold"]) else sensitivity


def _segment_algorithm(segment: FindingMask, result: dict) -> hd.AlgorithmIdentificationSequence | None:
    """The model that made a finding and what its segment is: for a segment of heat (not a diffuse finding's lung
    fields), the pixel threshold it was cut at; for a `whole_box` one, the box the reader saw, where no cut was made
    (kept or moved by the reader where no heat reaches the threshold). None for the reader's own finding."""
    record = segment.record
    if record["origin"] == "reader":
        return None
    parameters = {"model": record["model"]}
    reader = _reader_threshold(result)
    threshold = (f"{result['pixel_threshold']:.6g} (calibrated)" if reader is None else
                 f"{reader:.6g} (set by the reader; calibrated {result['pixel_threshold']:.6g})")
    if segment.whole_box:
        parameters["segment"] = ("its whole box as the reader saw it, not cut: " + (
            "no lung field in it" if record.get("extent") == "diffuse"
            else f"none of its heat in the lung fields reaches the pixel threshold {threshold}"))
    elif record.get("extent") != "diffuse":
        parameters["pixel_threshold"] = threshold
    return hd.AlgorithmIdentificationSequence(name=MANUFACTURER, family=codes.DCM.ArtificialIntelligence,
                                              version=__version__, parameters=parameters)


def _segment_description(number: int, segment: FindingMask, result: dict) -> hd.seg.SegmentDescription:
    """A segment: the reader's own drawn by hand, a model finding's by the model, with the reader where confirmed
    (its box where `whole_box`: the model's box, or where the reader moved it)."""
    r = segment.record
    return hd.seg.SegmentDescription(
        segment_number=number, segment_label=one_value(f"F{r['id']} {r['label']}"),
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=_label_concept(r["label"]),
        algorithm_type="MANUAL" if r["origin"] == "reader" else "SEMIAUTOMATIC" if r["status"] == "confirmed" else "AUTOMATIC",
        algorithm_identification=_segment_algorithm(segment, result),
        tracking_id=f"F{r['id']}", tracking_uid=generate_uid())


def make_seg(source: Dataset, masks: list[FindingMask], result: dict) -> Dataset | None:
    """A binary SEG of the kept findings on the source's pixel grid (None if no finding is kept), its
    equipment the case's model `result["model"]`; each model finding's segment names the model that made
    it (`record["model"]`: one the reader kept through a detection with another model is not the case's)
    and the pixel threshold its heat was cut at, the reader's where set (then the series says so too), or that it
    is its whole box (`_segment_algorithm`). `masks` are on (1, rows, cols), as from `finding_masks`."""
    check_source(source)
    if not masks:
        return None
    descriptions = [_segment_description(n, segment, result) for n, segment in enumerate(masks, start=1)]
    pixels = np.stack([segment.mask[0] for segment in masks], axis=-1)[None].astype(np.uint8)
    seg = hd.seg.Segmentation(
        source_images=[source], pixel_array=pixels, segmentation_type="BINARY",
        segment_descriptions=descriptions, series_instance_uid=generate_uid(), series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer=MANUFACTURER,
        manufacturer_model_name=one_value(str(result["model"])), software_versions=__version__,
        device_serial_number="0", series_description="SSLAnomaly findings" + (
            "" if _reader_threshold(result) is None else ", cut at the reader's pixel threshold"),
        omit_empty_frames=False, pixel_measures=_pixel_measures(source),
        specific_character_set=CHARACTER_SET)
    # type 2C of the General Image module, which a SEG without plane orientation must carry: empty for unknown
    seg.PatientOrientation = source.get("PatientOrientation") or ""
    return seg


def _sr_algorithm(model_id: str) -> hd.sr.AlgorithmIdentification:
    return hd.sr.AlgorithmIdentification(name=MANUFACTURER, version=__version__, parameters=[f"model={model_id}"])


def _pixel_measures(source: Dataset) -> hd.PixelMeasuresSequence | None:
    """The source's pixel spacing as the reader took it, with a slice thickness: a projection radiograph
    has none, but readers (highdicom's own among them) require it in a SEG; 1 mm is what Slicer assumes too."""
    spacing = pixel_spacing(source)
    if spacing is None:
        return None
    return hd.PixelMeasuresSequence(pixel_spacing=[float(v) for v in spacing],
                                    slice_thickness=float(source.get("SliceThickness", 1.0) or 1.0))


def _score(value: float, threshold: float, judged: str, normality: Code | None = None,
           algorithm_id: hd.sr.AlgorithmIdentification | None = None
           ) -> tuple[list[hd.sr.Measurement], list[hd.sr.QualitativeEvaluation]]:
    """An anomaly score as a measurement with the threshold it is judged against, the upper limit of its
    normal range (TID 312, calibrated on normal radiographs), and how it is judged (`judged`). A score
    that is not a number, or infinite, has no decimal string in DICOM (highdicom refuses it, and with it
    the report): it is left out, and a qualitative evaluation says which it is (CID 42 codes)."""
    if not math.isfinite(value):
        return [], [hd.sr.QualitativeEvaluation(ANOMALY_SCORE, NON_FINITE[str(float(value))])]
    limit = hd.sr.NumContentItem(codes.SCT.NormalRangeUpperLimit, float(threshold), codes.UCUM.NoUnits,
                                 relationship_type="HAS PROPERTIES")
    normal_range = hd.sr.NormalRangeProperties([limit], description=f"{judged}; set on normal radiographs")
    properties = hd.sr.MeasurementProperties(normality=normality, normal_range_properties=normal_range)
    return [hd.sr.Measurement(name=ANOMALY_SCORE, value=float(value), unit=codes.UCUM.NoUnits,
                              algorithm_id=algorithm_id, properties=properties)], []


def make_sr(source: Dataset, records: list[dict], result: dict) -> Dataset:
    """A Comprehensive SR: the image's anomaly score against the image threshold, and one planar ROI
    (box, score against the pixel threshold, area, review status, label and note) per finding `reported`
    (not rejected, nor hidden by the sensitivity slider), a model finding's with the model that made it
    (`record["model"]`), the reader's with none.
    The label and note name the ROI in its Tracking Identifier, a TEXT item: the note is kept whole. The
    pixel threshold the reader set, where it is not the calibrated one, is a measurement of the image: the
    SEG's segments are cut at it, not at the threshold the findings' scores are judged against; so is the
    number of model findings it hid, where there are any (the findings JSON and CSV hold them)."""
    check_source(source)
    image_ref = hd.sr.SourceImageForRegion.from_source_image(source)
    algorithm = _sr_algorithm(result["model"])
    verdict = codes.SCT.Abnormal if result["abnormal"] else codes.SCT.Normal
    measurements, evaluations = _score(result["score"], result["threshold"], IMAGE_THRESHOLD, verdict, algorithm)
    reader = _reader_threshold(result)
    if reader is not None:
        measurements.append(hd.sr.Measurement(name=READER_THRESHOLD, value=reader, unit=codes.UCUM.NoUnits))
    hidden = sum(not r.get("shown", True) for r in records)
    if hidden:
        measurements.append(hd.sr.Measurement(name=HIDDEN_FINDINGS, value=hidden, unit=codes.UCUM.NoUnits))
    groups = [hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier="Whole image"),
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(source)],
        algorithm_id=algorithm,
        measurements=measurements,
        qualitative_evaluations=[*evaluations, hd.sr.QualitativeEvaluation(codes.DCM.Finding, verdict)])]
    for r in filter(reported, records):
        i0, j0, i1, j1 = r["bbox_ijk"]  # pixel (i, j) covers [i, i+1) x [j, j+1) in SCOORD coordinates
        box = np.array([[i0, j0], [i1 + 1, j0], [i1 + 1, j1 + 1], [i0, j1 + 1], [i0, j0]], dtype=float)
        name = f"F{r['id']} {r['label']}" + (f": {r['note']}" if r["note"] else "")
        scores, evaluations = _score(r["score"], result["pixel_threshold"], PIXEL_THRESHOLD)
        groups.append(hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=one_value(name, None)),
            referenced_region=hd.sr.ImageRegion(graphic_type="POLYLINE", graphic_data=box, source_image=image_ref),
            finding_type=_label_concept(r["label"]), finding_category=codes.SCT.MorphologicallyAbnormalStructure,
            algorithm_id=None if r["origin"] == "reader" else _sr_algorithm(r["model"]),
            measurements=[*scores, hd.sr.Measurement(name=codes.SCT.Area, value=float(r["area_mm2"]),
                                                     unit=codes.UCUM.SquareMillimeter)],
            qualitative_evaluations=[*evaluations, hd.sr.QualitativeEvaluation(
                REVIEW_STATUS, CodedConcept(r["status"].upper(), SCHEME, r["status"]))]))
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(), name=MANUFACTURER, model_name=one_value(str(result["model"]))))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=CHEST_RADIOGRAPH, imaging_measurements=groups)
    return hd.sr.ComprehensiveSR(
        evidence=[source], content=report[0], series_instance_uid=generate_uid(), series_number=SR_SERIES_NUMBER,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer=MANUFACTURER,
        series_description="SSLAnomaly findings report", specific_character_set=CHARACTER_SET)
