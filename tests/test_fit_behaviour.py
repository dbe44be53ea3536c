"""What fit() promises beyond the numbers: seeds and restarts, convergence, component
order, initialisation, degenerate data, collapsed fits, warnings and errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import GaussianMixture as SkGaussianMixture

import gmmcli
from gmmcli import GMMError, GMMWarning
from gmmcli.core import init as init_module
from gmmcli.core.em import InMemoryRows
from gmmcli.core.init import sample_rows

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
INIT_METHODS = ("kmeans", "kmeans++", "random", "random-from-data")


@pytest.fixture(scope="module")
def blobs(mixture):
    X, _ = mixture(7, 240, 2, 3, 6.0)
    return X


def fit_quietly(*args, **kwargs):
    """fit() with GMMWarnings silenced (the test is not about them) and numpy's
    RuntimeWarnings (overflow, division by zero, invalid values) turned into errors."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GMMWarning)
        warnings.simplefilter("error", RuntimeWarning)
        return gmmcli.fit(*args, **kwargs)


def assert_finite(model):
    for name in ("weights", "means", "covariances"):
        assert np.all(np.isfinite(getattr(model, name))), name
    assert np.isfinite(model.fit_info.log_likelihood)
    assert np.all(np.isfinite(model.fit_info.history))


def final_log_likelihoods(X, n_components, **kwargs):
    """The model and each restart's final mean log-likelihood, via on_iteration."""
    finals: dict[int, float] = {}

    def record(restart, iteration, mean_ll):
        finals[restart] = mean_ll

    model = gmmcli.fit(X, n_components, on_iteration=record, **kwargs)
    return model, finals


# -- seeds and restarts ----------------------------------------------------------------


def test_same_seed_gives_a_bit_identical_model(blobs):
    first = fit_quietly(blobs, 3, seed=5, n_init=3, init="random")
    second = fit_quietly(blobs, 3, seed=5, n_init=3, init="random")
    assert gmmcli.dumps(first) == gmmcli.dumps(second)
    assert np.array_equal(first.predict_proba(blobs), second.predict_proba(blobs))


def test_restart_i_is_the_same_whatever_n_init(blobs):
    histories = {}
    for n_init in (2, 5):
        runs: dict[int, list[float]] = {}
        fit_quietly(
            blobs,
            3,
            seed=9,
            n_init=n_init,
            init="random",
            max_iter=10,
            tol=0,
            on_iteration=lambda r, i, ll, runs=runs: runs.setdefault(r, []).append(ll),
        )
        histories[n_init] = runs
    assert sorted(histories[5]) == list(range(5))
    for restart in (0, 1):
        assert histories[2][restart] == histories[5][restart]
    # and the restarts really are different draws
    assert histories[5][0] != histories[5][1]


def test_more_restarts_never_score_below_one(mixture):
    # Restart 0 is shared and a sound restart is kept by log-likelihood, so among
    # non-degenerate fits n_init=5 can only match or beat n_init=1: exact, any seed.
    X, _ = mixture(21, 200, 2, 6, 5.0)
    improved = 0
    for seed in range(4):
        one = fit_quietly(X, 6, seed=seed, init="random-from-data", max_iter=40)
        five = fit_quietly(X, 6, seed=seed, init="random-from-data", max_iter=40, n_init=5)
        if one.fit_info.degenerate or five.fit_info.degenerate:
            continue
        assert five.fit_info.log_likelihood >= one.fit_info.log_likelihood
        improved += five.fit_info.log_likelihood > one.fit_info.log_likelihood
    assert improved > 0, "no seed found a better restart: the test would be vacuous"


def test_seed_none_records_a_seed_that_reproduces_the_model(blobs):
    model = fit_quietly(blobs, 3, seed=None, init="random")
    seed = model.fit_info.seed
    assert isinstance(seed, int)
    again = fit_quietly(blobs, 3, seed=seed, init="random")
    assert gmmcli.dumps(again) == gmmcli.dumps(model)
    other = fit_quietly(blobs, 3, seed=None, init="random")
    assert other.fit_info.seed != seed  # fresh entropy each time


# -- convergence -----------------------------------------------------------------------


