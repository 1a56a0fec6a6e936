"""Volume nodes <-> the core's Radiograph on real MRML: real radiographs keep spacing, origin and
direction exactly, checked against Slicer's own reader and against ITK's."""

import numpy as np
import pytest
import SimpleITK as sitk
import slicer
import vtk
from PIL import Image

from slicer_cases import empty_scene, full_resolution_radiograph, write_dicom_dx
from SSLAnomalyLib.core.files.errors import ReadError
from SSLAnomalyLib.core.reading.images import read_radiograph
from SSLAnomalyLib.mrml.volumes import (DICOM_INSTANCE_UIDS, SOURCE_PATH, ijk_to_ras_matrix, load_volume,
                                        radiograph_to_volume_node, source_dicom_files, volume_node_to_radiograph)

OBLIQUE = np.array([[0.96, -0.28, 0.0], [0.0, 0.0, -1.0], [0.28, 0.96, 0.0]])  # rotated coronal plane (LPS)


@pytest.fixture(autouse=True)
def scene():
    return empty_scene()


@pytest.fixture(scope="module")
def oblique_nrrd(tmp_path_factory):
    """A real radiograph as a one-slice NRRD volume with anisotropic spacing and oblique axes."""
    pixels = np.asarray(Image.open(full_resolution_radiograph("normal")).convert("L"))
    image = sitk.GetImageFromArray(pixels[None].astype(np.int16))
    image.SetSpacing((0.17, 0.13, 2.5))
    image.SetOrigin((-120.5, 33.25, 410.0))
    image.SetDirection(OBLIQUE.ravel().tolist())
    path = tmp_path_factory.mktemp("oblique") / "oblique.nrrd"
    sitk.WriteImage(image, str(path))
    return path


def test_oblique_volume_matches_slicers_own_reader_and_itk(oblique_nrrd):
    """Slicer's archetype reader (RAS) and the core's ITK reader (LPS) must agree through the glue."""
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(oblique_nrrd))
    by_slicer = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "by_slicer")
    assert storage.ReadData(by_slicer)
    by_glue = load_volume(oblique_nrrd)
    np.testing.assert_allclose(ijk_to_ras_matrix(by_glue), ijk_to_ras_matrix(by_slicer), atol=1e-9)
    np.testing.assert_allclose(by_glue.GetSpacing(), (0.17, 0.13, 2.5))
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(by_glue), slicer.util.arrayFromVolume(by_slicer))

    back = volume_node_to_radiograph(by_slicer)
    itk = read_radiograph(oblique_nrrd)
    np.testing.assert_allclose(back.direction, itk.direction, atol=1e-9)
    np.testing.assert_allclose(back.origin, itk.origin, atol=1e-9)
    np.testing.assert_allclose(back.spacing, itk.spacing)
    np.testing.assert_array_equal(back.pixels, itk.pixels)


def test_dicom_radiograph_becomes_a_volume_with_its_spacing_and_source(tmp_path):
    dx = write_dicom_dx(full_resolution_radiograph("normal"), tmp_path / "cxr.dcm")
    image = read_radiograph(dx)
    node = load_volume(dx)
    assert node.GetName() == "cxr"
    np.testing.assert_allclose(node.GetSpacing(), (0.143, 0.139, 1.0))
    np.testing.assert_allclose(ijk_to_ras_matrix(node), image.ijk_to_ras())
    assert node.GetAttribute(SOURCE_PATH) == str(dx)
    assert node.GetAttribute(DICOM_INSTANCE_UIDS) == image.dicom["SOPInstanceUID"]
    assert source_dicom_files(node) == [dx]


class DicomDatabase:
    """Slicer's DICOM database as `source_dicom_files` asks it (the wheel has no DICOM module)."""

    def __init__(self, files: dict[str, str]):
        self.files = files

    def fileForInstance(self, uid: str) -> str:
        return self.files.get(uid, "")


def test_padding_of_a_dicom_loaded_by_slicers_dicom_module_is_shown_black(tmp_path, monkeypatch):
    """Slicer's DICOM module reads a DX through ITK/GDCM, which keeps the Pixel Padding Value as
    values: here a white collimation border (65535 around 12-bit values) that would set the
    percentiles the model input is normalised with. The glue finds the source file through the
    DICOM database and shows the padding black, as the module's own reader does."""
    import pydicom
    from messy_corpus import write_dicom as write_dx

    pixels = np.asarray(Image.open(full_resolution_radiograph("normal")).convert("L"), dtype=np.uint16) * 16 + 100
    pixels[:, :40] = 65535
    dx = write_dx(tmp_path / "padded.dcm", pixels, bits=16)
    ds = pydicom.dcmread(dx)
    ds.add_new(0x00280120, "US", 65535)  # Pixel Padding Value
    ds.save_as(dx)
    names = vtk.vtkStringArray()
    names.InsertNextValue(str(dx))
    node = slicer.modules.volumes.logic().AddArchetypeScalarVolume(str(dx), "padded", 0, names)  # as the DICOM plugin does
    node.SetAttribute(DICOM_INSTANCE_UIDS, ds.SOPInstanceUID)
    voxels = slicer.util.arrayFromVolume(node)
    assert (voxels[0, :, :40] == voxels.max()).all()  # the reader kept the border as the brightest values
    monkeypatch.setattr(slicer, "dicomDatabase", DicomDatabase({ds.SOPInstanceUID: str(dx)}), raising=False)
    image = volume_node_to_radiograph(node)
    inside = voxels[0, :, 40:]
    assert (image.pixels[0, :, :40] == inside.min()).all()
    np.testing.assert_array_equal(image.pixels[0, :, 40:], inside)
    np.testing.assert_array_equal(image.pixels, read_radiograph(dx).pixels)  # as the module's reader shows it
    monkeypatch.setattr(slicer, "dicomDatabase", DicomDatabase({}), raising=False)  # source not found: as loaded
    np.testing.assert_array_equal(volume_node_to_radiograph(node).pixels, voxels)


