"""The data's summary in one pass (means and scatters added pairwise), and a fit from a
complete start that takes no pass of its own for it."""

from __future__ import annotations

import numpy as np
import pytest
from core_helpers import blocks_of
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose

from gmmcli.core.em import SERIAL, InMemoryRows, Serial
from gmmcli.core.fit import block_moments, fit_rows, summarise
from gmmcli.core.options import FitOptions
from gmmcli.errors import DataError, SingularCovarianceError


def _rows(X, weights=None, centre=None):
    weights = np.ones(len(X)) if weights is None else weights
    return InMemoryRows(X, weights, np.zeros(X.shape[1]) if centre is None else centre)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 300),
    block=st.sampled_from([1, 7, 64]),
    offset=st.floats(-1e6, 1e6),
    seed=st.integers(0, 2**16),
)
def test_one_pass_gives_the_two_pass_summary(n, block, offset, seed):
    """Summed block by block about each block's own mean, far from the origin, the
    summary is the textbook two-pass one to rounding."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3)) * [1, 10, 0.1] + offset
    weights = rng.integers(0, 4, n).astype(float)
    if weights.sum() == 0:
        weights[0] = 1.0
    with blocks_of(block):
        summary = summarise(_rows(X, weights))
    total = weights.sum()
    centre = weights @ X / total
    scatter = ((X - centre).T * weights) @ (X - centre)
    assert summary.total_weight == total
    assert summary.n_samples == np.count_nonzero(weights)
    assert_allclose(summary.centre, centre, rtol=1e-12, atol=1e-12 * (1 + abs(offset)))
    expected = scatter / total
    spread = np.sqrt(np.diag(expected))
    # Far from the origin the rows themselves hold only eps·|offset| of each value.
    rounding = 64 * np.finfo(float).eps * (1 + abs(offset)) * np.add.outer(spread, spread)
    error = np.abs(summary.covariance - expected)
    assert np.all(error <= 1e-12 * np.outer(spread, spread) + rounding)


def test_blocks_without_weight_count_for_nothing():
    X = np.arange(12.0).reshape(6, 2)
    assert block_moments(X, np.zeros(6)) is None
    with blocks_of(2):
        summary = summarise(_rows(X, np.array([0, 0, 1, 1, 0, 0.0])))
    assert_allclose(summary.centre, [5, 6])
    with pytest.raises(DataError, match="no row with a positive weight"):
        summarise(_rows(X, np.zeros(6)))


def test_an_overflowing_sum_is_named_overflow():
    X = np.full((4, 2), 1e308)
    with pytest.raises(SingularCovarianceError) as raised:
        summarise(_rows(X))
    assert raised.value.overflow


class CountingPasses(Serial):
    def __init__(self):
        self.passes = 0

    def sum(self, rows, block_stats):
        self.passes += 1
        return super().sum(rows, block_stats)


def _complete_start(X):
    return dict(
        weights_init=[0.5, 0.5],
        means_init=[X.min(axis=0), X.max(axis=0)],
        precisions_init=np.stack([np.eye(2)] * 2),
    )


def test_a_complete_start_costs_no_pass_beyond_em():
    """tol = 0 and three iterations: the start's E-step (which also gathers the summary)
    and one E-step per iteration, nothing else (test_oracle holds such fits to
    scikit-learn's numbers)."""
    rng = np.random.default_rng(3)
    X = np.concatenate([rng.normal(-3, 1, (100, 2)), rng.normal(4, 2, (120, 2))]) + 1e4
    options = FitOptions(max_iter=3, tol=0, seed=0, **_complete_start(X))
    counting = CountingPasses()
    model = fit_rows(_rows(X), 2, options, reducer=counting)
    assert counting.passes == 1 + 3
    float32 = FitOptions(max_iter=3, tol=0, seed=0, dtype="float32", **_complete_start(X))
    counting = CountingPasses()
    fit_rows(_rows(X), 2, float32, reducer=counting)
    assert counting.passes == 1 + 1 + 3  # float32 EM: the summary is taken in float64 first
    assert model.fit_info.n_samples == 220 and model.fit_info.total_weight == 220.0


def test_a_complete_start_still_checks_the_rows():
    X = np.arange(8.0).reshape(4, 2)
    options = FitOptions(max_iter=2, tol=0, **_complete_start(X))
    with pytest.raises(DataError, match="no row with a positive weight"):
        fit_rows(_rows(X, np.zeros(4)), 2, options, reducer=SERIAL)