@pytest.mark.parametrize("n_components", [2, 3])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_tol_zero_runs_exactly_max_iter_iterations(blobs, covariance_type, n_components):
    # 100 iterations: long past convergence, where gains are 0 or rounding noise of
    # either sign (a few of them negative), and none of that may stop EM early
    model = fit_quietly(
        blobs, n_components, covariance_type=covariance_type, tol=0, max_iter=100, seed=0
    )
    assert model.fit_info.n_iter == 100
    assert len(model.fit_info.history) == 101  # the start, then one entry per iteration
    assert model.fit_info.converged is False


def test_convergence_is_recorded(blobs):
    tol = 1e-3
    model = fit_quietly(blobs, 3, tol=tol, max_iter=500, seed=0, init="random")
    info = model.fit_info
    assert info.converged is True
    assert 1 <= info.n_iter < 500
    gains = np.diff(info.history)
    assert len(gains) == info.n_iter
    slack = 1e-10 * abs(info.history[-1])
    assert -slack <= gains[-1] < tol  # stopped by the rule ...
    assert np.all((gains[:-1] >= tol) | (gains[:-1] < -slack))  # ... at its first chance
    assert info.mean_log_likelihood == info.history[-1]


def test_not_converged_warns(blobs):
    with pytest.warns(GMMWarning, match="did not converge"):
        model = gmmcli.fit(blobs, 3, tol=1e-12, max_iter=2, seed=0)
    assert model.fit_info.converged is False
    assert model.fit_info.n_iter == 2


def test_a_drop_in_likelihood_is_recorded_not_taken_for_convergence(monkeypatch):
    # EM cannot lose likelihood by itself, so a numerical failure is simulated: the first
    # EM M-step returns its variance 0.05% too large. The drop it causes is far below
    # tol, which scikit-learn's abs(change) < tol would take for convergence.
    from gmmcli.core import em

    x = np.random.default_rng(3).normal(2.0, 1.0, (400, 1))
    real_m_step, calls = em.m_step, []

    def failing_m_step(stats, cov, reg_covar, previous):
        params = real_m_step(stats, cov, reg_covar, previous)
        calls.append(1)
        if len(calls) == 1:
            params.covariances = params.covariances * 1.0005
            params.prec_chol = cov.precision_cholesky(params.covariances)
        return params

    monkeypatch.setattr(em, "m_step", failing_m_step)
    with pytest.warns(GMMWarning, match="dropped"):
        model = gmmcli.fit(x, 1, tol=1e-3, max_iter=20, seed=0)
    info = model.fit_info
    drop = info.history[0] - info.history[1]
    assert 1e-10 * abs(info.history[0]) < drop < 1e-3  # the premise: a small real drop
    assert info.largest_drop == pytest.approx(drop)
    assert info.n_iter > 1  # the drop did not stop EM
    assert info.converged is True


@pytest.mark.parametrize("weighted", [False, True])
def test_final_log_likelihood_is_that_of_the_returned_parameters(blobs, weighted):
    weights = np.arange(len(blobs)) % 4 + 1.0 if weighted else None
    model = fit_quietly(blobs, 3, weights=weights, seed=2, max_iter=5, tol=0)
    total = len(blobs) if weights is None else weights.sum()
    # the model recentres by its own mean before scoring: same sums, other rounding
    assert_allclose(model.fit_info.log_likelihood, model.score(blobs, weights) * total, rtol=1e-12)
    assert_allclose(model.fit_info.bic, model.bic(blobs, weights), rtol=1e-12)
    assert model.fit_info.total_weight == total


def test_one_dimensional_one_component_bic_is_the_same_for_every_type(blobs):
    bics = [
        fit_quietly(blobs[:, 0], 1, covariance_type=t, seed=0).fit_info.bic
        for t in COVARIANCE_TYPES
    ]
    # the same model four ways: the same statistics, reshaped
    assert_allclose(bics, bics[0], rtol=1e-12)


