"""The hc start: mclust's model-based hierarchical clustering (gmmcli.core.hc) and how a
fit starts from it (gmmcli.core.init: hc_tree, hc_params), select-k's shared trees and
its ``auto`` start.

The merge criterion is checked against a direct transcription of its definition (every
pair's cost from the rows themselves, no updates) and against a small example worked
out by hand.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from numpy.testing import assert_allclose
from test_parts import SplitRows, assert_same_model

import gmmcli
from gmmcli.core import init as init_module
from gmmcli.core import select as select_module
from gmmcli.core.em import InMemoryRows
from gmmcli.core.fit import fit_rows, summarise, whole_data_start
from gmmcli.core.hc import agglomerate, scaled_svd
from gmmcli.core.init import hc_params, hc_tree, initial_params
from gmmcli.core.options import SELECT_DEFAULTS, FitOptions
from gmmcli.core.structures import get_covariance
from gmmcli.errors import InvalidParameter

pytestmark = pytest.mark.filterwarnings("ignore::gmmcli.errors.GMMWarning")


def rows_of(X, weights=None, block_rows=0):
    weights = np.ones(len(X)) if weights is None else np.asarray(weights, dtype=float)
    return InMemoryRows(X, weights, np.zeros(X.shape[1]), block_rows=block_rows)


def same_tree(a, b):
    assert np.array_equal(a.leaves, b.leaves)
    assert np.array_equal(a.weights, b.weights)
    assert np.array_equal(a.tree.merges, b.tree.merges)
    assert np.array_equal(a.tree.costs, b.tree.costs)


# -- the merge criterion ---------------------------------------------------------------


def reference_tree(Z, weights, beta=1.0):
    """The same clustering by brute force: every pair's cost recomputed from its rows."""
    n_leaves, p = Z.shape
    total = weights.sum()
    alpha = weights @ np.square(Z - weights @ Z / total).sum(axis=1) / (total * p)

    def term(members):
        w, rows = weights[members], Z[members]
        n = w.sum()
        deviation = rows - w @ rows / n
        scatter = (deviation * w[:, None]).T @ deviation
        smoothed = math.log(beta * (np.trace(scatter) + alpha) / n)
        if len(members) <= p:  # singular scatter: its determinant counts as 0
            return n * smoothed
        sign, logdet = np.linalg.slogdet(scatter / n)
        return n * (np.logaddexp(logdet, smoothed) if sign > 0 else smoothed)

    clusters = {i: [i] for i in range(n_leaves)}
    merges, costs = [], []
    while len(clusters) > 1:
        keys = sorted(clusters)
        cost, a, b = min(
            (term(clusters[a] + clusters[b]) - term(clusters[a]) - term(clusters[b]), a, b)
            for i, a in enumerate(keys)
            for b in keys[i + 1 :]
        )
        merges.append((a, b))
        costs.append(cost)
        clusters[a] += clusters.pop(b)
    return np.array(merges), np.array(costs)


@pytest.mark.parametrize("n_features", [1, 2, 3])
def test_merges_are_those_of_the_criterion_computed_directly(n_features):
    rng = np.random.default_rng(n_features)
    centres = rng.normal(0, 3, (3, n_features))
    Z = centres[rng.integers(0, 3, 24)] + rng.normal(size=(24, n_features))
    weights = rng.integers(1, 4, 24).astype(float)
    tree = agglomerate(Z, weights)
    merges, costs = reference_tree(Z, weights)
    assert np.array_equal(tree.merges, merges)
    # the fast path updates scatter matrices and factors; the reference sums from scratch
    assert_allclose(tree.costs, costs, rtol=1e-9, atol=1e-9)


