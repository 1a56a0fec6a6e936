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
from SSLAnomalyLib.core.model_folder import FORMAT_VERSION, MANIFEST, WEIGHTS, ModelError, sha256

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


def rehash(folder: Path):
    """What an attacker who edits the manifest too would do."""
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["files"] = {name: sha256(folder / name) for name in manifest["files"]}
    (folder / MANIFEST).write_text(json.dumps(manifest))


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
    ('{"format_version": 1, "files": {"../manifest.json": "0", "model.safetensors": "0"}}', "missing"),
])
def test_damaged_manifest_is_refused(copy_model, manifest, reason):
    bad = copy_model("manifest")
    (bad / MANIFEST).write_text(manifest)
    with pytest.raises(ModelError, match=reason):
        AnomalyDetector.load(bad)


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
