"""Shared fixtures: the real data folder (skip with a reason where absent) and a small real model
trained here on a few real normals (fast, for behaviour tests; quality tests use the bundled model)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

os.environ.setdefault("TQDM_DISABLE", "1")
REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SSLANOMALY_TEST_DATA", REPO.parent / "shared" / "data"))  # set to an absent folder to run the tier without data


def data_dir(*parts) -> Path:
    """A folder of ../shared/data, or skip the test saying what is missing."""
    p = DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"real data not available: {p} is absent (tests use ../shared/data beside the repo)")
    return p


def link_subset(src: Path, dst: Path, n: int) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.iterdir())[:n]:
        (dst / f.name).symlink_to(f)
    return dst


@pytest.fixture(autouse=True)
def signal_handlers():
    """A command stopped by a signal ignores any later one (cli.termination.signals_raise), as its process
    would until it exits; a test that stops one in this process gives the next test the handlers back."""
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, handler in handlers.items():
        signal.signal(s, handler)


@pytest.fixture(scope="session")
def small_normals(tmp_path_factory):
    """40 training and 20 calibration normals from Kermany (symlinks, nothing copied)."""
    root = tmp_path_factory.mktemp("normals")
    train = link_subset(data_dir("kermany", "train", "normal"), root / "train", 40)
    val = link_subset(data_dir("kermany", "val", "normal"), root / "val", 20)
    return train, val


@pytest.fixture(scope="session")
def small_model(small_normals, tmp_path_factory):
    """A real model folder trained for three steps on 40 real normals: counted in steps, not minutes,
    so that it is the same model on a fast machine and a busy one."""
    from SSLAnomalyLib.training.fitting import train_model
    from SSLAnomalyLib.training.spec import TrainingSpec

    train, val = small_normals
    out = tmp_path_factory.mktemp("model") / "small"
    return train_model(train, out, val, TrainingSpec(minutes=10, max_steps=3, seed=0, device="cpu"), progress=False)


def bundled_folder(name: str):
    from SSLAnomalyLib.core.model_files.model_folder import MANIFEST
    from SSLAnomalyLib.core.model_files.registry import resolve

    folder = resolve(name)
    if not (folder / MANIFEST).exists():
        pytest.fail(f"the bundled {name} model is missing from {folder}")
    return folder


@pytest.fixture(scope="session")
def default_model():
    """The bundled default (adult) model's folder."""
    return bundled_folder("default")


@pytest.fixture(scope="session")
def pediatric_model():
    """The bundled pediatric (Kermany) model's folder."""
    return bundled_folder("pediatric")


@pytest.fixture(scope="session")
def messy_corpus(tmp_path_factory):
    """Every kind of messy input of issue 6, made from one real radiograph:
    (folder, {file name: expectation}) as messy_corpus.build_corpus describes."""
    from messy_corpus import build_corpus

    source = sorted(data_dir("kermany_fullres", "normal").iterdir())[0]
    folder = tmp_path_factory.mktemp("messy")
    return folder, build_corpus(folder, source)
