"""`torchrun --nproc_per_node=2 -m SSLAnomalyLib.cli train`: two CPU processes (gloo) share every
step, rank 0 alone writes the model folder, and both leave cleanly."""

import os
import subprocess
import sys

from PIL import Image

from SSLAnomalyLib.core.model_files.model_folder import load
from SSLAnomalyLib.core.reading.sample import synthetic_radiograph
from SSLAnomalyLib.training.fitting import work_dir


def radiographs(folder, n: int, first_seed: int):
    folder.mkdir()
    for seed in range(first_seed, first_seed + n):
        Image.fromarray(synthetic_radiograph(160, 140, seed)).save(folder / f"generated-{seed}.png")
    return folder


def test_two_processes_train_one_valid_model(tmp_path):
    train, val = radiographs(tmp_path / "train", 12, 0), radiographs(tmp_path / "val", 4, 100)
    out = tmp_path / "model"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "SSLAnomalyLib.cli", "train", "--normals", str(train), "--val-normals", str(val),
               "--out", str(out), "--size", "64", "--max-steps", "3", "--minutes", "10", "--device", "cpu", "--quiet"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.count(f"written to {out}") == 1  # rank 0 alone wrote it; rank 1 waited and left
    loaded = load(out)  # verified: hashes, seal, finite weights
    training = loaded.manifest.section("training")
    assert training["processes"] == 2 and training["steps"] == 3
    assert [s[0] for s in training["selection_signals"]] == [0, 3]  # judged by rank 0 only, once each
    assert loaded.encoder_state and loaded.arrays and not work_dir(out).exists()