# -- component order -------------------------------------------------------------------


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_components_come_in_descending_weight(covariance_type):
    rng = np.random.default_rng(4)
    sizes, centres = (50, 150, 100), ((0.0, 0.0), (20.0, 0.0), (0.0, 20.0))
    X = np.concatenate([rng.normal(c, 1.0, (n, 2)) for c, n in zip(centres, sizes, strict=True)])
    model = fit_quietly(X, 3, covariance_type=covariance_type, seed=0)
    assert np.all(np.diff(model.weights) <= 0)
    assert_allclose(model.means, np.array(centres)[[1, 2, 0]], atol=0.5)  # sizes 150, 100, 50


@pytest.mark.parametrize("shift", [(100.0, 0.0), (0.0, 100.0)], ids=["first", "second"])
def test_equal_weights_are_ordered_by_the_means(shift):
    # Integer rows, centre exactly 0 and clusters 200 apart: responsibilities are exactly
    # 0 or 1, so the weights tie exactly at 0.5 and the means differ only in `shift`.
    rng = np.random.default_rng(1)
    half = rng.integers(-3, 4, (15, 2)).astype(float)
    block = np.concatenate([half, -half])
    X = np.concatenate([block + shift, block - shift])  # the higher mean comes first
    model = fit_quietly(X, 2, seed=0)
    assert model.weights.tolist() == [0.5, 0.5]
    assert_allclose(model.means, [np.negative(shift), shift], atol=1e-9)


def test_explicit_start_keeps_the_given_order(blobs, start):
    init = start(blobs, 3, "full", 0)
    reverse = {name: value[::-1] for name, value in init.items()}
    given = fit_quietly(blobs, 3, seed=0, tol=0, max_iter=20, **init)
    reversed_ = fit_quietly(blobs, 3, seed=0, tol=0, max_iter=20, **reverse)
    # the same EM with the components relabelled; only summation order differs
    assert_allclose(reversed_.weights, given.weights[::-1], rtol=1e-10)
    assert_allclose(reversed_.means, given.means[::-1], rtol=1e-10)
    scale = np.abs(given.covariances).max()
    assert_allclose(reversed_.covariances, given.covariances[::-1], rtol=1e-10, atol=1e-10 * scale)
    # so at most one of them can be in canonical (descending weight) order
    canonical = [bool(np.all(np.diff(m.weights) <= 0)) for m in (given, reversed_)]
    assert canonical.count(True) <= 1
    assert given.fit_info.init == "explicit"


# -- initialisation --------------------------------------------------------------------


@pytest.mark.parametrize("init", INIT_METHODS)
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_every_init_method_works_for_every_covariance_type(blobs, covariance_type, init):
    model = fit_quietly(blobs, 3, covariance_type=covariance_type, init=init, seed=1)
    assert_finite(model)
    assert model.fit_info.init == init
    assert (
        model.covariances.shape
        == {
            "full": (3, 2, 2),
            "tied": (2, 2),
            "diag": (3, 2),
            "spherical": (3,),
        }[covariance_type]
    )
    # three well-separated blobs: whatever the start, EM ends on them
    assert not model.fit_info.degenerate
    assert_allclose(model.predict_proba(blobs).sum(axis=1), 1.0, rtol=0, atol=1e-12)


def ten_blobs(seed):
    """A well-separated 10-component 2-D mixture: centres at least 12 apart in [-40, 40]²,
    covariances with standard deviations of about 1, 50 to 150 rows each."""
    rng = np.random.default_rng(seed)
    centres: list[np.ndarray] = []
    while len(centres) < 10:
        c = rng.uniform(-40.0, 40.0, 2)
        if all(np.linalg.norm(c - d) > 12.0 for d in centres):
            centres.append(c)
    X, labels = [], []
    for k, c in enumerate(centres):
        A = rng.normal(size=(2, 2)) * 0.8
        n = int(rng.integers(50, 150))
        X.append(rng.multivariate_normal(c, A @ A.T + 0.3 * np.eye(2), n))
        labels += [k] * n
    return np.concatenate(X), np.array(labels)


def test_ten_well_separated_components_are_recovered():
    # Statistical test with fixed seeds: the issue asks for ARI >= 0.95 in at least 9 of
    # 10 seeds; measured pass rate 100/100 seeds (0..99), minimum ARI 0.997.
    scores = []
    for seed in range(10):
        X, truth = ten_blobs(seed)
        model = fit_quietly(X, 10, init="kmeans", n_init=3, seed=seed)
        scores.append(adjusted_rand_score(truth, model.predict(X)))
    assert sum(s >= 0.95 for s in scores) >= 9, np.round(scores, 3)