def test_criterion_on_an_example_worked_by_hand():
    # Four corners of a 2 x 6 rectangle: α = Σ|z - z̄|² / (n p) = 4 · 10 / (4 · 2) = 5.
    # Two rows a apart merge at n log(β(T + α)/n) - 2 log(αβ) = 2 log((a²/2 + 5)/2) - 2 log 5
    # (mclust's cost of two singletons); the short sides (a = 2) go first.
    # Then the whole: W = diag(4, 36), |W/4| = 9 > 0 as it holds more rows than p = 2, so
    # 4 log(9 + (40 + 5)/4) - 2 · 2 log((2 + 5)/2) = 4 log(81/14).
    Z = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 6.0], [2.0, 6.0]])
    tree = agglomerate(Z, np.ones(4))
    assert tree.merges.tolist() == [[0, 1], [2, 3], [0, 2]]
    expected = [2 * math.log(0.7), 2 * math.log(0.7), 4 * math.log(81 / 14)]
    assert_allclose(tree.costs, expected, rtol=1e-12)
    assert tree.labels(2).tolist() == [0, 0, 1, 1]
    assert tree.labels(4).tolist() == [0, 1, 2, 3]
    assert tree.labels(9).tolist() == [0, 1, 2, 3]  # more clusters than leaves: each its own
    assert tree.labels(1).tolist() == [0, 0, 0, 0]


def test_a_row_of_weight_w_is_w_identical_rows():
    # mclust starts duplicated rows in one cluster: w copies of a row weigh w, sit at one
    # point and have no scatter, exactly what a leaf of weight w is.
    Z = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [4.0, 4.0], [5.0, 4.0]])
    weights = np.array([3.0, 1.0, 2.0, 1.0, 4.0])
    tree = agglomerate(Z, weights)
    merges, costs = reference_tree(Z, weights)
    assert np.array_equal(tree.merges, merges)
    assert_allclose(tree.costs, costs, rtol=1e-12)


def test_scaled_svd_is_mclusts_transform():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3)) @ rng.normal(size=(3, 3)) + [1.0, -2.0, 30.0]
    X = np.column_stack([X, np.full(40, 7.0)])  # a constant column is left out
    scaled = (X[:, :3] - X[:, :3].mean(axis=0)) / X[:, :3].std(axis=0, ddof=1)
    U, d, _ = np.linalg.svd(scaled, full_matrices=False)
    Z = scaled_svd(X, np.ones(40))
    # U D^(1/2) up to the sign and order of the axes: compare what the criterion sees
    assert Z.shape == (40, 3)
    assert_allclose(Z @ Z.T, (U * d) @ U.T, rtol=1e-10, atol=1e-12)
    counts = rng.integers(1, 4, 40)
    repeated = scaled_svd(np.repeat(X, counts, axis=0), np.ones(counts.sum()))
    weighted = np.repeat(scaled_svd(X, counts.astype(float)), counts, axis=0)
    assert_allclose(weighted @ weighted.T, repeated @ repeated.T, rtol=1e-10, atol=1e-12)


# -- the start ---------------------------------------------------------------------------


def test_hc_recovers_well_separated_blobs(mixture):
    X, truth = mixture(11, n_samples=300, n_features=3, n_components=3, spread=20.0)
    hc = hc_tree(rows_of(X), 2000, np.random.default_rng(0))
    assert not hc.sampled and len(hc.leaves) == 300
    truth_of = {row.tobytes(): label for row, label in zip(X + 0.0, truth, strict=True)}
    leaf_truth = np.array([truth_of[leaf.tobytes()] for leaf in hc.leaves])
    labels = hc.tree.labels(3)
    pairs = set(zip(labels.tolist(), leaf_truth.tolist(), strict=True))
    assert len(pairs) == 3  # one cluster per blob


