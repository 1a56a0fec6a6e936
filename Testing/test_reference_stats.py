"""The normal reference from sums: exactly scikit-learn's Ledoit-Wolf, the same reference whether
fitted at once, in batches, or merged from halves, a fold left out by subtraction, and thresholds
by rank whose stated false-positive interval holds on new normals."""

import numpy as np
import pytest
import torch
from scipy.stats import norm
from sklearn.covariance import LedoitWolf

from SSLAnomalyLib.core.model.calibration import Calibration
from SSLAnomalyLib.core.model.reference import NormalReference
from SSLAnomalyLib.core.model.reference_stats import (MomentSums, NeighbourMeans, PositionSums, ReferenceStats,
                                                      residual_sums)


def features(n, seed=0, d=24, c=12, h=6, w=5):
    rng = np.random.default_rng(seed)
    pooled = (rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) * 0.3 + 2).astype(np.float32)
    layout = np.random.default_rng(99).normal(size=(1, c, h, w)) * 2
    patches = (rng.normal(size=(n, c, h, w)) + layout).astype(np.float32)
    return pooled, patches


def scan_residuals(patches, means):
    """Today's residual, the plain way: each patch minus the nearest of its 3x3 neighbourhood's means."""
    c, h, w = means.shape
    padded = np.pad(means, ((0, 0), (1, 1), (1, 1)), mode="edge")
    out = np.empty_like(patches)
    for y in range(h):
        for x in range(w):
            cands = [padded[:, y + dy, x + dx] for dy in range(3) for dx in range(3)]
            for i, p in enumerate(patches[:, :, y, x]):
                out[i, :, y, x] = p - cands[int(np.argmin([((p - m) ** 2).sum() for m in cands]))]
    return out


def sklearn_reference(pooled, patches):
    """The reference as the in-memory fit computed it: scikit-learn on every embedding and residual."""
    lw = LedoitWolf().fit(pooled.astype(np.float64))
    means = patches.mean(0, dtype=np.float64).astype(np.float32)
    r = scan_residuals(patches, means).transpose(0, 2, 3, 1).reshape(-1, patches.shape[1]).astype(np.float64)
    return lw.location_, lw.precision_, means, LedoitWolf(assume_centered=True).fit(r).precision_


def close(a, b, tol):
    return np.abs(np.asarray(a, np.float64) - b).max() <= tol * np.abs(b).max()


@pytest.mark.parametrize("centred", [False, True])
def test_ledoit_wolf_from_sums_is_scikit_learns(centred):
    x, _ = features(80)
    lw = LedoitWolf(assume_centered=centred).fit(x.astype(np.float64))
    sums = MomentSums.of(x[:30]) + MomentSums.of(x[30:])
    mean, cov = sums.ledoit_wolf(centred)
    assert close(cov, lw.covariance_, 1e-12) and np.allclose(mean, lw.location_, atol=1e-12)
    assert lw.shrinkage_ > 0.01  # the shrinkage term is exercised


def test_nearest_residuals_are_the_plain_scan():
    _, patches = features(7)
    means = patches.mean(0)
    residuals = NeighbourMeans(means).residuals(torch.from_numpy(patches)).numpy()
    assert np.allclose(residuals, scan_residuals(patches, means), atol=1e-6)


def test_streamed_merged_and_in_memory_fits_equal_scikit_learn_on_every_residual():
    pooled, patches = features(120)
    expected = sklearn_reference(pooled, patches)
    whole = NormalReference().fit(pooled, patches)
    # two "sites" in batches: first-pass sums, merged means, then residuals against them
    halves = [slice(0, 50), slice(50, 120)]
    first = [ReferenceStats.of(pooled[s], torch.from_numpy(patches[s])) for s in halves]
    total = first[0] + first[1]
    means = total.patch_means()
    neighbours = NeighbourMeans(means)
    second = [f.with_residuals(residual_sums(torch.from_numpy(patches[s]), neighbours), means)
              for f, s in zip(first, halves)]
    merged = second[0] + second[1]
    assert merged.exact
    for ref in (whole, NormalReference.from_stats(merged)):
        for got, want in zip((ref.pooled_mean, ref.pooled_precision, ref.patch_means, ref.patch_precision), expected):
            assert close(got, want, 1e-5)
    for k, v in NormalReference.from_stats(merged).to_arrays().items():
        assert close(v, whole.to_arrays()[k], 1e-6), k


def test_a_fold_left_out_by_subtraction_is_the_fit_without_it():
    pooled, patches = features(90, seed=3)
    folds = [ReferenceStats.of(pooled[i::3], torch.from_numpy(patches[i::3])) for i in range(3)]
    without = folds[0] + folds[1] + folds[2] - folds[1]
    means = without.patch_means()
    keep = np.array([i % 3 != 1 for i in range(90)])
    residual = residual_sums(torch.from_numpy(patches[keep]), NeighbourMeans(means))
    direct = NormalReference().fit(pooled[keep], patches[keep])
    assert close(NormalReference.from_stats(without.with_residuals(residual, means)).patch_precision,
                 direct.patch_precision, 1e-6)
    assert not (folds[0] + folds[1]).with_residuals(residual, means).exact  # residuals against other means


def test_position_sums_give_each_positions_mean_and_spread():
    d = np.random.default_rng(1).gamma(2.0, size=(40, 6, 5))
    s = PositionSums.of(d[:15]) + PositionSums.of(d[15:])
    mean, std, spread = s.mean_std()
    assert np.allclose(mean, d.mean(0)) and np.allclose(std, d.std(0)) and np.isclose(spread, d.std())


@pytest.mark.parametrize("n, fpr", [(40, 0.05), (200, 0.05), (100, 0.1)])
def test_rank_threshold_states_the_false_positive_rate_new_normals_get(n, fpr):
    """Normal scores ~ N(0, 1): a new normal's false-positive rate is 1 - Phi(threshold) exactly."""
    rng = np.random.default_rng(7)
    rates, inside = [], []
    for _ in range(2000):
        c = Calibration(rng.normal(size=n), rng.normal(size=n), fpr, rule="rank")
        e = c.expected_fpr()
        rate = norm.sf(c.threshold)
        rates.append(rate)
        inside.append(e.low <= rate <= e.high)
    assert abs(np.mean(rates) - e.mean) < 0.004 and e.mean <= fpr
    assert 0.86 <= np.mean(inside) <= 0.94  # the stated 90 % interval


@pytest.mark.parametrize("n, above, unstable", [(99, 4, True), (100, 4, True), (118, 4, True), (119, 5, False)])
def test_unstable_is_said_where_fewer_than_five_normals_are_above_the_threshold(n, above, unstable):
    """The line says 'unstable: ... fewer than 5 above it'; the rule was n x FPR < 5, which passed 100
    to 118 normals at 5 % with 4 above, and the advice 'at least 100' led to such a threshold."""
    e = Calibration(np.arange(n, dtype=float), np.arange(n, dtype=float), 0.05, rule="rank").expected_fpr()
    assert e.above == above and e.unstable == unstable and e.to_dict()["unstable"] == unstable
    assert ("unstable: a 5 % threshold on" in e.text()) == unstable
    assert "calibrate on at least 119 normals" in e.text() or not unstable
