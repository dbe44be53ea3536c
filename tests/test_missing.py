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
from gmmcli.core import em
from gmmcli.core import gaps as gaps_module
from gmmcli.core.em import InMemoryRows, Params, Prepared, e_step
from gmmcli.core.fit import fit_rows, summarise
from gmmcli.core.gaps import Layout, Marginal
from gmmcli.core.generate import random_mixture
from gmmcli.core.missing import Coverage, observed_distances
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


def _direct(weights, means, covariances, x):
    """For one row with gaps, for every component: log πₖ + log N(x_o) from scipy on the
    observed coordinates, and E[x_m | x_o], Cov[x_m | x_o] by the covariance-form
    formulas."""
    o, m = ~np.isnan(x), np.isnan(x)
    found = []
    for weight, mean, S in zip(weights, means, covariances, strict=True):
        gain = np.linalg.solve(S[np.ix_(o, o)], S[np.ix_(o, m)]).T if o.any() else None
        log_joint = np.log(weight)
        if o.any():
            log_joint += multivariate_normal(mean[o], S[np.ix_(o, o)]).logpdf(x[o])
        mean_m = mean[m] + (gain @ (x[o] - mean[o]) if o.any() else 0)
        spread = S[np.ix_(m, m)] - (gain @ S[np.ix_(o, m)] if o.any() else 0)
        found.append((log_joint, mean_m, spread))
    return found


def _gaps(weights, means, covariances, X, by_row=False):
    """The Gaps of rows X, and every row's log πₖ + log N(x̃ | k) (the kernel's part)."""
    prec_chol = FULL.precision_cholesky(covariances)
    gaps = np.isnan(X)
    filled = np.where(gaps, 0.0, X)
    block = Marginal.of(means, prec_chol, FULL).gaps(filled, Layout.of(gaps), by_row=by_row)
    kernel = FULL.log_gaussian(filled, means, prec_chol) + np.log(weights)
    return block, kernel, filled


@pytest.mark.parametrize("by_row", [False, True])
def test_marginal_density_and_conditional_moments_are_the_direct_ones(by_row):
    """Every row with gaps (all features missing too): log πₖ + log N(x̃) plus its offset
    against scipy on the observed coordinates to 1e-10, and E[x_m | x_o], Cov[x_m | x_o]
    against the covariance-form formulas."""
    weights, means, covariances = _mixture()
    X = _with_gaps(np.random.default_rng(1).standard_normal((60, 5)), 0.4, 2)
    X[0] = np.nan
    block, kernel, _ = _gaps(weights, means, covariances, X, by_row)
    seen = 0
    for group in block.groups:
        runs = np.diff([*group.patterns.starts, len(group.rows)])
        pattern_of_row = np.repeat(np.arange(len(runs)), runs)
        for at, row in enumerate(group.rows):
            direct = _direct(weights, means, covariances, X[row])
            for k, (log_joint, mean_m, spread) in enumerate(direct):
                got = kernel[row, k] + group.offsets[k, at]
                assert_allclose(got, log_joint, rtol=0, atol=1e-10)
                assert_allclose(group.means_missing[k, :, at], mean_m, rtol=1e-12, atol=1e-12)
                conditional = group.patterns.conditional[k, :, :, pattern_of_row[at]]
                assert_allclose(conditional, spread, rtol=1e-10, atol=1e-12)
                draw_factor = group.factored.draw_factor[k, :, :, group.slots[at]]
                assert_allclose(draw_factor @ draw_factor.T, spread, rtol=1e-10, atol=1e-12)
            assert list(group.missing[at]) == list(np.flatnonzero(np.isnan(X[row])))
            seen += 1
    assert seen == int(np.isnan(X).any(axis=1).sum())


def test_by_row_and_by_blas_agree():
    weights, means, covariances = _mixture(3, 6)
    X = _with_gaps(np.random.default_rng(6).standard_normal((3000, 6)), 0.3, 7)
    blas, by_row = (_gaps(weights, means, covariances, X, flag)[0] for flag in (False, True))
    for a, b in zip(blas.groups, by_row.groups, strict=True):
        np.testing.assert_array_equal(a.rows, b.rows)
        assert_allclose(a.offsets, b.offsets, rtol=1e-12, atol=1e-12)
        assert_allclose(a.means_missing, b.means_missing, rtol=1e-12, atol=1e-12)