def test_ten_components_are_recovered_when_seeding_on_a_small_sample():
    # ~1000 rows per data set; k-means++ seeds on a weighted sample of about 150 of them.
    scores = []
    for seed in range(10):
        X, truth = ten_blobs(seed)
        model = fit_quietly(X, 10, init="kmeans", n_init=3, seed=seed, init_sample=150)
        scores.append(adjusted_rand_score(truth, model.predict(X)))
    assert sum(s >= 0.95 for s in scores) >= 9, np.round(scores, 3)


def test_the_seeding_sample_has_about_the_size_asked_and_estimates_the_weights():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200_000, 2))
    weights = rng.integers(0, 5, len(X)).astype(float)
    weights[:10] = 1e3  # rows heavier than W / size are always kept, with their own weight
    rows = InMemoryRows(X, weights, np.zeros(2))
    sample = sample_rows(rows, 5000, weights.sum(), np.random.default_rng(1))
    expected = np.minimum(1.0, 5000 * weights / weights.sum()).sum()  # 4885
    assert abs(len(sample.X) - expected) < 5 * np.sqrt(expected)
    np.testing.assert_allclose(sample.weights.sum(), weights.sum(), rtol=0.03)
    np.testing.assert_array_equal(sample.X[:10], X[:10])
    np.testing.assert_array_equal(sample.weights[:10], 1e3)
    assert not np.isin(sample.X[:, 0], X[weights == 0, 0]).any()


@pytest.mark.parametrize("size", [1, 2, 5])
def test_a_tiny_seeding_sample_still_seeds_every_component(mixture, size, monkeypatch):
    """About 20 rows per component are sampled, whatever --init-sample asks."""
    X, _ = mixture(3, n_samples=2000, spread=10.0)
    seeded_on = []
    seed_centres = init_module.kmeans_plusplus

    def recording(rows, *args):
        seeded_on.append(rows)
        return seed_centres(rows, *args)

    monkeypatch.setattr(init_module, "kmeans_plusplus", recording)
    model = fit_quietly(X, 3, init="kmeans", seed=0, init_sample=size)
    (rows,) = seeded_on
    assert 30 <= len(rows.X) < 200  # a sample of about 60 rows, not 1, 2 or 5, nor all
    assert not model.fit_info.degenerate
    assert model.weights.min() > 0.2


def test_seeding_on_a_sample_changes_the_start_only_past_its_size(mixture):
    X, _ = mixture(2, n_samples=500, spread=1.0)
    start = {
        size: fit_quietly(
            X, 3, init="kmeans++", max_iter=1, seed=3, init_sample=size
        ).fit_info.history[0]
        for size in (0, 500, 100)
    }
    assert start[0] == start[500]  # 500 rows: no sample needed
    assert start[0] != start[100]


# -- degenerate data that must still fit cleanly ------------------------------------------
# fit_quietly turns numpy's RuntimeWarnings into errors; assert_finite checks for NaN.


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_constant_column(blobs, covariance_type):
    # (fit warns that reg_covar dominates the constant feature: true, and not an error)
    X = np.column_stack([blobs, np.full(len(blobs), 3.0)])
    model = fit_quietly(X, 3, covariance_type=covariance_type, seed=0)
    assert_finite(model)
    assert_allclose(model.means[:, 2], 3.0, rtol=1e-12)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_duplicate_rows(blobs, covariance_type):
    model = fit_quietly(
        np.repeat(blobs[:40], 6, axis=0), 3, covariance_type=covariance_type, seed=0
    )
    assert_finite(model)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_one_feature(blobs, covariance_type):
    model = fit_quietly(blobs[:, 0], 2, covariance_type=covariance_type, seed=0)
    assert_finite(model)
    assert model.n_features == 1


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_one_component(blobs, covariance_type):
    model = fit_quietly(blobs, 1, covariance_type=covariance_type, seed=0)
    assert_finite(model)
    assert model.weights.tolist() == [1.0]
    assert_allclose(model.means[0], blobs.mean(axis=0), rtol=1e-12)
    # one component: EM is done after one M-step (the MLE), so it converges at once
    assert model.fit_info.converged and model.fit_info.n_iter <= 2


