"""Missing values in the core: the marginal density and conditional moments of rows with
gaps, EM through them, the data's pairwise summary and the starts."""

from __future__ import annotations

import numpy as np
import pytest
from core_helpers import blocks_of
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose
from scipy.stats import multivariate_normal

import gmmcli
from gmmcli.core import em, missing
from gmmcli.core.em import InMemoryRows, Params, Prepared, e_step
from gmmcli.core.fit import fit_rows, summarise
from gmmcli.core.generate import random_mixture
from gmmcli.core.missing import Coverage, Marginal, expected_moments, observed_distances
from gmmcli.core.options import FitOptions
from gmmcli.core.structures import COVARIANCE_TYPES, get_covariance
from gmmcli.engines import local
from gmmcli.errors import DataError

FULL = get_covariance("full")


def _mixture(n_components=3, n_features=5, seed=0):
    rng = np.random.default_rng(seed)
    factors = rng.standard_normal((n_components, n_features, n_features))
    covariances = factors @ factors.transpose(0, 2, 1) + np.eye(n_features)
    means = 2 * rng.standard_normal((n_components, n_features))
    weights = rng.dirichlet(np.ones(n_components))
    return weights, means, covariances


def _with_gaps(X, share, seed):
    rng = np.random.default_rng(seed)
    X = X.copy()
    X[rng.random(X.shape) < share] = np.nan
    return X


def _rows(X, weights=None):
    weights = np.ones(len(X)) if weights is None else weights
    return InMemoryRows(X, weights, np.zeros(X.shape[1]))


def _sample(n=3000, n_features=5, n_components=3, share=0.2, seed=0):
    mixture = random_mixture(
        n_components, n_features, separation=3.0, rng=np.random.default_rng(seed)
    )
    X, _ = mixture.sample(n, seed=seed + 1)
    return X, _with_gaps(X, share, seed + 2)


@pytest.fixture(params=["patterns", "counts"])
def grouped(request, monkeypatch):
    """Rows with gaps taken by their pattern (every pattern shares its factors) or by
    their number of gaps (row by row), the two ways Marginal.groups() has."""
    monkeypatch.setattr(missing, "MIN_PATTERN_ROWS", 1 if request.param == "patterns" else 10**9)
    return request.param


def test_marginal_density_and_conditional_moments_are_the_direct_ones(grouped):
    """Every row with gaps (all features missing too): log πₖ + log N(x_o) against
    scipy on the observed coordinates to 1e-10, and E[x_m | x_o], Cov[x_m | x_o] against
    the covariance-form formulas."""
    weights, means, covariances = _mixture()
    marginal = Marginal.of(means, FULL.precision_cholesky(covariances), np.log(weights), FULL)
    X = _with_gaps(np.random.default_rng(1).standard_normal((60, 5)), 0.4, 2)
    X[0] = np.nan
    gaps = np.isnan(X)
    seen = 0
    for group in marginal.groups(X, gaps):
        conditional = group.conditional_covariances()
        for at, row in enumerate(group.rows):
            o, m = ~gaps[row], gaps[row]
            for k in range(len(weights)):
                S = covariances[k]
                gain = np.linalg.solve(S[np.ix_(o, o)], S[np.ix_(o, m)]).T
                expected = np.log(weights[k])
                if o.any():
                    density = multivariate_normal(means[k, o], S[np.ix_(o, o)])
                    expected += density.logpdf(X[row, o])
                assert_allclose(group.log_joint[k, at], expected, rtol=0, atol=1e-10)
                mean_m = means[k, m] + gain @ (X[row, o] - means[k, o])
                assert_allclose(group.filled[k, at, m], mean_m, rtol=1e-12, atol=1e-12)
                assert_allclose(group.filled[k, at, o], X[row, o], rtol=0, atol=0)
                spread = S[np.ix_(m, m)] - gain @ S[np.ix_(o, m)]
                assert_allclose(conditional[k, at], spread, rtol=1e-10, atol=1e-12)
            seen += 1
    assert seen == int(gaps.any(axis=1).sum())