def test_what_gaps_add_to_the_moments_is_the_direct_expectation():
    """Gaps.moments() plus the moments of x̃ are Σ w·rₖ E[x | x_o] and Σ w·rₖ E[x xᵀ | x_o],
    from the direct conditional means and covariances, rows of 1 to 4 gaps."""
    weights, means, covariances = _mixture(2, 4)
    X = _with_gaps(np.random.default_rng(3).standard_normal((400, 4)), 0.3, 4)
    X[:5] = np.nan
    X[:5, :1] = 1.0  # rows missing all but one feature
    block, _, filled = _gaps(weights, means, covariances, X)
    weighted = np.random.default_rng(5).random((2, len(X)))
    sx, second = block.moments(weighted)
    expected_sx = weighted @ filled
    expected_second = np.einsum("kn,na,nb->kab", weighted, filled, filled)
    for row, x in enumerate(X):
        if not np.isnan(x).any():
            continue
        m = np.isnan(x)
        for k, (_, mean_m, spread) in enumerate(_direct(weights, means, covariances, x)):
            completed = np.where(m, 0.0, x)
            completed[m] = mean_m
            outer = np.outer(completed, completed)
            outer[np.ix_(m, m)] += spread
            expected_sx[k] += weighted[k, row] * (completed - filled[row])
            expected_second[k] += weighted[k, row] * (outer - np.outer(filled[row], filled[row]))
    total_sx = weighted @ filled + sx
    total_second = np.einsum("kn,na,nb->kab", weighted, filled, filled) + second
    assert_allclose(total_sx, expected_sx, rtol=1e-12, atol=1e-12)
    assert_allclose(total_second, expected_second, rtol=1e-12, atol=1e-12)


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


def test_a_block_with_gaps_gives_the_direct_expected_statistics():
    """A block's statistics through gaps: responsibilities from the marginal densities,
    then Σ w·r, Σ w·r E[x | x_o] and Σ w·r E[x xᵀ | x_o], and Σ w log Σₖ πₖ N(x_o | k),
    all computed row by row from scipy and the covariance-form formulas."""
    weights, means, covariances = _mixture()
    params = Params(weights, means, covariances, FULL.precision_cholesky(covariances))
    X = _with_gaps(np.random.default_rng(6).standard_normal((500, 5)), 0.1, 7)
    w = np.random.default_rng(8).random(len(X))
    stats = e_step(X, w, prepared=Prepared.of(params, FULL))
    nk, sx, second, log_likelihood = np.zeros(3), np.zeros((3, 5)), np.zeros((3, 5, 5)), 0.0
    for x, weight in zip(X, w, strict=True):
        m = np.isnan(x)
        direct = _direct(weights, means, covariances, x)
        log_joint = np.array([entry[0] for entry in direct])
        top = log_joint.max()
        resp = np.exp(log_joint - top)
        log_likelihood += weight * (np.log(resp.sum()) + top)
        for k, (_, mean_m, spread) in enumerate(direct):
            r = weight * resp[k] / resp.sum()
            completed = x.copy()
            completed[m] = mean_m
            outer = np.outer(completed, completed)
            outer[np.ix_(m, m)] += spread
            nk[k] += r
            sx[k] += r * completed
            second[k] += r * outer
    assert_allclose(stats.nk, nk, rtol=1e-12)
    assert_allclose(stats.sx, sx, rtol=1e-11, atol=1e-12)
    assert_allclose(stats.second, FULL.second_from_matrices(second), rtol=1e-11, atol=1e-12)
    assert_allclose(stats.log_likelihood, log_likelihood, rtol=1e-12)


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


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rows_with_gaps_far_from_the_centre_keep_float64_precision(dtype):
    """Strongly correlated components far apart, the second feature missing in every row
    (the gaps set to the data's centre are far from where each component puts them, so
    log N(x̃) and the offset nearly cancel): a block's log-likelihood and weights match
    scipy on the observed feature, in a float32 fit too (a block with gaps is float64)."""
    rho, shift = 0.9999, 30.0
    covariance = np.array([[1.0, rho], [rho, 1.0]])
    means = np.array([[-shift, -shift], [shift, shift]])
    weights = np.array([0.4, 0.6])
    x = np.random.default_rng(3).normal(0.0, 25.0, 400)
    X = np.column_stack([x, np.full_like(x, np.nan)])
    covariances = np.stack([covariance, covariance])
    params = Params(weights, means, covariances, FULL.precision_cholesky(covariances))
    stats = e_step(X.astype(dtype), np.ones(len(X)), prepared=Prepared.of(params, FULL, dtype))
    log_joint = np.log(weights) + np.column_stack(
        [multivariate_normal(mean[0], 1.0).logpdf(x) for mean in means]
    )
    top = log_joint.max(axis=1, keepdims=True)
    resp = np.exp(log_joint - top)
    assert_allclose(stats.log_likelihood, np.sum(np.log(resp.sum(axis=1)) + top[:, 0]), rtol=1e-9)
    assert_allclose(stats.nk, (resp / resp.sum(axis=1, keepdims=True)).sum(axis=0), rtol=1e-9)


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