def test_a_sampled_tree_starts_every_row_in_its_blob(mixture):
    X, truth = mixture(12, n_samples=3000, n_features=2, n_components=3, spread=20.0)
    rows = rows_of(X)
    cov = get_covariance("full")
    fallback = whole_data_start(rows, 3, cov, 1e-6, init_module.SERIAL)
    hc = hc_tree(rows, 100, np.random.default_rng(1))
    assert hc.sampled and len(hc.leaves) == 100
    start = hc_params(rows, 3, hc, cov, 1e-6, fallback)
    order = np.argsort(start.means[:, 0])
    means = np.array([X[truth == k].mean(axis=0) for k in range(3)])
    shares = np.bincount(truth) / len(X)
    blob = np.argsort(means[:, 0])
    # the partition of all 3,000 rows is the blobs': its M-step is theirs (to rounding)
    assert_allclose(start.means[order], means[blob], rtol=1e-9, atol=1e-9)
    assert_allclose(start.weights[order], shares[blob], rtol=1e-12)


def test_the_leaves_are_at_most_hc_rows_distinct_rows(mixture):
    X, _ = mixture(13, n_samples=500)
    rng = np.random.default_rng(0)
    sampled = hc_tree(rows_of(X), 50, rng)
    assert sampled.sampled and len(sampled.leaves) == 50
    assert len(np.unique(sampled.leaves, axis=0)) == 50
    # rows of equal weight weigh one each in the clustering, as mclust's subset does
    assert_allclose(sampled.weights, 1.0, rtol=1e-12)
    # 40 distinct rows, 400 in all: no sample, each leaf weighs its copies
    few = np.repeat(X[:40], 10, axis=0)[np.random.default_rng(1).permutation(400)]
    whole = hc_tree(rows_of(few), 50, rng)
    assert not whole.sampled and len(whole.leaves) == 40
    assert whole.weights.tolist() == [10.0] * 40


def test_a_heavy_row_weighs_as_often_as_it_would_be_drawn(mixture):
    X, _ = mixture(14, n_samples=500)
    weights = np.ones(500)
    weights[7] = 1000.0  # two thirds of the weight
    hc = hc_tree(rows_of(X, weights), 50, np.random.default_rng(0))
    heavy = np.flatnonzero((hc.leaves == X[7]).all(axis=1))
    assert len(heavy) == 1
    # about 50 · 1000/1499 = 33 of 50 draws by weight; the others about one each
    assert 25 < hc.weights[heavy[0]] < 40
    assert_allclose(hc.weights.sum(), 50.0, rtol=1e-12)


@pytest.mark.parametrize("hc_rows", [2000, 60])
def test_weights_are_repeated_rows_for_the_hc_start(mixture, hc_rows):
    # With hc_rows=60 the 300 repeated rows are more than hc_rows but only 45 are distinct:
    # both ways the leaves are the 45 rows with their counts, the same start.
    X, _ = mixture(15, n_samples=45)
    counts = np.random.default_rng(2).integers(1, 12, 45)
    options = FitOptions(init="hc", hc_rows=hc_rows, seed=0)
    starts = []
    for rows in (rows_of(X, counts), rows_of(np.repeat(X, counts, axis=0))):
        data = summarise(rows)
        centred = rows.centred(data.centre)
        cov = get_covariance("full")
        fallback = whole_data_start(centred, 3, cov, 1e-6, init_module.SERIAL)
        rng = np.random.default_rng(0)
        starts.append(initial_params(centred, 3, options, data=data, fallback=fallback, rng=rng))
    weighted, repeated = starts
    # the same leaves and tree; sums over 45 weighted or 300 repeated rows differ in rounding
    assert_allclose(weighted.weights, repeated.weights, rtol=1e-12)
    assert_allclose(weighted.means, repeated.means, rtol=1e-10, atol=1e-12)
    assert_allclose(weighted.covariances, repeated.covariances, rtol=1e-10, atol=1e-12)


def test_the_tree_does_not_depend_on_blocks_or_parts(mixture):
    X, _ = mixture(16, n_samples=700)
    weights = np.random.default_rng(3).integers(0, 4, 700).astype(float)
    whole = hc_tree(rows_of(X, weights), 80, np.random.default_rng(5))
    small_blocks = hc_tree(rows_of(X, weights, block_rows=31), 80, np.random.default_rng(5))
    split = SplitRows(X, weights, [200, 0, 1, 499], np.zeros(2))
    parts = hc_tree(split, 80, np.random.default_rng(5))
    for other in (small_blocks, parts):
        same_tree(whole, other)
    assert whole.sampled


