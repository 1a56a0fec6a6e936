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


def test_a_process_that_cannot_read_a_normal_the_other_reads_is_refused_by_both(tmp_path):
    """Each process reads the normals itself: one that could not read a file the other read (a
    machine whose copy of the folder differs) skipped it without a word and trained on its own draw
    of other images, and the model was written. Here each rank runs in its own folder, as on two
    machines, and rank 1's copy of one normal is broken."""
    for rank in (0, 1):
        (tmp_path / f"machine{rank}").mkdir()
        radiographs(tmp_path / f"machine{rank}" / "train", 12, 0)
        radiographs(tmp_path / f"machine{rank}" / "val", 4, 100)
    (tmp_path / "machine1" / "train" / "generated-5.png").write_bytes(b"junk")
    rank_in_its_folder = tmp_path / "rank.sh"
    rank_in_its_folder.write_text(f'#!/bin/sh\ncd "{tmp_path}/machine$LOCAL_RANK" && exec "{sys.executable}" '
                                  f'-m SSLAnomalyLib.cli train --normals train --val-normals val --out "{tmp_path}/model" '
                                  '--size 64 --max-steps 2 --minutes 10 --device cpu --quiet\n')
    rank_in_its_folder.chmod(0o755)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "--no-python",
               str(rank_in_its_folder)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, env=dict(os.environ, OMP_NUM_THREADS="1"))
    said = ("error: train: the 2 training processes did not read the same normals: rank 1: train/generated-5.png: "
            "cannot decode")
    assert done.returncode != 0 and done.stderr.count(said) == 2, done.stderr[-4000:]
    assert not (tmp_path / "model").exists() and not work_dir(tmp_path / "model").exists()
