"""Exporting a reviewed case: findings (JSON, CSV), Slicer files (heatmap .nrrd, markups .mrk.json,
segmentation .seg.nrrd, the case's scene .mrb) and, for a DICOM input, DICOM SEG + SR.

Slicer files are written through MRML storage nodes; all of a case's files are staged and moved
into place together (see staging), and an existing file is only replaced with `overwrite=True`.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import slicer

from SSLAnomalyLib.core.files.staging import staged_files
from SSLAnomalyLib.core.results.dicom_export import (DicomExportError, make_seg, make_sr, read_source, source_notes,
                                                     source_problem)
from SSLAnomalyLib.core.results.export_owner import EXPORT_SUFFIXES, check_owner, incomplete, record_owner
from SSLAnomalyLib.core.results.findings_json import findings_document, to_json
from SSLAnomalyLib.core.results.review import file_name
from SSLAnomalyLib.core.results.segments import finding_masks
from SSLAnomalyLib.core.results.spreadsheet import cell
from SSLAnomalyLib.core.results.source_grid import on_source_grid
from SSLAnomalyLib.mrml.bundle import save_case_bundle
from SSLAnomalyLib.mrml.case import case_result, changed_since_detection, no_result
from SSLAnomalyLib.mrml.finding_rois import STATUS_COLORS, finding_nodes, seen_record
from SSLAnomalyLib.mrml.geometry import follow_geometry
from SSLAnomalyLib.mrml.heatmap import heatmap_node
from SSLAnomalyLib.mrml.lungs import lung_mask, lung_node, oriented_labelmap
from SSLAnomalyLib.mrml.table import COLUMNS
from SSLAnomalyLib.mrml.volumes import DICOM_INSTANCE_UIDS, image_identity_of, source_dicom_files, source_of

FORMATS = ("json", "csv", "heatmap", "mrk", "seg", "lungs", "mrb", "dicom")


def default_formats(volume_node, scene_bundle: bool = True) -> list[str]:
    """Every format that applies: 'dicom' where the input came from one DICOM file that a SEG and SR
    can be made from; 'lungs' where detection made lung fields; 'mrb' (the case's scene) unless
    `scene_bundle` is False, as in batch runs."""
    dicom = source_dicom_files(volume_node) and not _dicom_not_written(volume_node)
    return [f for f in FORMATS if (f != "dicom" or dicom) and (f != "mrb" or scene_bundle)
            and (f != "lungs" or lung_node(volume_node) is not None)]


def left_out(volume_node) -> list[str]:
    """What the export leaves out, one line each, so that a reader who expects it for the PACS is told,
    not left to notice: the DICOM SEG and SR where they are not among `default_formats`, or else the
    source's header values they leave empty (dicom_export.source_notes)."""
    sources = source_dicom_files(volume_node)
    not_written = _dicom_not_written(volume_node)
    if not_written or len(sources) != 1:
        return not_written
    return [f"DICOM SEG and SR: {note}" for note in source_notes(sources[0])]


def _dicom_not_written(volume_node) -> list[str]:
    """Why an image read from DICOM has no SEG and SR, one line: its file is gone (they copy its patient
    and study), or no SEG and SR can be made from it (several frames or files, no study UID)."""
    sources = source_dicom_files(volume_node)
    if volume_node.GetAttribute(DICOM_INSTANCE_UIDS) and not sources:
        return [f"DICOM SEG and SR not written: '{source_of(volume_node)}', the DICOM file the image was read "
                "from, is no longer there (they copy its patient and study); put it back to export them"]
    if len(sources) > 1:
        return [f"DICOM SEG and SR not written: the image was read from {len(sources)} DICOM files; they are "
                "made on one radiograph"]
    why = source_problem(sources[0]) if sources else None
    return [f"DICOM SEG and SR not written: '{sources[0]}', the DICOM file the image was read from, {why}"] if why else []


def export_case(volume_node, out_dir, formats=None, name: str | None = None, overwrite: bool = False,
                other_image: bool = False) -> dict[str, Path]:
    """Write the chosen `formats` (default: `default_formats`) of the case on `volume_node` into
    `out_dir` as `<name><suffix>` (default: the volume's name as a file name); returns {kind: path}. 'mrb' is this case's part of the
    scene (bundle.save_case_bundle: no other patient's image or findings).
    Whose files are there is known from `<name>.findings.json`, or the record `<name>.export.json` that every
    export writes (export_owner): where it names another image, nothing is written; where a file of the set is
    there, it is replaced (with `overwrite`) or added to only where it names this image. Neither applies with
    `other_image` (a batch, whose runner has decided that from its index of inputs); the record is written, a
    reader's (not `other_image`) marked so, so that no batch writes over it (export_owner.reviewed_export). It
    lists the set's files before they move (a batch's: this export's alone, it sets the others aside), so that
    an export interrupted while moving them leaves a set that is `incomplete`, which only `overwrite` replaces."""
    result = case_result(volume_node)
    if result is None:
        raise ValueError(f"'{volume_node.GetName()}' is not exported: {no_result(volume_node)}")
    if why := changed_since_detection(volume_node):
        raise ValueError(f"'{volume_node.GetName()}' is not exported: {why}")
    follow_geometry(volume_node)  # a geometry edited where nothing followed it (a scene loaded by the File menu)
    sources = source_dicom_files(volume_node)
    formats = default_formats(volume_node) if formats is None else list(formats)
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown export format(s) {sorted(unknown)}; choose from {', '.join(FORMATS)}")
    if "dicom" in formats and len(sources) != 1:
        raise DicomExportError(f"'{volume_node.GetName()}' was not read from a single DICOM file, so there is "
                               "no source study to reference")
    kinds = [k for f in formats for k in (("dicom_seg", "dicom_sr") if f == "dicom" else (f,))]
    name = name or file_name(volume_node.GetName())
    targets = {kind: Path(out_dir) / f"{name}{EXPORT_SUFFIXES[kind]}" for kind in kinds}
    if not other_image:
        check_owner(out_dir, name, EXPORT_SUFFIXES.values(), image_identity_of(volume_node))
        if not overwrite and (why := incomplete(out_dir, name)):
            raise FileExistsError(f"{why} with overwrite")
    records = [seen_record(node) for node in finding_nodes(volume_node)]
    writers = {
        "json": lambda p: p.write_text(to_json(case_json(volume_node, result, records))),
        "csv": lambda p: _write_csv(p, records),
        "heatmap": lambda p: _write_node(heatmap_node(volume_node), p),
        "mrk": lambda p: _write_markups(p, finding_nodes(volume_node)),
        "seg": lambda p: _write_segmentation(p, volume_node, records, result["sensitivity"]),
        "lungs": lambda p: _write_node(_required(lung_node(volume_node), "lung fields", volume_node), p),
        "mrb": lambda p: save_case_bundle(p, volume_node),
    }
    with staged_files(targets, overwrite) as staged:
        for kind in kinds:
            if kind in writers:
                writers[kind](staged[kind])
        if "dicom" in formats:
            _write_dicom(staged["dicom_seg"], staged["dicom_sr"], sources[0], volume_node, records, result)
        written = [kind for kind in kinds if staged[kind].exists()]  # no SEG when no finding is reported
        record_owner(out_dir, name, image_identity_of(volume_node), {targets[k].name: staged[k] for k in kinds},
                     review=not other_image, keep_listed=not other_image)  # before the first move (incomplete)
    return {kind: targets[kind] for kind in written}


def case_json(volume_node, result: dict, records: list[dict]) -> dict:
    """The findings document the CLI writes, with the review added: each finding's status, origin
    and note, whether the reader was shown it (`shown`: false for a model finding the sensitivity slider
    hid, which no segmentation or SR holds), and the sensitivity the reader set."""
    return findings_document(source_of(volume_node), image_identity_of(volume_node), result["score"],
                             result["threshold"], result["abnormal"], result["percentile"], result["model"],
                             result["pixel_threshold"], result["components"], result["warnings"], records,
                             review={"sensitivity": result["sensitivity"]}, model_sha256=result["model_sha256"] or None,
                             lung_network=result["lung_network"] or None,
                             lung_network_sha256=result["lung_network_sha256"] or None)


def _write_node(node, path: Path) -> None:
    """Write a node through its default storage node (format from the file name)."""
    storage = node.CreateDefaultStorageNode()
    storage.SetFileName(str(path))
    if not storage.WriteData(node):
        raise OSError(f"{path}: Slicer could not write {node.GetName()}")


def _required(node, what: str, volume_node):
    if node is None:
        raise ValueError(f"'{volume_node.GetName()}' has no {what} to export (detect again)")
    return node


def _write_csv(path: Path, records: list[dict]) -> None:
    """The findings table's columns (*Shown* last: no for a finding the sensitivity slider hid), in UTF-8
    whatever the locale (notes are free text in any language), as every text file the tool writes; a label or
    note that starts like a formula is written as text (spreadsheet.cell)."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow([title for title, _, _ in COLUMNS])
        writer.writerows([[cell(value(r)) for _, value, _ in COLUMNS] for r in records])


def _write_markups(path: Path, nodes: list) -> None:
    """All finding ROIs in one markups file (Slicer's format holds a list of markups)."""
    document = {"markups": []}
    for node in nodes:
        single = path.with_name(f".{node.GetID()}.mrk.json")
        _write_node(node, single)
        written = json.loads(single.read_text())
        single.unlink()
        document = {**written, "markups": document["markups"] + written["markups"]}
    path.write_text(json.dumps(document, indent=1))


def _write_segmentation(path: Path, volume_node, records: list[dict], threshold: float) -> None:
    """One segment per finding kept after review and shown (`finding_masks`), on the input's grid (temporary node)."""
    heat = np.array(slicer.util.arrayFromVolume(heatmap_node(volume_node)))
    segmentation = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"{volume_node.GetName()} findings")
    try:
        segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume_node)
        for record, mask, _ in finding_masks(heat, records, threshold, lung_mask(volume_node)):
            segmentation.AddSegmentFromBinaryLabelmapRepresentation(
                oriented_labelmap(mask, volume_node), f"F{record['id']} {record['label']}", STATUS_COLORS[record["status"]])
        _write_node(segmentation, path)
    finally:
        slicer.mrmlScene.RemoveNode(segmentation)


def _write_dicom(seg_path: Path, sr_path: Path, source_path: Path, volume_node, records, result) -> None:
    source = read_source(source_path, instance_uids=(volume_node.GetAttribute(DICOM_INSTANCE_UIDS) or "").split())
    heat = np.array(slicer.util.arrayFromVolume(heatmap_node(volume_node)))
    masks, records = on_source_grid(source, heat.shape[1:], finding_masks(
        heat, records, result["sensitivity"], lung_mask(volume_node)), records)
    seg = make_seg(source, masks, result)
    if seg is not None:
        seg.save_as(seg_path)
    make_sr(source, records, result).save_as(sr_path)