@pytest.mark.parametrize("init", INIT_METHODS)
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_as_many_components_as_distinct_rows(covariance_type, init):
    X = np.repeat([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [5.0, 5.0]], [10, 3, 1, 6], axis=0)
    model = fit_quietly(X, 4, covariance_type=covariance_type, init=init, seed=0)
    assert_finite(model)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_data_offset_by_1e6(blobs, covariance_type):
    near = fit_quietly(blobs, 3, covariance_type=covariance_type, seed=0)
    far = fit_quietly(blobs + 1e6, 3, covariance_type=covariance_type, seed=0)
    assert_finite(far)
    # we centre internally: the same fit, up to the rounding of the shifted data (1e-10
    # absolute) propagated through EM
    assert_allclose(far.means - 1e6, near.means, rtol=0, atol=1e-6)
    assert_allclose(far.covariances, near.covariances, rtol=1e-6, atol=1e-8)
    assert_allclose(far.weights, near.weights, rtol=1e-6)


@pytest.mark.parametrize("init", INIT_METHODS)
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_more_components_than_clusters(covariance_type, init):
    rng = np.random.default_rng(0)
    X = np.repeat([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]], 10, axis=0) + rng.normal(0, 0.01, (30, 2))
    model = fit_quietly(X, 6, covariance_type=covariance_type, init=init, seed=0)
    assert_finite(model)
    assert_allclose(model.weights.sum(), 1.0, rtol=1e-12)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_a_component_that_loses_all_its_weight(blobs, covariance_type, start):
    # A third component started far from every row gets responsibilities that underflow
    # to exactly 0. The documented rule: it keeps its previous mean and covariance with
    # weight 0, so nothing is divided by zero and the result does not depend on noise.
    init = start(blobs, 3, covariance_type, 0)
    init["means_init"][2] = [1e3, 1e3]
    kwargs = {"covariance_type": covariance_type, "tol": 0, "max_iter": 10, "seed": 0, **init}
    first = fit_quietly(blobs, 3, **kwargs)
    second = fit_quietly(blobs, 3, **kwargs)
    assert_finite(first)
    assert gmmcli.dumps(first) == gmmcli.dumps(second)
    assert first.weights[2] == 0.0
    assert_allclose(first.means[2], [1e3, 1e3], rtol=1e-12)
    if covariance_type != "tied":  # (tied has one shared covariance, no per-component one)
        precision = np.asarray(init["precisions_init"])[2]
        expected = np.linalg.inv(precision) if covariance_type == "full" else 1.0 / precision
        assert_allclose(first.covariances[2], expected, rtol=1e-10)
    assert first.fit_info.degenerate  # fewer than D + 1 effective rows
    proba = first.predict_proba(blobs)
    assert np.all(proba[:, 2] == 0.0)
    assert np.all(np.isfinite(first.score_samples(blobs)))


# -- collapsed fits ------------------------------------------------------------------------


def rounded_data():
    """Integer measurements with two heavily repeated values (10 and 30)."""
    rng = np.random.default_rng(0)
    spread = np.round(rng.normal(20.0, 6.0, 200))
    return np.concatenate([spread, np.full(60, 10.0), np.full(40, 30.0)])