def test_a_sampled_hc_fit_is_seeded_and_the_same_in_parts(mixture):
    X, _ = mixture(17, n_samples=900, n_features=3)
    weights = np.random.default_rng(0).integers(0, 4, len(X)).astype(float)
    options = dict(init="hc", hc_rows=100, n_init=2, seed=7, tol=1e-6)
    first = gmmcli.fit(X, 3, weights=weights, **options)
    assert gmmcli.dumps(first) == gmmcli.dumps(gmmcli.fit(X, 3, weights=weights, **options))
    split = fit_rows(
        SplitRows(X, weights, [250, 1, 0, 349, 300], np.zeros(3)), 3, FitOptions(**options)
    )
    assert_same_model(first, split)
    other_seed = gmmcli.fit(X, 3, weights=weights, **{**options, "seed": 8, "max_iter": 1})
    again = gmmcli.fit(X, 3, weights=weights, **{**options, "max_iter": 1})
    assert other_seed.fit_info.history[0] != again.fit_info.history[0]  # another sample


def test_hc_rows_below_k_is_refused(mixture):
    X, _ = mixture(18, n_samples=100)
    with pytest.raises(InvalidParameter, match="hc_rows must be at least K \\(4\\)"):
        gmmcli.fit(X, 4, init="hc", hc_rows=3)
    gmmcli.fit(X, 4, init="kmeans", hc_rows=3)  # no hc, no limit
    with pytest.raises(InvalidParameter, match="hc_rows"):
        gmmcli.select_k(X, range(1, 5), hc_rows=3)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_hc_starts_every_structure_even_with_fewer_distinct_rows_than_k(covariance_type):
    X = np.repeat([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [5.0, 5.0]], [10, 3, 1, 6], axis=0)
    for k in (3, 4, 5):
        model = gmmcli.fit(X, k, covariance_type=covariance_type, init="hc", seed=0)
        assert np.isfinite(model.means).all() and model.fit_info.init == "hc"


# -- select-k: one tree for every K, and auto --------------------------------------------


def test_select_k_builds_one_tree_for_every_point(mixture, monkeypatch):
    X, _ = mixture(19, n_samples=200)
    built = []

    def counting(*args, **kwargs):
        built.append(args[1:])
        return hc_tree(*args, **kwargs)

    monkeypatch.setattr(select_module, "hc_tree", counting)
    points, _ = gmmcli.select_k(X, range(1, 5), covariance_types=["full", "diag"])
    assert len(points) == 8 and len(built) == 1  # auto: restart 0 of every point is hc
    built.clear()
    gmmcli.select_k(X, range(1, 3), covariance_types=["full"], init="hc", criterion="cv")
    assert len(built) == 1 + 5  # all rows once, each training fold once; restarts share it


def test_a_grid_point_is_the_fit_of_its_k_with_the_same_options(mixture):
    X, _ = mixture(20, n_samples=400)
    options = dataclasses.replace(SELECT_DEFAULTS, hc_rows=150, n_init=2, seed=3)
    points, _ = gmmcli.select_k(X, [3], covariance_types=["full"], options=options)
    alone = gmmcli.fit(X, 3, options=options)  # builds its own (sampled) tree
    assert points[0].log_likelihood == alone.fit_info.log_likelihood
    assert alone.fit_info.init == "auto"


def test_auto_is_hc_first_then_kmeans():
    options = FitOptions(init="auto", n_init=3)
    assert [options.init_for(i) for i in range(3)] == ["hc", "kmeans", "kmeans"]
    assert FitOptions(init="hc").init_for(2) == "hc"
    assert SELECT_DEFAULTS.init == "auto" and FitOptions().init == "kmeans"
