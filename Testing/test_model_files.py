"""A model folder is data, never code: damaged, disguised or future model folders are refused with a
clear message, and nothing in the package can unpickle (test_training_model.py covers a flipped
byte and a future format version)."""

import json
import pickle
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import REPO
from SSLAnomalyLib.core.detector import AnomalyDetector
from SSLAnomalyLib.core.model_folder import FORMAT_VERSION, MANIFEST, WEIGHTS, ModelError, seal, sha256

PACKAGE = REPO / "SSLAnomaly"
UNPICKLING = re.compile(r"torch\.load\s*\(|\bimport pickle\b|\bpickle\.|\bcPickle\b|\bjoblib\b|\bdill\b"
                        r"|allow_pickle\s*=\s*True")


class _Payload:
    """Unpickling this touches `marker`: proof that code in a model file ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


@pytest.fixture
def copy_model(small_model, tmp_path):
    def copy(name):
        return shutil.copytree(small_model, tmp_path / name, ignore=shutil.ignore_patterns("work"))
    return copy


def rehash(folder: Path, **changes):
    """What an attacker who edits the manifest too would do: new hashes, and a new seal."""
    manifest = dict(json.loads((folder / MANIFEST).read_text()), **changes)
    manifest["files"] = {name: sha256(folder / name) for name in manifest["files"]}
    (folder / MANIFEST).write_text(json.dumps(seal(manifest)))


def test_truncated_weights_are_refused(copy_model):
    bad = copy_model("truncated")
    data = (bad / WEIGHTS).read_bytes()
    (bad / WEIGHTS).write_bytes(data[: len(data) // 3])
    with pytest.raises(ModelError, match="SHA-256"):
        AnomalyDetector.load(bad)
    rehash(bad)
    with pytest.raises(ModelError, match="not a readable safetensors"):
        AnomalyDetector.load(bad)


@pytest.mark.parametrize("manifest, reason", [
    ('{"format_version": 1, "model_id": "x", "fi', "not valid JSON"),
    ("[1, 2]", "not a JSON object"),
    ('{"model_id": "x"}', "no format_version"),
    ('{"format_version": 1, "files": ["model.safetensors"]}', "does not list"),
    ('{"format_version": 1, "files": {"model.safetensors": "0"}}', "not sealed"),
])
def test_damaged_manifest_is_refused(copy_model, manifest, reason):
    bad = copy_model("manifest")
    (bad / MANIFEST).write_text(manifest)
    with pytest.raises(ModelError, match=reason):
        AnomalyDetector.load(bad)


def test_an_edited_manifest_is_refused_even_with_its_file_hashes_intact(copy_model):
    bad = copy_model("edited")
    manifest = json.loads((bad / MANIFEST).read_text())
    manifest["encoder"]["input_size"] = 60000  # a memory bomb
    (bad / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="edited after the model was made"):
        AnomalyDetector.load(bad)


@pytest.mark.parametrize("field, value, named", [
    ("encoder", {"input_size": 60000}, "input_size"), ("encoder", {"widths": [1, 2, "x", 4]}, "encoder.widths"),
    ("calibration", {"threshold": "high"}, "calibration.threshold"),
    ("scoring", {"component_stats": {"patch": [0.1, 0.0]}}, "scoring.component_stats.patch"),
])
def test_a_resealed_manifest_with_a_bad_field_names_the_field(copy_model, field, value, named):
    bad = copy_model("field")
    manifest = json.loads((bad / MANIFEST).read_text())
    rehash(bad, **{field: dict(manifest[field], **value)})
    with pytest.raises(ModelError, match=f"field {named}"):
        AnomalyDetector.load(bad)


def test_no_file_of_a_model_folder_may_lead_out_of_it(copy_model, tmp_path):
    bad = copy_model("linked")
    outside = tmp_path / "elsewhere.safetensors"
    (bad / WEIGHTS).rename(outside)
    (bad / WEIGHTS).symlink_to(outside)
    with pytest.raises(ModelError, match="leads out of the model folder"):
        AnomalyDetector.load(bad)
    traversal = copy_model("traversal")
    manifest = json.loads((traversal / MANIFEST).read_text())
    manifest["files"]["../manifest.json"] = "0"
    (traversal / MANIFEST).write_text(json.dumps(seal(manifest)))
    with pytest.raises(ModelError, match="missing"):
        AnomalyDetector.load(traversal)


def test_pickle_disguised_as_weights_is_refused_without_running(copy_model, tmp_path):
    bad = copy_model("pickled")
    marker = tmp_path / "code_ran"
    (bad / WEIGHTS).write_bytes(pickle.dumps({"encoder.conv1.weight": _Payload(marker)}))
    rehash(bad)
    with pytest.raises(ModelError, match="not a readable safetensors"):
        AnomalyDetector.load(bad)
    assert not marker.exists()


def test_cli_refuses_a_tampered_model_in_one_clear_line(copy_model, tmp_path):
    bad = copy_model("tampered")
    manifest = json.loads((bad / MANIFEST).read_text())
    manifest["format_version"] = FORMAT_VERSION + 1
    (bad / MANIFEST).write_text(json.dumps(manifest))
    image = tmp_path / "x.png"
    image.write_bytes(b"")
    r = subprocess.run([str(REPO / ".venv" / "bin" / "sslanomaly"), "detect", "--model", str(bad), "--out",
                        str(tmp_path / "out"), str(image)], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [f"error: model {bad}: format version {FORMAT_VERSION + 1} is newer "
                                             f"than this SSLAnomaly supports ({FORMAT_VERSION}); update SSLAnomaly"]


def test_nothing_in_the_package_can_unpickle():
    offenders = [f"{p.relative_to(REPO)}:{i}: {line.strip()}"
                 for p in sorted(PACKAGE.rglob("*.py"))
                 for i, line in enumerate(p.read_text().splitlines(), 1) if UNPICKLING.search(line)]
    assert not offenders, "model files must be safetensors/JSON only:\n" + "\n".join(offenders)