def test_expected_second_moments_add_the_conditional_covariances(grouped):
    weights, means, covariances = _mixture(2, 4)
    marginal = Marginal.of(means, FULL.precision_cholesky(covariances), np.log(weights), FULL)
    X = _with_gaps(np.random.default_rng(3).standard_normal((30, 4)), 0.3, 4)
    gaps = np.isnan(X)
    for group in marginal.groups(X, gaps):
        weighted = np.random.default_rng(5).random((2, len(group.rows)))
        second = expected_moments([group], weighted)[2]
        conditional = group.conditional_covariances()
        expected = np.zeros((2, 4, 4))
        for at in range(len(group.rows)):
            missing = group.missing[at]
            for k in range(2):
                x = group.filled[k, at]
                outer = np.outer(x, x)
                outer[np.ix_(missing, missing)] += conditional[k, at]
                expected[k] += weighted[k, at] * outer
        assert_allclose(second, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["full", "tied", "diag", "spherical", "VEV", "EEI"])
def test_without_gaps_marginal_is_the_same_bytes_as_refuse(name):
    X, _ = _sample(800)
    fits = [
        gmmcli.fit(X, 3, covariance_type=name, seed=0, missing=missing)
        for missing in ("refuse", "marginal")
    ]
    for attribute in ("weights", "means", "covariances"):
        np.testing.assert_array_equal(*(getattr(fit, attribute) for fit in fits))
    assert fits[0].fit_info.history == fits[1].fit_info.history


@pytest.mark.parametrize("name", sorted(COVARIANCE_TYPES))
@pytest.mark.parametrize("share", [0.2, 0.5])
def test_em_through_gaps_never_loses_likelihood(name, share):
    """Every structure; at 50% missing too few rows are complete, so the start is
    k-means over observed features."""
    _, X = _sample(600, share=share)
    X = X[~np.isnan(X).all(axis=1)]
    options = FitOptions(covariance_type=name, seed=0, tol=0, max_iter=15)
    fit = fit_rows(_rows(X), 3, options)
    history = np.array(fit.fit_info.history)
    assert np.all(np.diff(history) >= -1e-9 * np.abs(history[1:])), name
    assert fit.fit_info.largest_drop == 0.0


def test_the_log_likelihood_is_the_observed_data_one():
    """A fit's log-likelihood is Σ w log Σₖ πₖ N(x_o | k) at its parameters."""
    _, X = _sample(500)
    weights = np.random.default_rng(2).integers(1, 4, len(X)).astype(float)
    fit = fit_rows(_rows(X, weights), 3, FitOptions(seed=0))
    expected = 0.0
    for row, w in zip(X, weights, strict=True):
        o = ~np.isnan(row)
        densities = [
            fit.weights[k]
            * multivariate_normal(fit.means[k, o], fit.covariances[k][np.ix_(o, o)]).pdf(row[o])
            for k in range(3)
        ]
        expected += w * np.log(sum(densities))
    assert_allclose(fit.fit_info.log_likelihood, expected, rtol=1e-10)


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**16))
def test_integer_weights_are_repeated_rows_with_gaps(seed):
    _, X = _sample(200, n_features=3, n_components=2, share=0.3, seed=seed % 97)
    X = X[~np.isnan(X).all(axis=1)]
    counts = np.random.default_rng(seed).integers(1, 4, len(X))
    options = FitOptions(seed=0, tol=0, max_iter=5, init="kmeans++")
    weighted = fit_rows(_rows(X, counts.astype(float)), 2, options)
    repeated = fit_rows(_rows(np.repeat(X, counts, axis=0)), 2, options)
    assert_allclose(weighted.means, repeated.means, rtol=1e-8, atol=1e-10)
    assert_allclose(weighted.covariances, repeated.covariances, rtol=1e-8, atol=1e-10)


