"""The fast E-step/M-step kernels agree with a direct computation, whatever the blocking."""

import dataclasses

import numpy as np
import pytest
from core_helpers import blocks_of
from scipy.special import logsumexp

import gmmcli
from gmmcli.core.covariance import STACKED_FULL, STACKED_TIED, product_pairs
from gmmcli.core.em import (
    MAX_BLOCK_ROWS,
    MIN_BLOCK_ROWS,
    SERIAL,
    InMemoryRows,
    Params,
    Prepared,
    e_step,
    rows_per_block,
    tile_rows,
)
from gmmcli.core.structures import COVARIANCE_TYPES, SKLEARN_NAMES

COVARIANCE_NAMES = list(SKLEARN_NAMES)  # the four kernels; the other ten use theirs
FULL = COVARIANCE_TYPES["full"]


def _data(seed=0, n=3000, d=3):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4, size=(3, d))
    return centres[rng.integers(0, 3, n)] + rng.normal(size=(n, d))


def _reference_stats(X, weights, model):
    """Σwr, Σwr·x, the full second moments and Σw log p, computed the slow, obvious way."""
    full = model.covariance.full_matrices(model.covariances, model.n_components, X.shape[1])
    log_prob = np.stack(
        [
            -0.5 * np.einsum("ij,jk,ik->i", X - mu, np.linalg.inv(c), X - mu)
            - 0.5 * np.linalg.slogdet(2 * np.pi * c)[1]
            for mu, c in zip(model.means, full, strict=True)
        ],
        axis=1,
    ) + np.log(model.weights)
    log_norm = logsumexp(log_prob, axis=1)
    wresp = np.exp(log_prob - log_norm[:, None]) * weights[:, None]
    second = np.einsum("nk,ni,nj->kij", wresp, X, X)
    return wresp.sum(0), wresp.T @ X, second, weights @ log_norm