def test_rounded_data_make_a_naive_fit_collapse():
    # the premise of the next test: scikit-learn shrinks components onto the repeated
    # values, down to a variance of reg_covar
    sk = SkGaussianMixture(3, random_state=0).fit(rounded_data()[:, None])
    assert np.sum(sk.covariances_.ravel() < 1e-5) >= 1


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical"])
def test_a_collapsed_fit_is_flagged_degenerate(covariance_type):
    x = rounded_data()
    with pytest.warns(GMMWarning, match="degenerate"):
        model = gmmcli.fit(x, 3, covariance_type=covariance_type, seed=0)
    info = model.fit_info
    assert info.degenerate is True
    assert "collapsed" in info.degenerate_reason
    variances = model.covariances.ravel()
    collapsed = np.argmin(variances)
    assert variances[collapsed] < 2 * info.reg_covar
    assert np.isclose(model.means[collapsed, 0], [10.0, 30.0], rtol=1e-9).any()


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical"])
@pytest.mark.parametrize("fraction", [0.5, 2.0])
def test_the_collapse_threshold_is_1e6_of_the_data_variance(covariance_type, fraction):
    # A broad component around 0 and a tight pair of values 1000 ± a, far apart, so the
    # tight component's variance is exactly a² (+ reg_covar). The rule flags it when
    # a² < 1e-6 · (the data's variance): pick a² at half and at twice that threshold.
    broad = np.random.default_rng(0).normal(0.0, 100.0, 200)
    data_variance = np.concatenate([broad, np.full(100, 1000.0)]).var()
    a = np.sqrt(fraction * 1e-6 * data_variance)
    x = np.concatenate([broad, [1000.0 - a, 1000.0 + a]])
    w = np.concatenate([np.ones(200), [50.0, 50.0]])
    start = {
        "weights_init": [2 / 3, 1 / 3],
        "means_init": [[0.0], [1000.0]],
        "precisions_init": {
            "full": [[[1e-4]], [[1.0]]],
            "diag": [[1e-4], [1.0]],
            "spherical": [1e-4, 1.0],
        }[covariance_type],
    }
    model = fit_quietly(
        x, 2, weights=w, covariance_type=covariance_type, tol=0, max_iter=5, **start
    )
    assert_allclose(model.covariances.ravel()[1], a**2 + model.fit_info.reg_covar, rtol=1e-6)
    assert model.fit_info.degenerate is (fraction < 1)
    if fraction < 1:
        assert "collapsed" in model.fit_info.degenerate_reason


def test_a_sound_fit_is_not_flagged(blobs):
    for covariance_type in COVARIANCE_TYPES:
        model = fit_quietly(blobs, 3, covariance_type=covariance_type, seed=0)
        assert model.fit_info.degenerate is False
        assert model.fit_info.degenerate_reason is None


def test_too_few_effective_rows_is_degenerate():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0.0, 1.0, (40, 2)), [[50.0, 50.0], [51.0, 49.0]]])
    with pytest.warns(GMMWarning, match="degenerate"):
        model = gmmcli.fit(X, 2, seed=0)
    assert "fewer than the D + 1 = 3 its full covariance needs" in model.fit_info.degenerate_reason


def small_component_data() -> np.ndarray:
    """Two clusters of 100 rows and one of 4 rows in five dimensions, far apart."""
    rng = np.random.default_rng(3)
    sizes, centres = (100, 100, 4), (0.0, 30.0, 60.0)
    return np.concatenate([rng.normal(c, 1.0, (n, 5)) for n, c in zip(sizes, centres, strict=True)])


@pytest.mark.parametrize(
    ("covariance_type", "degenerate"),
    [("full", True), ("tied", False), ("diag", False), ("spherical", False)],
)
def test_each_structure_asks_for_the_rows_its_estimate_needs(covariance_type, degenerate):
    # A component of 4 rows in 5 dimensions: too few for its own full covariance (D + 1),
    # enough for its own variances or volume (2) or a covariance pooled over all rows.
    model = fit_quietly(small_component_data(), 3, covariance_type=covariance_type, seed=0)
    assert sorted(np.round(model.weights * 204)) == [4, 100, 100]
    assert model.fit_info.degenerate is degenerate
    if degenerate:
        assert "holds 4 effective rows, fewer than the D + 1 = 6" in (
            model.fit_info.degenerate_reason
        )


def test_a_shared_covariance_needs_its_rows_in_all():
    rng = np.random.default_rng(4)
    # Five rows in four dimensions, two means: the pooled scatter has 3 degrees of freedom.
    X = np.concatenate([rng.normal(0.0, 1.0, (3, 4)), rng.normal(50.0, 1.0, (2, 4))])
    model = fit_quietly(X, 2, covariance_type="tied", seed=0)
    assert model.fit_info.degenerate_reason == (
        "the components hold 5 effective rows in all, fewer than the K + D = 6 their "
        "shared tied covariance needs"
    )
    assert not fit_quietly(X[:, :3], 2, covariance_type="tied", seed=0).fit_info.degenerate