def test_a_lateral_loaded_by_the_module_is_warned_of_in_its_detection(tmp_path):
    """The module's reader warns of the header's view, but a volume node keeps no warnings: the
    detection of the node warns of it again, from its source file."""
    from messy_corpus import write_edited

    lateral = write_edited(tmp_path / "lateral.dcm", np.random.default_rng(0).integers(0, 4096, (64, 48)),
                           lambda ds: setattr(ds, "ViewPosition", "LL"))
    image = volume_node_to_radiograph(load_volume(lateral))
    assert image.view_problems == ("DICOM ViewPosition LL is not a frontal (PA or AP) view",)
    assert any(w.startswith("DICOM ViewPosition LL is not a frontal") for w in image.warnings)


@pytest.mark.parametrize("key, value, refused", [("Modality", "MR", "modality MR (magnetic resonance) is not a "
                                                  "radiograph"), ("BodyPartExamined", "HAND", None)])
def test_a_dicom_loaded_by_slicers_dicom_module_is_refused_or_warned_of_as_its_file(tmp_path, monkeypatch, key,
                                                                                    value, refused):
    """Slicer's DICOM module loads an MR or a hand as a volume like any other: the glue reads what the
    header of its file (found through the DICOM database) says, as the module's own reader does."""
    import pydicom
    from messy_corpus import write_edited

    path = write_edited(tmp_path / "image.dcm", np.random.default_rng(0).integers(0, 4096, (64, 48)),
                        lambda ds: setattr(ds, key, value))
    names = vtk.vtkStringArray()
    names.InsertNextValue(str(path))
    node = slicer.modules.volumes.logic().AddArchetypeScalarVolume(str(path), "image", 0, names)
    uid = pydicom.dcmread(path).SOPInstanceUID
    node.SetAttribute(DICOM_INSTANCE_UIDS, uid)
    monkeypatch.setattr(slicer, "dicomDatabase", DicomDatabase({uid: str(path)}), raising=False)
    if refused:
        with pytest.raises(ReadError) as error:
            volume_node_to_radiograph(node)
        assert error.value.path == str(path) and refused in error.value.reason
    else:
        assert any("BodyPartExamined HAND is not the chest" in w for w in volume_node_to_radiograph(node).warnings)


@pytest.mark.parametrize("loaded_by", ["module", "dicom browser"])
def test_a_childs_dicom_detected_in_slicer_with_the_adult_model_carries_the_population_warning(tmp_path, monkeypatch,
                                                                                               loaded_by):
    """The population warning needs the header's PatientAge, which a volume node does not hold: the
    glue reads it from the volume's DICOM file, so the panel warns as `sslanomaly detect` does."""
    import pydicom

    from slicer_cases import logic
    from SSLAnomalyLib.core.detection.detector import AnomalyDetector

    path = write_dicom_dx(full_resolution_radiograph("normal"), tmp_path / "child.dcm")
    ds = pydicom.dcmread(path)
    ds.PatientAge = "004Y"
    ds.save_as(path)
    lg = logic()
    if loaded_by == "module":
        node = lg.loadVolume(path)
    else:
        names = vtk.vtkStringArray()
        names.InsertNextValue(str(path))
        node = slicer.modules.volumes.logic().AddArchetypeScalarVolume(str(path), "child", 0, names)
        node.SetAttribute(DICOM_INSTANCE_UIDS, ds.SOPInstanceUID)
        monkeypatch.setattr(slicer, "dicomDatabase", DicomDatabase({ds.SOPInstanceUID: str(path)}), raising=False)
    warning = "patient age 4 years is outside this model's population (adults): the 'pediatric' model fits better"
    assert warning in AnomalyDetector.load("adult").detect(read_radiograph(path)).warnings  # as the CLI warns
    assert warning in lg.detect(node, model="adult").warnings
    assert f"Warning: {warning}" in lg.resultText(node)
    assert volume_node_to_radiograph(node).dicom["PatientAge"] == "004Y"