@pytest.mark.parametrize("n_features", [5, 57, 58, 70])
def test_pattern_keys_are_shared_exactly_by_the_same_gaps_and_sort_by_their_number(n_features):
    """(Beyond 57 features the keys are bytes, not an integer.)"""
    gaps = np.random.default_rng(11).random((200, n_features)) < 0.5
    gaps[100:] = gaps[:100]
    gaps[:20, :-1] = True  # rows with every gap but one: the most gaps, the fewest set bits
    counts = gaps.sum(axis=1)
    keys = gaps_module._pattern_keys(gaps, counts)
    same_key = keys[:, None] == keys[None, :]
    same_gaps = (gaps[:, None, :] == gaps[None, :, :]).all(axis=2)
    np.testing.assert_array_equal(same_key, same_gaps)
    assert np.all(np.diff(counts[np.argsort(keys, kind="stable")]) >= 0)


def test_kept_layouts_change_nothing_and_are_dropped_when_the_run_ends(monkeypatch):
    """A fit whose blocks' layouts are kept from pass to pass gives the same bytes as one
    that finds them again every pass; none is left once the fit returns."""
    _, X = _sample(3000)
    options = FitOptions(seed=0, tol=0, max_iter=4)
    seen = []
    get = gaps_module.LayoutCache.get

    def counting(cache, gaps, run):
        seen.append((run, len(cache.kept.layouts)))
        return get(cache, gaps, run)

    monkeypatch.setattr(gaps_module.LayoutCache, "get", counting)
    with blocks_of(256):
        kept = fit_rows(_rows(X), 3, options)
        assert not gaps_module.LAYOUTS.kept.layouts
        monkeypatch.setattr(gaps_module.LAYOUTS, "max_bytes", 0)
        found_again = fit_rows(_rows(X), 3, options)
    np.testing.assert_array_equal(kept.covariances, found_again.covariances)
    assert kept.fit_info.history == found_again.fit_info.history
    runs = sorted({run for run, _ in seen})
    assert len(runs) == 2 and 0 not in runs
    blocks = -(-len(X) // 256)
    assert max(size for run, size in seen if run == runs[0]) == blocks
    assert max(size for run, size in seen if run == runs[1]) == 0


def _deep_bytes(value, seen=None) -> int:
    """The bytes of every array reachable from ``value`` through dataclass fields,
    lists and dicts, each array's memory counted once."""
    seen = set() if seen is None else seen
    if isinstance(value, np.ndarray):
        base = value if value.base is None else value.base
        if id(base) in seen:
            return 0
        seen.add(id(base))
        return base.nbytes
    if isinstance(value, list | tuple):
        return sum(_deep_bytes(item, seen) for item in value)
    if hasattr(value, "__dataclass_fields__"):
        return sum(_deep_bytes(getattr(value, name), seen) for name in value.__dataclass_fields__)
    return 0


def test_the_layout_cache_counts_what_it_keeps_and_keeps_one_run_at_a_time():
    cache = gaps_module.LayoutCache(max_bytes=10**9)
    masks = [np.random.default_rng(seed).random((500, 6)) < 0.2 for seed in range(3)]
    first = cache.get(masks[0], run=1)
    assert cache.get(masks[0].copy(), run=1) is first  # found by its gaps, not identity
    cache.get(masks[1], run=1)
    kept = cache.kept
    assert len(kept.layouts) == 2
    held = sum(_deep_bytes(layout) + len(key[1]) for key, layout in kept.layouts.items())
    assert held <= kept.size  # views may be counted twice, no array left out
    cache.max_bytes = kept.size + masks[2].nbytes  # too little room for another layout
    cache.get(masks[2], run=1)
    assert len(kept.layouts) == 2
    cache.get(masks[2], run=2)  # another run: the first one's layouts dropped
    assert cache.kept.run == 2 and len(cache.kept.layouts) == 1
    cache.forget(1)  # an older run ending leaves the newer one's
    assert len(cache.kept.layouts) == 1
    cache.forget(2)
    assert not cache.kept.layouts