# A small weighted 1-D set: a broad hump over 0..12 and one heavily weighted value, 6.
# A restart that puts a component on 6 alone collapses there (variance reg_covar) and has
# a far higher likelihood than any sound fit; random responsibilities do that about half
# of the time.
SPIKE_X = np.arange(13.0)
SPIKE_W = np.array([1, 2, 3, 4, 5, 5, 40, 5, 5, 4, 3, 2, 1], dtype=float)


def test_a_degenerate_restart_never_beats_a_sound_one():
    for seed in range(30):
        single = fit_quietly(SPIKE_X, 2, weights=SPIKE_W, init="random", seed=seed)
        if not single.fit_info.degenerate:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", GMMWarning)
            multi, finals = final_log_likelihoods(
                SPIKE_X, 2, weights=SPIKE_W, init="random", seed=seed, n_init=4
            )
        sound = [ll for ll in finals.values() if ll < single.fit_info.mean_log_likelihood - 1]
        if sound:
            break
    else:
        pytest.fail("premise: no seed below 30 has a collapsed restart 0 and a sound other one")

    # the premise: restart 0 (shared by both fits) collapsed onto the heavy value 6 ...
    collapsed = int(np.argmin(single.covariances.ravel()))
    assert single.covariances.ravel()[collapsed] <= 2 * single.fit_info.reg_covar
    assert_allclose(single.means[collapsed, 0], 6.0, rtol=1e-9)
    assert "collapsed" in single.fit_info.degenerate_reason
    assert finals[0] == single.fit_info.mean_log_likelihood
    # ... and has the higher likelihood, yet the sound restart wins
    assert multi.fit_info.degenerate is False
    assert multi.fit_info.log_likelihood < single.fit_info.log_likelihood
    assert multi.fit_info.mean_log_likelihood == max(sound)


def test_when_every_restart_is_degenerate_the_best_is_returned_flagged():
    x = np.arange(13.0)
    w = np.array([1, 3, 6, 8, 9, 8, 6, 3, 1, 1, 25, 1, 1], dtype=float)  # isolated spike at 10
    with pytest.warns(GMMWarning, match="degenerate"):
        model, finals = final_log_likelihoods(x, 2, weights=w, seed=0, n_init=3)
    assert len(finals) == 3
    assert model.fit_info.degenerate is True
    assert model.fit_info.mean_log_likelihood == max(finals.values())


# -- warnings about the inputs -----------------------------------------------------------


@pytest.mark.filterwarnings("ignore:degenerate fit:gmmcli.errors.GMMWarning")
def test_weights_that_look_normalised_warn(blobs):
    weights = np.full(len(blobs), 1.0 / len(blobs))
    with pytest.warns(GMMWarning, match="frequencies"):
        gmmcli.fit(blobs, 3, weights=weights, seed=0)


def test_count_weights_do_not_warn(blobs):
    with warnings.catch_warnings():
        warnings.simplefilter("error", GMMWarning)
        gmmcli.fit(blobs, 3, weights=np.full(len(blobs), 2.0), seed=0)


def test_reg_covar_dominating_a_feature_warns(blobs):
    X = blobs * [1.0, 1e-4]  # the second feature in tiny units: variance ~1e-7
    with pytest.warns(GMMWarning, match="reg_covar .* feature 1"):
        gmmcli.fit(X, 3, seed=0)


# -- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical"])
def test_a_covariance_that_stays_singular_names_reg_covar(covariance_type):
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0.0, 1.0, (40, 2)), np.full((10, 2), 20.0)])
    with pytest.raises(GMMError, match=r"component \d.*reg_covar"):
        fit_quietly(X, 2, covariance_type=covariance_type, reg_covar=0.0, seed=0)


