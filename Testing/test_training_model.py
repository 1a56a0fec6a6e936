"""Training really learns, model folders round-trip exactly and refuse tampering."""

import json
import shutil

import numpy as np
import pytest

from conftest import data_dir
from SSLAnomalyLib.detector import AnomalyDetector
from SSLAnomalyLib.encoder import EncoderConfig
from SSLAnomalyLib.fitting import load_normals
from SSLAnomalyLib.io import read_radiograph
from SSLAnomalyLib.model_folder import MANIFEST, WEIGHTS, ModelError
from SSLAnomalyLib.pretext import PretextConfig
from SSLAnomalyLib.training import Trainer, TrainConfig


def test_short_training_lowers_the_pretext_loss(small_normals, tmp_path):
    normals = load_normals(small_normals[0], 128, progress=False)
    cfg = TrainConfig(minutes=10, batch_size=16, max_steps=60, eval_every=1000, seed=0)
    trainer = Trainer(EncoderConfig(input_size=128), PretextConfig(), cfg, tmp_path, device="cpu")
    trainer.fit(normals.images01, normals.lungs, progress=False)
    losses = np.array([h[1] + h[2] for h in trainer.state()["history"]])
    assert len(losses) == 60
    assert losses[-15:].mean() < 0.85 * losses[:15].mean()


def test_training_resumes_from_its_checkpoint(small_normals, tmp_path):
    normals = load_normals(small_normals[0], 64, progress=False)
    enc = EncoderConfig(input_size=64)
    for steps in (5, 9):
        cfg = TrainConfig(minutes=10, batch_size=8, max_steps=steps, eval_every=1000)
        trainer = Trainer(enc, PretextConfig(), cfg, tmp_path, device="cpu")
        trainer.fit(normals.images01, normals.lungs, progress=False)
    assert trainer.state()["step"] == 9
    assert [h[0] for h in trainer.state()["history"]] == list(range(1, 10))


def test_saved_model_reloads_to_identical_scores(small_model):
    image = read_radiograph(sorted(data_dir("kermany_fullres", "pneumonia").iterdir())[0])
    a = AnomalyDetector.load(small_model, device="cpu").detect(image)
    b = AnomalyDetector.load(small_model, device="cpu").detect(image)
    assert a.score == b.score and a.percentile == b.percentile
    assert np.array_equal(a.heatmap.pixels, b.heatmap.pixels)
    manifest = json.loads((small_model / MANIFEST).read_text())
    assert manifest["calibration"]["n_normals"] == 20
    assert manifest["data"]["n_train"] + manifest["data"]["n_held_out"] == 40


def test_tampered_weights_are_refused(small_model, tmp_path):
    bad = shutil.copytree(small_model, tmp_path / "tampered", ignore=shutil.ignore_patterns("work"))
    data = bytearray((bad / WEIGHTS).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bad / WEIGHTS).write_bytes(bytes(data))
    with pytest.raises(ModelError, match="SHA-256"):
        AnomalyDetector.load(bad)


def test_future_format_version_is_refused(small_model, tmp_path):
    bad = shutil.copytree(small_model, tmp_path / "future", ignore=shutil.ignore_patterns("work"))
    m = json.loads((bad / MANIFEST).read_text())
    m["format_version"] = 99
    (bad / MANIFEST).write_text(json.dumps(m))
    with pytest.raises(ModelError, match="newer"):
        AnomalyDetector.load(bad)