def test_radiograph_round_trip_is_exact(oblique_nrrd):
    image = read_radiograph(oblique_nrrd)
    back = volume_node_to_radiograph(radiograph_to_volume_node(image, "x"))
    np.testing.assert_array_equal(back.pixels, image.pixels)
    np.testing.assert_allclose(back.ijk_to_lps(), image.ijk_to_lps(), atol=1e-9)
    assert back.is_2d == (image.shape[0] == 1) and back.source == str(oblique_nrrd)


def test_colour_volume_is_read_as_luminance():
    """Desktop Slicer loads an RGB JPEG as a vector volume; the detector sees its luminance."""
    rgb = np.asarray(Image.open(full_resolution_radiograph("normal")).convert("RGB"))[None]
    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLVectorVolumeNode", "rgb")
    slicer.util.updateVolumeFromArray(node, rgb)
    image = volume_node_to_radiograph(node)
    assert image.shape == rgb.shape[:3]
    np.testing.assert_allclose(image.pixels, rgb @ np.array([0.299, 0.587, 0.114]), atol=1e-3)


def _volume(kind, name, array):
    node = slicer.mrmlScene.AddNewNodeByClass(kind, name)
    slicer.util.updateVolumeFromArray(node, array)
    return node


def _unallocated(name):
    """A volume whose image data holds no voxels (a vtkImageData never allocated, set by a script)."""
    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", name)
    node.SetAndObserveImageData(vtk.vtkImageData())
    return node


@pytest.mark.parametrize("make, reason", [
    (lambda: _volume("vtkMRMLLabelMapVolumeNode", "lung labels", np.eye(64, dtype=np.uint8)[None]),
     "is a labelmap \\(a segmentation\\), not a radiograph"),
    (lambda: _volume("vtkMRMLScalarVolumeNode", "tiny", np.arange(64, dtype=np.float32).reshape(1, 8, 8)),
     "image is 8x8 pixels; at least 16x16 is needed"),
    (lambda: _volume("vtkMRMLScalarVolumeNode", "flat", np.zeros((1, 64, 64), np.float32)),
     "image is constant \\(every pixel 0\\)"),
    (lambda: slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty"), "has no image data"),
    (lambda: _unallocated("unallocated"), "has no image data"),
    (lambda: _volume("vtkMRMLScalarVolumeNode", "no slices", np.zeros((0, 64, 64), np.float32)),
     "image has no slices"),
])
def test_a_volume_node_that_is_no_radiograph_is_refused_naming_the_node(make, reason):
    """As a file would be on the command line: never scored into a wrong result."""
    node = make()
    with pytest.raises(ReadError, match=f"volume '{node.GetName()}': .*{reason}"):
        volume_node_to_radiograph(node)


def test_a_double_volume_beyond_float32s_range_is_read_as_its_file_is(tmp_path):
    """A double volume of values up to 1e290 (an NRRD Slicer's own reader loaded) became inf when cast
    to float32, replaced by the median of its zeros, and the volume was refused as constant (every pixel 0);
    it is scaled by a power of two as the core's reader scales the file."""
    pixels = np.asarray(Image.open(full_resolution_radiograph("normal")).convert("L"))[:400, :500] * 1e290
    path = tmp_path / "huge.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(pixels[None]), str(path))
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(path))
    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "huge")
    assert storage.ReadData(node)
    assert slicer.util.arrayFromVolume(node).dtype == np.float64
    image, read = volume_node_to_radiograph(node), read_radiograph(path)
    assert np.isfinite(image.pixels).all() and not any("replaced by the median" in w for w in image.warnings)
    assert any("beyond float32's range" in w for w in image.warnings)
    np.testing.assert_array_equal(image.pixels, read.pixels.astype(np.float32))


def test_a_ct_volume_slicer_loaded_is_refused_as_its_file_is(tmp_path):
    """A CT in Hounsfield units saved as NRRD is refused by the module's reader, but loaded by Slicer's
    own reader (drag and drop, sample data) its slices were scored as radiographs: the panel refuses the
    volume with the file's reason (pydicom's CT_small.dcm in HU, as 40 slices; as test_io.py's)."""
    import pydicom
    from pydicom.data import get_testdata_file

    from slicer_cases import logic

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    hu = (ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)).astype(np.int16)
    path = tmp_path / "ct.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(np.stack([np.roll(hu, k, 0) for k in range(40)])), str(path))
    storage = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storage.SetFileName(str(path))
    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "chest CT")
    assert storage.ReadData(node)
    with pytest.raises(ReadError) as by_file:
        read_radiograph(path)
    with pytest.raises(ReadError) as by_panel:
        logic().radiographFromVolume(node)
    assert by_panel.value.path == "volume 'chest CT'" and by_panel.value.reason == by_file.value.reason
    assert by_panel.value.reason.startswith("looks like a CT volume in Hounsfield units (40 slices")
