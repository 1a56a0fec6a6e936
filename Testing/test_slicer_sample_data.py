"""The synthetic radiograph the module registers with Slicer's Sample Data module: registered with
the arguments Sample Data takes, only once desktop Slicer has started (never in the headless
application), its file fetched through its URI as Sample Data fetches it, its checksum right, and
its content the drawn radiograph of core/reading/sample.py, which loads as a volume the module can score."""

import hashlib
import sys
import types
import urllib.request

import numpy as np
import pytest
import slicer
from slicer_harness import load_module_file

from slicer_cases import empty_scene, logic
from SSLAnomalyLib.core.reading.sample import synthetic_radiograph
from SSLAnomalyLib.mrml import sample_data


@pytest.fixture
def registered(monkeypatch):
    """What the module registers, caught by a stand-in for Slicer's SampleData module."""
    calls = []
    logic_class = types.SimpleNamespace(registerCustomSampleDataSource=lambda **kwargs: calls.append(kwargs))
    monkeypatch.setitem(sys.modules, "SampleData", types.SimpleNamespace(SampleDataLogic=logic_class))
    sample_data.register()
    assert len(calls) == 1
    return calls[0]


def test_registration_waits_for_desktop_slicer(monkeypatch):
    connected = []
    module = load_module_file()
    monkeypatch.setattr(slicer.app, "connect", lambda signal, slot: connected.append((signal, slot)), raising=False)
    module.SSLAnomaly(types.SimpleNamespace())  # the headless application: nothing registered
    assert connected == []
    monkeypatch.setattr(slicer, "qSlicerApplication", object, raising=False)  # as in desktop Slicer
    sample_data.register_on_startup()
    assert connected == [("startupCompleted()", sample_data.register)]


def test_the_sample_is_fetched_and_checked_as_sample_data_does(registered, tmp_path):
    assert registered["category"] == "SSLAnomaly" and registered["loadFileType"] == "VolumeFile"
    algorithm, digest = registered["checksums"].split(":")
    fetched = tmp_path / registered["fileNames"]
    urllib.request.urlretrieve(registered["uris"], fetched)  # what SampleDataLogic.downloadFile does
    assert algorithm == "SHA256" and hashlib.sha256(fetched.read_bytes()).hexdigest() == digest
    assert sample_data.THUMBNAIL.exists() and registered["thumbnailFileName"] == str(sample_data.THUMBNAIL)


def test_the_sample_is_the_synthetic_radiograph_and_loads_as_a_volume(registered):
    empty_scene()
    volume = logic().loadVolume(sample_data.SAMPLE)
    pixels = slicer.util.arrayFromVolume(volume)[0]
    assert np.abs(pixels.astype(int) - synthetic_radiograph(512, 448, seed=0)).max() <= 1
    np.testing.assert_allclose(volume.GetSpacing()[:2], (0.7, 0.7))
    assert volume.GetName() == registered["nodeNames"]