def test_forked_passes_give_the_one_thread_fit_with_gaps(monkeypatch):
    """Forked workers (each a run of groups of two 256-row blocks) and one thread agree
    exactly through gaps."""
    _, X = _sample(3000)
    monkeypatch.setattr(local, "FORK_MIN_VALUES", 0)
    monkeypatch.setattr(em, "GROUP_ROWS", 512)
    kept = []
    workers = local.Workers

    class Counting(workers):
        def map(self, task):
            kept.append(1 + len(self.children))
            return super().map(task)

    monkeypatch.setattr(local, "Workers", Counting)
    options = FitOptions(seed=0)
    with blocks_of(256):
        monkeypatch.setenv("GMMCLI_THREADS", "1")
        alone = fit_rows(_rows(X), 3, options, reducer=local.reducer())
        assert kept == []
        monkeypatch.setenv("GMMCLI_THREADS", "3")
        shared = fit_rows(_rows(X), 3, options, reducer=local.reducer())
    assert kept and set(kept) == {3}
    np.testing.assert_array_equal(alone.covariances, shared.covariances)
    assert alone.fit_info.log_likelihood == shared.fit_info.log_likelihood


def test_patterns_and_counts_give_the_same_statistics(monkeypatch):
    weights, means, covariances = _mixture(3, 6)
    params = Params(weights, means, covariances, FULL.precision_cholesky(covariances))
    X = _with_gaps(np.random.default_rng(6).standard_normal((3000, 6)), 0.15, 7)
    w = np.random.default_rng(8).random(len(X))
    stats = {}
    for least in (1, 40, 10**9):
        monkeypatch.setattr(missing, "MIN_PATTERN_ROWS", least)
        stats[least] = e_step(X, w, Prepared.of(params, FULL))
    for least in (1, 40):
        for name in ("nk", "sx", "second", "log_likelihood"):
            assert_allclose(
                getattr(stats[least], name), getattr(stats[10**9], name), rtol=1e-10, atol=1e-9
            )


def test_a_block_with_gaps_sums_its_complete_rows_then_its_gaps():
    """A block's statistics: its complete rows' by the fast kernel, plus the expected
    moments of its rows with gaps, in Marginal.groups()' order."""
    weights, means, covariances = _mixture()
    params = Params(weights, means, covariances, FULL.precision_cholesky(covariances))
    X = _with_gaps(np.random.default_rng(6).standard_normal((500, 5)), 0.1, 7)
    w = np.random.default_rng(8).random(len(X))
    prepared = Prepared.of(params, FULL)
    gaps = np.isnan(X)
    complete = ~gaps.any(axis=1)
    stats = e_step(X, w, prepared)
    alone = e_step(X[complete], w[complete], prepared)
    groups = list(prepared.marginal.groups(X, gaps))
    rows = np.concatenate([group.rows for group in groups])
    log_prob = np.hstack([group.log_joint for group in groups])
    top = log_prob.max(axis=0)
    resp = np.exp(log_prob - top)
    weighted = resp / resp.sum(axis=0) * w[rows]
    nk, sx, second = expected_moments(groups, weighted)
    assert_allclose(stats.nk, alone.nk + nk, rtol=1e-12)
    assert_allclose(stats.sx, alone.sx + sx, rtol=1e-12, atol=1e-12)
    assert_allclose(stats.second, alone.second + FULL.second_from_matrices(second), rtol=1e-12)
    expected = alone.log_likelihood + w[rows] @ (np.log(resp.sum(axis=0)) + top)
    assert_allclose(stats.log_likelihood, expected, rtol=1e-12)
    assert sorted(rows) == list(np.flatnonzero(~complete))