@pytest.mark.parametrize("init", ["kmeans", "kmeans++"])
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_a_complete_explicit_start_does_not_depend_on_init(init):
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0.0, 1.0, (40, 2)), np.full((5, 2), 10.0)])
    start = {
        "weights_init": [0.5, 0.5],
        "means_init": [[-0.5, 0.0], [0.5, 0.0]],
        "precisions_init": np.stack([np.eye(2) / 25] * 2),
    }
    sk = SkGaussianMixture(2, reg_covar=0.0, tol=0, max_iter=3, **start).fit(X)
    ours = fit_quietly(X, 2, reg_covar=0.0, tol=0, max_iter=3, init=init, seed=0, **start)
    assert_allclose(ours.weights, sk.weights_, rtol=1e-7)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_components": 0}, "n_components must be a whole number"),
        ({"n_components": -1}, "n_components must be a whole number"),
        ({"n_components": 5, "weights": [1, 1, 1, 0, 0, 0]}, "3 rows with positive weight"),
        ({"weights": [1, 1, -1, 1, 1, 1]}, "not negative"),
        ({"weights": [1, 1, np.nan, 1, 1, 1]}, "missing or infinite"),
        ({"weights": [1, 1, np.inf, 1, 1, 1]}, "finite"),
        ({"weights": [0, 0, 0, 0, 0, 0]}, "no positive weight"),
        ({"weights": [1, 1, 1]}, "shape"),
        ({"covariance_type": "banded"}, "covariance_type must be one of"),
        ({"init": "kmedoids"}, "init must be one of"),
        ({"n_init": 0}, "n_init"),
        ({"max_iter": 0}, "max_iter"),
        ({"tol": -1.0}, "tol"),
        ({"reg_covar": -1e-6}, "reg_covar"),
        ({"X": [[0.0, np.nan]] * 6}, "missing or infinite value"),
        ({"X": np.empty((0, 2))}, "non-empty"),
        ({"means_init": [[0.0, 0.0]]}, "means_init"),
        ({"weights_init": [0.2, 0.2]}, "weights_init"),
        ({"precisions_init": np.ones(3)}, "precisions_init"),
    ],
    ids=[
        "K=0",
        "K=-1",
        "K-above-positive-rows",
        "negative-weight",
        "nan-weight",
        "inf-weight",
        "all-zero-weights",
        "weights-length",
        "covariance-type",
        "init",
        "n_init",
        "max_iter",
        "tol",
        "reg_covar",
        "nan-data",
        "empty-data",
        "means_init-shape",
        "weights_init-sum",
        "precisions_init-shape",
    ],
)
def test_bad_arguments_raise_gmm_error(kwargs, match):
    arguments = {"X": np.arange(12.0).reshape(6, 2), "n_components": 2, "seed": 0, **kwargs}
    with pytest.raises(GMMError, match=match):
        gmmcli.fit(arguments.pop("X"), arguments.pop("n_components"), **arguments)


@pytest.mark.parametrize(
    ("name", "mclust"),
    [("full", "VVV"), ("tied", "EEE"), ("diag", "VVI"), ("spherical", "VII")],
)
def test_mclust_names_are_the_same_structures(blobs, name, mclust):
    ours = fit_quietly(blobs, 2, covariance_type=name, seed=0)
    for given in (mclust, mclust.lower()):
        theirs = fit_quietly(blobs, 2, covariance_type=given, seed=0)
        assert gmmcli.dumps(theirs) == gmmcli.dumps(ours)  # kept as scikit-learn's name
    assert ours.mclust_name == mclust
    made = gmmcli.GaussianMixture(ours.weights, ours.means, ours.covariances, mclust)
    assert made.covariance_type == name


def test_a_covariance_type_named_twice_in_a_grid_is_fitted_once():
    from gmmcli.core.options import Grid

    assert Grid(covariance_types=["full", "VVV", "vvi", "diag"]).covariance_types == (
        "full",
        "diag",
    )
    four = ("full", "tied", "diag", "spherical")
    assert Grid(covariance_types="sklearn").covariance_types == four
    expected = ("tied", "full", "diag", "spherical")
    assert Grid(covariance_types=["EEE", "SKLearn"]).covariance_types == expected


def test_an_unknown_covariance_type_lists_both_names():
    with pytest.raises(
        gmmcli.GMMError, match=r"one of EII, spherical \(VII\), EEI, .*, full \(VVV\)"
    ):
        gmmcli.fit(np.zeros((10, 2)), 1, covariance_type="VXV")
