"""The four covariance structures, each with all of its math in one object.

Shapes follow scikit-learn: full (K, D, D), tied (D, D), diag (K, D), spherical (K,).
Precision Cholesky factors ``P`` satisfy ``P @ P.T == inv(covariance)``; densities use
``-0.5 * (D log 2π + |(x - μ) P|²) + log det P``. Second moments are accumulated on data
the caller has already centred, so the raw-moment formulas do not lose precision.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import linalg

from gmmcli.errors import GMMError

LOG_2PI = math.log(2 * math.pi)


class SingularCovarianceError(GMMError):
    """A covariance that is not positive definite even after regularisation."""

    def __init__(self, component: int | None):
        where = "the shared covariance" if component is None else f"component {component}"
        super().__init__(
            f"the covariance of {where} is singular (not positive definite); "
            "increase reg_covar (--reg-covar), e.g. by a factor of 10"
        )
        self.component = component


def _cholesky_lower(matrix: np.ndarray, component: int | None) -> np.ndarray:
    try:
        return linalg.cholesky(matrix, lower=True, check_finite=False)
    except linalg.LinAlgError:
        raise SingularCovarianceError(component) from None


def _precision_factor(covariance: np.ndarray, component: int | None) -> np.ndarray:
    """Upper-triangular P with P Pᵀ = covariance⁻¹, by a triangular solve."""
    cov_chol = _cholesky_lower(covariance, component)
    eye = np.eye(len(covariance), dtype=covariance.dtype)
    return linalg.solve_triangular(cov_chol, eye, lower=True, check_finite=False).T


def _covariance_from_factor(factor: np.ndarray) -> np.ndarray:
    """inv(F Fᵀ) from a triangular precision factor F, without a general inverse."""
    lower = np.allclose(factor, np.tril(factor))
    eye = np.eye(len(factor), dtype=factor.dtype)
    inv_factor = linalg.solve_triangular(factor, eye, lower=lower, check_finite=False)
    return inv_factor.T @ inv_factor


def _safe(nk: np.ndarray) -> np.ndarray:
    """Component totals with zeros replaced by 1, for components the M-step keeps as they were."""
    return np.where(nk > 0, nk, 1.0)


def _symmetrise(matrices: np.ndarray) -> np.ndarray:
    return 0.5 * (matrices + np.swapaxes(matrices, -1, -2))


class Covariance:
    """Base of the four structures; subclasses fill in the type-specific pieces."""

    name: str

    def shape(self, n_components: int, n_features: int) -> tuple[int, ...]:
        raise NotImplementedError

    def n_parameters(self, n_components: int, n_features: int) -> int:
        """Free parameters of the covariances alone."""
        raise NotImplementedError

    def precision_cholesky(self, covariances: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def precision_cholesky_from_precisions(self, precisions: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def covariances_from_precision_cholesky(self, prec_chol: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def precisions(self, prec_chol: np.ndarray) -> np.ndarray:
        """Precisions P Pᵀ in scikit-learn's shape (what ``precisions_init`` takes)."""
        return prec_chol @ np.swapaxes(prec_chol, -1, -2)

    def log_det(self, prec_chol: np.ndarray, n_features: int) -> np.ndarray | float:
        """log det P per component (a scalar for tied)."""
        raise NotImplementedError

    def mahalanobis(self, X: np.ndarray, means: np.ndarray, prec_chol: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distances, shape (n_rows, K)."""
        raise NotImplementedError

    def second_moment(self, X: np.ndarray, wresp: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """The block's second-moment statistic this structure needs."""
        raise NotImplementedError

    def estimate(
        self, nk: np.ndarray, means: np.ndarray, second: np.ndarray, reg_covar: float
    ) -> np.ndarray:
        """Covariances from summed statistics (means already divided out)."""
        raise NotImplementedError

    def full_matrices(
        self, covariances: np.ndarray, n_components: int, n_features: int
    ) -> np.ndarray:
        """Every component's covariance as a (K, D, D) array."""
        raise NotImplementedError

    def log_gaussian(self, X: np.ndarray, means: np.ndarray, prec_chol: np.ndarray) -> np.ndarray:
        """log N(x | μ_k, Σ_k) for every row and component, shape (n_rows, K)."""
        n_features = X.shape[1]
        log_det = self.log_det(prec_chol, n_features)
        return -0.5 * (n_features * LOG_2PI + self.mahalanobis(X, means, prec_chol)) + log_det

    def select(self, covariances: np.ndarray, order: np.ndarray) -> np.ndarray:
        """Covariances reordered to a new component order."""
        return covariances[order]

    def keep_previous(
        self, covariances: np.ndarray, previous: np.ndarray, mask: np.ndarray
    ) -> np.ndarray:
        """Covariances with the masked components' values taken from ``previous``."""
        covariances[mask] = previous[mask]
        return covariances


class Full(Covariance):
    name = "full"

    def shape(self, n_components, n_features):
        return (n_components, n_features, n_features)

    def n_parameters(self, n_components, n_features):
        return n_components * n_features * (n_features + 1) // 2

    def precision_cholesky(self, covariances):
        return np.stack([_precision_factor(c, k) for k, c in enumerate(covariances)])

    def precision_cholesky_from_precisions(self, precisions):
        return np.stack([_cholesky_lower(p, k) for k, p in enumerate(precisions)])

    def covariances_from_precision_cholesky(self, prec_chol):
        return np.stack([_covariance_from_factor(f) for f in prec_chol])

    def log_det(self, prec_chol, n_features):
        return np.log(np.diagonal(prec_chol, axis1=1, axis2=2)).sum(axis=1)

    def mahalanobis(self, X, means, prec_chol):
        out = np.empty((X.shape[0], len(means)), dtype=X.dtype)
        for k, (mu, factor) in enumerate(zip(means, prec_chol, strict=True)):
            y = X @ factor
            y -= mu @ factor
            out[:, k] = np.einsum("ij,ij->i", y, y)
        return out

    def second_moment(self, X, wresp, weights):
        return np.stack([(X * wresp[:, k : k + 1]).T @ X for k in range(wresp.shape[1])])

    def estimate(self, nk, means, second, reg_covar):
        cov = second / _safe(nk)[:, None, None] - means[:, :, None] * means[:, None, :]
        cov = _symmetrise(cov)
        idx = np.arange(means.shape[1])
        cov[:, idx, idx] += reg_covar
        return cov

    def full_matrices(self, covariances, n_components, n_features):
        return covariances


class Tied(Covariance):
    name = "tied"

    def shape(self, n_components, n_features):
        return (n_features, n_features)

    def n_parameters(self, n_components, n_features):
        return n_features * (n_features + 1) // 2

    def precision_cholesky(self, covariances):
        return _precision_factor(covariances, None)

    def precision_cholesky_from_precisions(self, precisions):
        return _cholesky_lower(precisions, None)

    def covariances_from_precision_cholesky(self, prec_chol):
        return _covariance_from_factor(prec_chol)

    def log_det(self, prec_chol, n_features):
        return float(np.log(np.diagonal(prec_chol)).sum())

    def mahalanobis(self, X, means, prec_chol):
        y = X @ prec_chol
        centres = means @ prec_chol
        sq = np.einsum("ij,ij->i", y, y)[:, None] - 2.0 * (y @ centres.T)
        sq += np.einsum("ij,ij->i", centres, centres)
        return np.maximum(sq, 0.0, out=sq)

    def second_moment(self, X, wresp, weights):
        return (X * weights[:, None]).T @ X

    def estimate(self, nk, means, second, reg_covar):
        cov = (second - (means.T * nk) @ means) / nk.sum()
        cov = _symmetrise(cov)
        cov.flat[:: len(cov) + 1] += reg_covar
        return cov

    def full_matrices(self, covariances, n_components, n_features):
        return np.broadcast_to(covariances, (n_components, *covariances.shape))

    def select(self, covariances, order):
        return covariances

    def keep_previous(self, covariances, previous, mask):
        return covariances


class Diag(Covariance):
    name = "diag"

    def shape(self, n_components, n_features):
        return (n_components, n_features)

    def n_parameters(self, n_components, n_features):
        return n_components * n_features

    def precision_cholesky(self, covariances):
        if np.any(covariances <= 0):
            raise SingularCovarianceError(int(np.nonzero(covariances <= 0)[0][0]))
        return 1.0 / np.sqrt(covariances)

    def precision_cholesky_from_precisions(self, precisions):
        return np.sqrt(precisions)

    def covariances_from_precision_cholesky(self, prec_chol):
        return 1.0 / prec_chol**2

    def precisions(self, prec_chol):
        return prec_chol**2

    def log_det(self, prec_chol, n_features):
        return np.log(prec_chol).sum(axis=1)

    def mahalanobis(self, X, means, prec_chol):
        precisions = prec_chol**2
        sq = (X * X) @ precisions.T - 2.0 * (X @ (means * precisions).T)
        sq += np.sum(means**2 * precisions, axis=1)
        return np.maximum(sq, 0.0, out=sq)

    def second_moment(self, X, wresp, weights):
        return wresp.T @ (X * X)

    def estimate(self, nk, means, second, reg_covar):
        return second / _safe(nk)[:, None] - means**2 + reg_covar

    def full_matrices(self, covariances, n_components, n_features):
        return np.stack([np.diag(c) for c in covariances])


class Spherical(Diag):
    name = "spherical"

    def shape(self, n_components, n_features):
        return (n_components,)

    def n_parameters(self, n_components, n_features):
        return n_components

    def precision_cholesky(self, covariances):
        return super().precision_cholesky(covariances[:, None])[:, 0]

    def log_det(self, prec_chol, n_features):
        return n_features * np.log(prec_chol)

    def mahalanobis(self, X, means, prec_chol):
        return super().mahalanobis(X, means, np.repeat(prec_chol[:, None], X.shape[1], axis=1))

    def estimate(self, nk, means, second, reg_covar):
        return super().estimate(nk, means, second, reg_covar).mean(axis=1)

    def full_matrices(self, covariances, n_components, n_features):
        return covariances[:, None, None] * np.eye(n_features)


COVARIANCE_TYPES: dict[str, Covariance] = {c.name: c for c in (Full(), Tied(), Diag(), Spherical())}


def get_covariance(name: str) -> Covariance:
    """The structure called ``name``, or a GMMError listing the valid names."""
    try:
        return COVARIANCE_TYPES[name]
    except KeyError:
        valid = ", ".join(COVARIANCE_TYPES)
        raise GMMError(f"unknown covariance type {name!r}; use one of {valid}") from None
