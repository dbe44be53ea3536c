"""The core against scikit-learn (the oracle) and scipy.stats, from the same start.

scikit-learn's GaussianMixture runs the same EM map: given identical weights_init,
means_init and precisions_init, tol=0 and the same max_iter, both perform exactly
MAX_ITER E-step + M-step pairs, so any difference is rounding. The only deliberate
numerical differences are that scikit-learn adds 10·eps to every N_k and computes
tied/diag/spherical covariances from raw moments of the uncentred data, while we centre.
"""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy.special import logsumexp
from scipy.stats import multivariate_normal
from sklearn.mixture import GaussianMixture as SkGaussianMixture

import gmmcli

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
MAX_ITER = 15

# The contract for fitted parameters and the log-likelihood. Measured differences
# are ~1e-13 (1e-9 with the 1e6 offset); a formula difference would show far above it,
# e.g. forgetting reg_covar (1e-6 on unit variances) or a biased/unbiased mix-up (1/n).
FIT_RTOL = 1e-7
# Same parameters, same formulas: predictions differ only in the last bits of O(1) numbers
# (log-densities of O(10)), so 1e-9 absolute leaves four orders of magnitude of room.
PREDICT_ATOL = 1e-9

# (seed, rows, features, components, centre spread): overlapping clusters, so EM is
# still moving after MAX_ITER iterations and every iteration's arithmetic matters.
DATA_SETS = {
    "2d-3comp": (1, 300, 2, 3, 2.0),
    "4d-3comp": (2, 400, 4, 3, 1.5),
    "1d-2comp": (3, 200, 1, 2, 1.0),
    "24d-2comp": (4, 600, 24, 2, 1.0),  # full and tied through their precision factors
}

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def sklearn_fit(X, n_components, covariance_type, init):
    return SkGaussianMixture(
        n_components,
        covariance_type=covariance_type,
        tol=0.0,
        max_iter=MAX_ITER,
        random_state=0,
        **init,
    ).fit(X)


def ours_fit(X, n_components, covariance_type, init):
    return gmmcli.fit(
        X, n_components, covariance_type=covariance_type, tol=0.0, max_iter=MAX_ITER, seed=0, **init
    )


def assert_close_to_scale(actual, desired, rtol):
    """rtol, with entries near zero (off-diagonal covariances, means near the origin)
    measured against the largest entry: they carry that entry's absolute rounding."""
    desired = np.asarray(desired)
    assert_allclose(actual, desired, rtol=rtol, atol=rtol * np.abs(desired).max())


@pytest.fixture(params=list(DATA_SETS), ids=list(DATA_SETS))
def data_set(request, mixture):
    seed, n, d, k, spread = DATA_SETS[request.param]
    X, _ = mixture(seed, n, d, k, spread)
    return seed, X, k


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_fit_matches_sklearn_from_the_same_start(data_set, covariance_type, start):
    seed, X, k = data_set
    init = start(X, k, covariance_type, seed)
    sk = sklearn_fit(X, k, covariance_type, init)
    ours = ours_fit(X, k, covariance_type, init)

    assert ours.fit_info.n_iter == MAX_ITER
    assert_allclose(ours.weights, sk.weights_, rtol=FIT_RTOL)
    assert_close_to_scale(ours.means, sk.means_, FIT_RTOL)
    assert_close_to_scale(ours.covariances, sk.covariances_, FIT_RTOL)
    # scikit-learn's lower_bound_ belongs to the parameters before its last M-step;
    # score(X) * n is the log-likelihood of the parameters it returns, like ours.
    assert_allclose(ours.fit_info.log_likelihood, sk.score(X) * len(X), rtol=FIT_RTOL)
    assert_allclose(ours.bic(X), sk.bic(X), rtol=FIT_RTOL)
    assert_allclose(ours.aic(X), sk.aic(X), rtol=FIT_RTOL)
    assert_allclose(ours.fit_info.bic, sk.bic(X), rtol=FIT_RTOL)
    assert_allclose(ours.fit_info.aic, sk.aic(X), rtol=FIT_RTOL)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_predictions_match_sklearn_for_the_same_parameters(data_set, covariance_type, start):
    seed, X, k = data_set
    sk = sklearn_fit(X, k, covariance_type, start(X, k, covariance_type, seed))
    ours = gmmcli.GaussianMixture(sk.weights_, sk.means_, sk.covariances_, covariance_type)
    # rows well outside the training data too, where densities are tiny
    rng = np.random.default_rng(seed)
    queries = np.concatenate([X, X[:20] + rng.normal(0.0, 10.0, (20, X.shape[1]))])

    assert_allclose(
        ours.predict_proba(queries), sk.predict_proba(queries), rtol=0, atol=PREDICT_ATOL
    )
    assert_allclose(
        ours.score_samples(queries), sk.score_samples(queries), rtol=0, atol=PREDICT_ATOL
    )
    np.testing.assert_array_equal(ours.predict(X), sk.predict(X))
    # criteria of identical parameters: the same sums, so 1e-12 relative
    assert_allclose(ours.score(X), sk.score(X), rtol=1e-12)
    assert_allclose(ours.bic(X), sk.bic(X), rtol=1e-12)
    assert_allclose(ours.aic(X), sk.aic(X), rtol=1e-12)