def test_the_pairwise_summary_is_the_direct_one():
    rng = np.random.default_rng(8)
    X = _with_gaps(rng.standard_normal((400, 4)) @ rng.standard_normal((4, 4)) + 1e8, 0.3, 9)
    weights = rng.integers(1, 3, len(X)).astype(float)
    summary = summarise(_rows(X, weights))
    observed = ~np.isnan(X)
    for a in range(4):
        seen = observed[:, a]
        assert_allclose(summary.centre[a], np.average(X[seen, a], weights=weights[seen]))
        for b in range(4):
            both = observed[:, a] & observed[:, b]
            xa, xb, w = X[both, a], X[both, b], weights[both]
            expected = np.average(
                (xa - np.average(xa, weights=w)) * (xb - np.average(xb, weights=w)), weights=w
            )
            assert_allclose(summary.coverage.covariance()[a, b], expected, rtol=1e-7, atol=1e-9)
    assert summary.missing_cells == int((~observed).sum())
    assert summary.total_weight == weights.sum()


def test_a_feature_never_seen_is_refused_by_name():
    X = np.random.default_rng(0).standard_normal((100, 3))
    X[:, 1] = np.nan
    with pytest.raises(DataError, match="'b' has no value in any row"):
        fit_rows(_rows(X), 2, FitOptions(), feature_names=["a", "b", "c"])


def test_a_pair_never_seen_together_is_refused_where_covariances_pair_features():
    X = np.random.default_rng(0).standard_normal((400, 3))
    X[:200, 0] = np.nan
    X[200:, 1] = np.nan
    with pytest.raises(DataError, match="no row has both 'a' and 'b'"):
        fit_rows(_rows(X), 2, FitOptions(), feature_names=["a", "b", "c"])
    fit = fit_rows(_rows(X), 2, FitOptions(covariance_type="diag", seed=0))
    assert np.isfinite(fit.covariances).all()


def test_observed_distances_scale_what_a_row_has_to_all_features():
    X = np.array([[1.0, np.nan, 3.0, np.nan], [0.0, 0.0, 0.0, 0.0]])
    centre = np.array([[0.0, 5.0, 1.0, 7.0]])
    assert_allclose(observed_distances(X, centre)[:, 0], [4 / 2 * (1 + 4), 0 + 25 + 1 + 49])


def test_coverage_adds_up_in_any_order():
    rng = np.random.default_rng(3)
    X = _with_gaps(rng.standard_normal((90, 3)) + 1e8, 0.4, 4)
    X = X[np.isnan(X).any(axis=1)]
    w = rng.integers(1, 4, len(X)).astype(float)
    whole = Coverage.of(X, w)
    for cuts in ([40], [1, 2, 60], [30, 31]):
        parts = [
            Coverage.of(X[a:b], w[a:b]) for a, b in zip([0, *cuts], [*cuts, len(X)], strict=True)
        ]
        summed = parts[0]
        for part in parts[1:]:
            summed = summed + part
        for name in ("pair_weights", "means", "comoments"):
            assert_allclose(getattr(summed, name), getattr(whole, name), rtol=1e-9, atol=1e-6)
        assert (summed.weight, summed.n_samples, summed.missing_cells) == (
            whole.weight,
            whole.n_samples,
            whole.missing_cells,
        )


def test_fitting_through_gaps_beats_deleting_rows_and_filling_means():
    """The issue's bar: D = 5, K = 3, N = 3,000, 20% of cells removed at random; the mean
    log-likelihood of complete held-out rows under the model fitted through the gaps
    beats listwise deletion and mean imputation in at least 8 of 10 seeds."""
    wins = 0
    for seed in range(10):
        mixture = random_mixture(3, 5, separation=2.0, rng=np.random.default_rng(seed))
        X, _ = mixture.sample(4000, seed=seed + 100)
        train, held_out = _with_gaps(X[:3000], 0.2, seed), X[3000:]
        gaps = np.isnan(train)
        options = FitOptions(seed=0, n_init=2)
        through = fit_rows(_rows(train), 3, options)
        deleted = fit_rows(_rows(train[~gaps.any(axis=1)]), 3, options)
        filled = np.where(gaps, np.nanmean(train, axis=0), train)
        imputed = fit_rows(_rows(filled), 3, options)
        scores = [fit.score(held_out) for fit in (through, deleted, imputed)]
        wins += scores[0] > max(scores[1:])
    assert wins >= 8


