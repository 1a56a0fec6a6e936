"""The findings table node: a read-only view of the finding ROIs, rebuilt from them after every
detection and review, so the two never disagree (the ROIs hold the data, see mrml_findings)."""

from __future__ import annotations

import slicer
import vtk

from SSLAnomalyLib.mrml.finding_rois import finding_nodes, finding_record, seen_record

TABLE_REFERENCE = "SSLAnomaly.FindingsTable"  # input volume -> its findings table
COLUMNS = (  # (title, record -> value, vtk array class)
    ("ID", lambda r: r["id"], vtk.vtkIntArray),
    ("Label", lambda r: r["label"], vtk.vtkStringArray),
    ("Status", lambda r: r["status"], vtk.vtkStringArray),
    ("Origin", lambda r: r["origin"], vtk.vtkStringArray),
    ("Score", lambda r: r["score"], vtk.vtkDoubleArray),
    ("Area (mm2)", lambda r: r["area_mm2"], vtk.vtkDoubleArray),
    ("Slice", lambda r: r["slice_index"], vtk.vtkIntArray),
    ("i0", lambda r: r["bbox_ijk"][0], vtk.vtkIntArray),
    ("j0", lambda r: r["bbox_ijk"][1], vtk.vtkIntArray),
    ("i1", lambda r: r["bbox_ijk"][2], vtk.vtkIntArray),
    ("j1", lambda r: r["bbox_ijk"][3], vtk.vtkIntArray),
    ("R", lambda r: r["centroid_ras"][0], vtk.vtkDoubleArray),
    ("A", lambda r: r["centroid_ras"][1], vtk.vtkDoubleArray),
    ("S", lambda r: r["centroid_ras"][2], vtk.vtkDoubleArray),
    ("Note", lambda r: r["note"], vtk.vtkStringArray),
    ("Decided", lambda r: r["decided"], vtk.vtkStringArray),
    ("Model", lambda r: r.get("model", ""), vtk.vtkStringArray),  # the reader's own: none
    ("Shown", lambda r: "yes" if r["shown"] else "no", vtk.vtkStringArray),  # no: the sensitivity slider hides it
)


def table_name(volume_node) -> str:
    """The findings table's name in the Data module and a saved scene's files: its volume's."""
    return f"{volume_node.GetName()} findings"


def findings_table(volume_node):
    """The volume's findings table node, created on first use (locked: edits in the table view
    would not reach the ROIs, so reviews go through the review functions)."""
    table = volume_node.GetNodeReference(TABLE_REFERENCE)
    if table is None:
        table = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", table_name(volume_node))
        table.SetLocked(True)
        volume_node.SetNodeReferenceID(TABLE_REFERENCE, table.GetID())
    return table


def sync_findings_table(volume_node):
    """Rebuild the table from the finding ROIs (one row per finding, in id order): every finding, *Shown* saying
    which the sensitivity slider hides (the table is where the reader finds them)."""
    table = findings_table(volume_node)
    records = [seen_record(node) for node in finding_nodes(volume_node)]
    was_modifying = table.StartModify()
    table.RemoveAllColumns()
    for title, value, array_class in COLUMNS:
        column = array_class()
        column.SetName(title)
        for record in records:
            column.InsertNextValue(value(record))
        table.AddColumn(column)
    table.EndModify(was_modifying)
    return table


def finding_at_row(volume_node, row: int):
    """The finding ROI shown in `row` of the findings table, found by the row's ID, not by its position (a
    table saved in a scene may be out of date). A row whose finding is gone is refused (ValueError) and the table
    rebuilt; an ROI deleted by hand leaves the table at once (case.follow_finding_removed)."""
    table = findings_table(volume_node)
    shown = table.GetCellText(row, 0) if 0 <= row < table.GetNumberOfRows() else None
    node = next((n for n in finding_nodes(volume_node) if str(finding_record(n)["id"]) == shown), None)
    if node is None:
        sync_findings_table(volume_node)
        raise ValueError(f"row {row + 1} of the findings table of '{volume_node.GetName()}' shows no finding any "
                         "more (its ROI was deleted?): the table is refreshed, select the finding again")
    return node