OFFSET = 1e6


# (seed, rows, features); 24 features: full and tied through their precision factors
@pytest.mark.parametrize(("seed", "n_rows", "n_features"), [(4, 300, 3), (5, 1200, 24)])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_fit_matches_sklearn_on_data_offset_by_1e6(
    covariance_type, seed, n_rows, n_features, mixture, start
):
    X, _ = mixture(seed, n_rows, n_features, 2, 1.5)
    X_far = X + OFFSET
    init = start(X_far, 2, covariance_type, seed)
    ours = ours_fit(X_far, 2, covariance_type, init)
    if covariance_type == "full":
        # scikit-learn's full covariances are computed from centred differences: exact enough
        sk = sklearn_fit(X_far, 2, covariance_type, init)
        sk_means, X_sk = sk.means_, X_far
    else:
        # its tied/diag/spherical covariances use raw moments E[x²] - E[x]², which lose
        # ~12 digits at 1e6; the reference is scikit-learn on the same data moved back to
        # the origin (X_far - 1e6 is exact), whose parameters we must reproduce.
        shifted = {**init, "means_init": init["means_init"] - OFFSET}
        X_sk = X_far - OFFSET
        sk = sklearn_fit(X_sk, 2, covariance_type, shifted)
        sk_means = sk.means_ + OFFSET

    assert_allclose(ours.weights, sk.weights_, rtol=FIT_RTOL)
    # Means near 1e6 are only known to 1e6·eps ≈ 1e-10 absolute, and an rtol of 1e-7 on
    # 1e6 would accept any error below 0.1: compare the offsets from 1e6 against the
    # spread of the data instead.
    assert_allclose(ours.means - OFFSET, sk_means - OFFSET, rtol=0, atol=FIT_RTOL * X.std())
    assert_close_to_scale(ours.covariances, sk.covariances_, FIT_RTOL)
    assert_allclose(ours.fit_info.log_likelihood, sk.score(X_sk) * len(X), rtol=FIT_RTOL)


@pytest.mark.parametrize(
    ("covariance_type", "count"), [("spherical", 13), ("diag", 21), ("tied", 26), ("full", 41)]
)
def test_parameter_counts_match_sklearn(covariance_type, count, mixture):
    X, _ = mixture(5, 60, 5, 2)
    sk = SkGaussianMixture(2, covariance_type=covariance_type, max_iter=1, random_state=0).fit(X)
    ours = gmmcli.fit(X, 2, covariance_type=covariance_type, max_iter=1, tol=0, seed=0)
    assert ours.n_parameters == sk._n_parameters() == count
    assert ours.fit_info.n_parameters == count


def random_model(covariance_type, seed, n_components=3, n_features=3):
    rng = np.random.default_rng(seed)
    shape_by_type = {
        "full": lambda: np.stack([random_spd(rng, n_features) for _ in range(n_components)]),
        "tied": lambda: random_spd(rng, n_features),
        "diag": lambda: rng.uniform(0.2, 3.0, (n_components, n_features)),
        "spherical": lambda: rng.uniform(0.2, 3.0, n_components),
    }
    return gmmcli.GaussianMixture(
        rng.dirichlet(np.ones(n_components)),
        rng.normal(0.0, 3.0, (n_components, n_features)),
        shape_by_type[covariance_type](),
        covariance_type,
    )


def random_spd(rng, n):
    A = rng.normal(size=(n, n))
    return A @ A.T + 0.2 * np.eye(n)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("seed", [0, 1])
def test_log_densities_match_scipy(covariance_type, seed):
    model = random_model(covariance_type, seed)
    K, D = model.n_components, model.n_features
    full = model.covariance.full_matrices(model.covariances, K, D)
    assert full.shape == (K, D, D)
    X = np.random.default_rng(100 + seed).normal(0.0, 4.0, (50, D))
    expected = np.column_stack(
        [multivariate_normal(model.means[k], full[k]).logpdf(X) for k in range(K)]
    )
    # scipy factors by eigen-decomposition, we by Cholesky: both backward stable on
    # well-conditioned matrices, so log-densities of O(10) agree to ~1e-13; 1e-10 relative.
    component = model.covariance.log_gaussian(X, model.means, model.precisions_cholesky)
    assert_allclose(component, expected, rtol=1e-10)
    joint = expected + np.log(model.weights)
    assert_allclose(model.score_samples(X), logsumexp(joint, axis=1), rtol=1e-10)
    assert_allclose(
        model.predict_proba(X),
        np.exp(joint - logsumexp(joint, axis=1, keepdims=True)),
        rtol=0,
        atol=1e-12,
    )


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_one_component_density_is_scipys(covariance_type):
    model = random_model(covariance_type, 7, n_components=1, n_features=4)
    full = model.covariance.full_matrices(model.covariances, 1, 4)[0]
    X = np.random.default_rng(7).normal(0.0, 2.0, (30, 4))
    expected = multivariate_normal(model.means[0], full).logpdf(X)
    assert_allclose(model.score_samples(X), expected, rtol=1e-10)  # see above