def test_float32_through_gaps_is_float64_to_its_precision():
    _, X = _sample(2000)
    X = X[~np.isnan(X).all(axis=1)]
    fits = [
        fit_rows(_rows(X), 3, FitOptions(seed=0, dtype=dtype)) for dtype in ("float32", "float64")
    ]
    for name in ("weights", "means", "covariances"):
        a, b = (getattr(fit, name) for fit in fits)
        assert np.max(np.abs(a - b)) <= 1e-4 * np.max(np.abs(b)), name


def test_a_start_model_goes_on_through_gaps():
    """EM from a saved model's parameters (--init-model) on rows with gaps: the fit that
    runs all the iterations at once."""
    _, X = _sample(1500)
    X = X[~np.isnan(X).all(axis=1)]
    whole = gmmcli.fit(X, 3, seed=0, tol=0, max_iter=6, missing="marginal")
    first = gmmcli.fit(X, 3, seed=0, tol=0, max_iter=2, missing="marginal")
    rest = gmmcli.fit(X, start=first, tol=0, max_iter=4, missing="marginal")
    assert_allclose(rest.means, whole.means, rtol=1e-9)
    assert_allclose(rest.covariances, whole.covariances, rtol=1e-9)


def test_patterns_and_counts_fill_alike(monkeypatch):
    """The rows with gaps filled by their conditional means, and their conditional
    covariances, are the same whichever way the rows are grouped."""
    weights, means, covariances = _mixture(3, 5)
    X = np.random.default_rng(9).standard_normal((40, 5))
    X[:, [1, 3]] = np.nan
    found = {}
    for least in (1, 10**9):
        monkeypatch.setattr(missing, "MIN_PATTERN_ROWS", least)
        marginal = Marginal.of(means, FULL.precision_cholesky(covariances), np.log(weights), FULL)
        (group,) = marginal.groups(X, np.isnan(X))
        found[least] = (group.filled, group.conditional_covariances())
    for a, b in zip(found[1], found[10**9], strict=True):
        assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_predictions_through_gaps_do_not_depend_on_where_the_input_is_cut():
    """Rows that share a pattern of gaps across a tile's edge, the input cut next to them:
    every row's outputs are the same bytes as from the whole input."""
    from gmmcli.core.em import tile_rows
    from gmmcli.core.model import RowOutputs

    X, _ = _sample(20000, n_features=4, n_components=2, share=0.0)
    model = gmmcli.fit(X, 2, seed=0)
    rows = tile_rows(Prepared.of(model._params(), model.covariance), 4)
    X[rows - 10 : rows + 10, 1] = np.nan  # twenty rows, one pattern, across a tile's edge
    X[rows + 3, 2] = np.nan

    def predicted(cuts):
        outputs = RowOutputs.empty(len(X), 2, log_likelihood=True, probabilities=True, imputed=4)
        for start, stop in zip([0, *cuts], [*cuts, len(X)], strict=True):
            model.predict_into(X[start:stop], outputs[start:stop], first_row=start)
        return outputs

    whole = predicted([])
    for cut in (rows - 9, rows - 3, rows, rows + 4, rows + 9):
        piecewise = predicted([cut])
        for name in ("log_likelihood", "probabilities", "imputed"):
            np.testing.assert_array_equal(getattr(piecewise, name), getattr(whole, name), name)


@pytest.mark.parametrize("n_features", [5, 70])
def test_rows_share_a_pattern_key_exactly_when_they_share_their_gaps(n_features):
    """(Beyond 63 features the keys are the gaps' packed bytes, not an integer.)"""
    gaps = np.random.default_rng(11).random((200, n_features)) < 0.5
    gaps[100:] = gaps[:100]
    keys = missing._pattern_keys(gaps)
    same_key = keys[:, None] == keys[None, :]
    same_gaps = (gaps[:, None, :] == gaps[None, :, :]).all(axis=2)
    np.testing.assert_array_equal(same_key, same_gaps)
