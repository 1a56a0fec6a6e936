"""The unsupervised lung mask on real radiographs, and pastes that stay inside it."""

import numpy as np

from conftest import data_dir
from SSLAnomalyLib.core.anatomy.fallback import lung_mask
from SSLAnomalyLib.core.model.preprocess import to_model_input
from SSLAnomalyLib.core.reading.images import read_radiograph
from SSLAnomalyLib.training.synthetic_anomalies import PretextConfig, anatpaste, opacity


def normals(n=30):
    files = sorted(data_dir("kermany", "train", "normal").iterdir())[:n]
    return [to_model_input(read_radiograph(f).pixels[0], 224) for f in files]


def test_lung_mask_finds_two_plausible_lung_fields():
    found, fractions, two_sided = 0, [], 0
    for x in normals():
        m = lung_mask(x)
        if m is None:
            continue
        found += 1
        fractions.append(m.mean())
        two_sided += m[:, :112].mean() > 0.04 and m[:, 112:].mean() > 0.04
        assert x[m].mean() < x[:, 104:120].mean()  # lungs are darker than the mediastinum
    assert found >= 25
    assert two_sided == found
    assert 0.12 < np.median(fractions) < 0.45


def test_pastes_stay_inside_the_lungs():
    rng = np.random.default_rng(0)
    cfg = PretextConfig()
    for x in normals(10):
        lung = lung_mask(x)
        assert lung is not None
        for fn in (anatpaste, opacity):
            y, blend = fn(x, lung, cfg, rng)
            changed = np.abs(y - x) > 1e-6
            assert changed.any(), fn.__name__
            assert not changed[~lung].any(), f"{fn.__name__} changed pixels outside the lung mask"
            assert (blend[~lung] == 0).all()


def test_pretext_is_reproducible_from_a_seed():
    x = normals(1)[0]
    lung = lung_mask(x)
    a = opacity(x, lung, PretextConfig(), np.random.default_rng(5))[0]
    b = opacity(x, lung, PretextConfig(), np.random.default_rng(5))[0]
    assert np.array_equal(a, b)