@pytest.mark.parametrize("cov_name", COVARIANCE_NAMES)
def test_block_statistics_match_direct_computation(cov_name):
    X = _data()
    weights = np.random.default_rng(1).integers(0, 4, len(X)).astype(float)
    model = gmmcli.fit(X, 3, weights=weights, covariance_type=cov_name, seed=0, max_iter=3)
    cov = model.covariance
    params = Params(model.weights, model.means, model.covariances, model.precisions_cholesky)
    rows = InMemoryRows(X, weights, np.zeros(X.shape[1]), block_rows=700)
    prepared = Prepared.of(params, cov)
    stats = SERIAL.sum(rows, lambda B, w: e_step(B, w, prepared=prepared))
    nk, sx, second, log_likelihood = _reference_stats(X, weights, model)
    # Sums of a few thousand O(10) terms: agreement to ~1e-12 relative is rounding.
    np.testing.assert_allclose(stats.nk, nk, rtol=1e-10)
    np.testing.assert_allclose(stats.sx, sx, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(stats.log_likelihood, log_likelihood, rtol=1e-12)
    # Each structure keeps only the part of the second moment it needs; compare that part.
    rows, cols = product_pairs(X.shape[1])
    expected = {
        "full": lambda: second[:, rows, cols],
        "tied": lambda: second.sum(0)[rows, cols],
        "diag": lambda: np.diagonal(second, axis1=1, axis2=2),
        "spherical": lambda: np.trace(second, axis1=1, axis2=2),
    }[cov_name]()
    np.testing.assert_allclose(stats.second, expected, rtol=1e-10, atol=1e-8)


def _prepared_in(form, params, dtype):
    """Prepared in exactly this form (Prepared.of would choose one)."""
    coef = form.coefficients(params.means, params.prec_chol, np.log(params.weights))
    return dataclasses.replace(
        Prepared.of(params, form, dtype), coef=coef.astype(dtype), kernel=form
    )


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(
    ("cov_name", "stacked_form"), [("full", STACKED_FULL), ("tied", STACKED_TIED)]
)
def test_stacked_forms_give_the_row_product_statistics(cov_name, stacked_form, dtype):
    X = _data(seed=4, n=2500, d=12) + 100.0
    weights = np.random.default_rng(4).integers(0, 4, len(X)).astype(float)
    model = gmmcli.fit(X, 3, weights=weights, covariance_type=cov_name, seed=0, max_iter=3)
    centre = X.mean(axis=0)
    params = Params(
        model.weights, model.means - centre, model.covariances, model.precisions_cholesky
    )
    rows = InMemoryRows(X, weights, centre, block_rows=700, dtype=dtype)
    products_form = COVARIANCE_TYPES[cov_name]
    products, stacked = (
        SERIAL.sum(
            rows, lambda B, w, form=form: e_step(B, w, prepared=_prepared_in(form, params, dtype))
        )
        for form in (products_form, stacked_form)
    )
    # float64: rounding of sums of a few thousand O(10) terms; float32: its precision.
    rtol = 1e-10 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(stacked.nk, products.nk, rtol=rtol)
    np.testing.assert_allclose(stacked.sx, products.sx, rtol=rtol, atol=rtol * 1e3)
    np.testing.assert_allclose(stacked.second, products.second, rtol=rtol, atol=rtol * 1e4)
    np.testing.assert_allclose(stacked.log_likelihood, products.log_likelihood, rtol=rtol)


def test_form_follows_features_and_components():
    assert FULL.kernel(20, 50) is FULL  # the 200,000 x 50 x 20 shape
    assert FULL.kernel(10, 10) is FULL
    assert FULL.kernel(2, 40) is STACKED_FULL
    assert FULL.kernel(1, 16) is FULL  # few features: products, whatever K
    tied = COVARIANCE_TYPES["tied"]
    assert tied.kernel(3, 2) is tied
    assert tied.kernel(10, 10) is STACKED_TIED


@pytest.mark.parametrize("cov_name", COVARIANCE_NAMES)
def test_block_size_changes_nothing_but_rounding(cov_name):
    X = _data(seed=2, n=5000)
    fits = []
    for rows in (256, 1000, 5000):
        with blocks_of(rows):
            fits.append(gmmcli.fit(X, 3, covariance_type=cov_name, seed=0, tol=0, max_iter=10))
    for other in fits[1:]:
        # Only the order of the block sums differs.
        np.testing.assert_allclose(other.means, fits[0].means, rtol=1e-11, atol=1e-11)
        np.testing.assert_allclose(other.covariances, fits[0].covariances, rtol=1e-11)


@pytest.mark.parametrize(("n_features", "n_components"), [(4, 3), (40, 2)])  # (40, 2): stacked
@pytest.mark.parametrize("cov_name", COVARIANCE_NAMES)
def test_float32_agrees_with_float64(cov_name, n_features, n_components):
    X = _data(seed=3, n=20000, d=n_features) + 1e3  # centring happens in float64 first
    fits = {
        dtype: gmmcli.fit(
            X, n_components, covariance_type=cov_name, seed=0, tol=0, max_iter=10, dtype=dtype
        )
        for dtype in ("float64", "float32")
    }
    single, double = fits["float32"], fits["float64"]
    # The bar for float32 parameters: within 1e-4 relative of float64.
    for name in ("weights", "means", "covariances"):
        a, b = getattr(single, name), getattr(double, name)
        assert np.max(np.abs(a - b)) <= 1e-4 * np.max(np.abs(b)), name
    assert single.fit_info.largest_drop == 0.0


def test_block_rows_follow_dimensions():
    assert rows_per_block(200) < rows_per_block(50) < rows_per_block(2) == MAX_BLOCK_ROWS
    assert rows_per_block(5000) == MIN_BLOCK_ROWS  # the floor, however wide


@pytest.mark.parametrize("cov_name", COVARIANCE_NAMES)
@pytest.mark.parametrize(("n_components", "n_features"), [(1, 1), (3, 2), (10, 20), (50, 60)])
def test_tiles_fit_in_blocks(cov_name, n_components, n_features):
    cov = COVARIANCE_TYPES[cov_name]
    identity = np.eye(n_features)
    covariances = {
        "full": np.repeat(identity[None], n_components, axis=0),
        "tied": identity,
        "diag": np.ones((n_components, n_features)),
        "spherical": np.ones(n_components),
    }[cov_name]
    means = np.zeros((n_components, n_features))
    weights = np.full(n_components, 1 / n_components)
    params = Params(weights, means, covariances, cov.precision_cholesky(covariances))
    rows = tile_rows(Prepared.of(params, cov), n_features)
    assert 1 <= rows <= rows_per_block(n_features)
