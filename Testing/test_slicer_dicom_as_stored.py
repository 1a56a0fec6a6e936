"""A DICOM radiograph is scored as stored, as radiograph viewers show it (docs/method.md), whatever
its ImageOrientationPatient says. In Slicer the volume node lost that it came from DICOM, so the
Logic scored a DX whose orientation stores its rows bottom-up as Slicer draws it, turned over: the
same file got another score, heatmap and findings in Slicer than from `sslanomaly detect`. Loaded by
the module or by Slicer's DICOM reader, it now gets the command line's."""

import numpy as np
import pydicom
import pytest
import slicer
import vtk

from slicer_cases import TEST_FPR, empty_scene, full_resolution_radiograph, logic, model, write_dicom_dx  # noqa: F401
from SSLAnomalyLib.core.detection.detector import AnomalyDetector
from SSLAnomalyLib.core.reading.images import read_radiograph
from SSLAnomalyLib.mrml.finding_rois import finding_nodes, finding_record
from SSLAnomalyLib.mrml.volumes import DICOM_INSTANCE_UIDS


@pytest.fixture(scope="module")
def rows_bottom_up_dx(tmp_path_factory):
    """A real radiograph as a DX whose ImageOrientationPatient runs its columns toward anterior."""
    dx = write_dicom_dx(full_resolution_radiograph("pneumonia"), tmp_path_factory.mktemp("dx") / "cxr.dcm")
    dataset = pydicom.dcmread(dx)
    dataset.ImageOrientationPatient = ["1", "0", "0", "0", "-1", "0"]
    dataset.save_as(dx)
    return dx


def by_slicers_dicom_reader(path):
    """The volume node Slicer's DICOM module makes: ITK's reader, and the instance UID recorded."""
    names = vtk.vtkStringArray()
    names.InsertNextValue(str(path))
    node = slicer.modules.volumes.logic().AddArchetypeScalarVolume(str(path), "cxr", 0, names)
    node.SetAttribute(DICOM_INSTANCE_UIDS, pydicom.dcmread(path).SOPInstanceUID)
    return node


@pytest.mark.parametrize("load", ["module", "slicer"])
def test_a_dicom_is_scored_in_slicer_as_the_command_line_scores_it(model, rows_bottom_up_dx, load):
    detector = AnomalyDetector.load(model)
    detector.calibration = detector.calibration.with_false_positive_rate(TEST_FPR)
    cli = detector.detect(read_radiograph(rows_bottom_up_dx))
    assert cli.findings
    empty_scene()
    lg = logic()
    volume = lg.loadVolume(rows_bottom_up_dx) if load == "module" else by_slicers_dicom_reader(rows_bottom_up_dx)
    result = lg.detect(volume, model=str(model), falsePositiveRate=TEST_FPR)
    assert result.score == pytest.approx(cli.score, abs=1e-4)
    np.testing.assert_allclose(result.heatmap.pixels, cli.heatmap.pixels, rtol=1e-4, atol=1e-5)
    records = [finding_record(node) for node in finding_nodes(volume)]
    assert [r["bbox_ijk"] for r in records] == [f.bbox_ijk for f in cli.findings]
    for record, finding in zip(records, cli.findings):
        np.testing.assert_allclose(record["centroid_ras"], finding.centroid_ras, atol=1e-3)
