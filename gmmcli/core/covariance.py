"""The four covariance structures, each with all of its math in one object.

Shapes follow scikit-learn: full (K, D, D), tied (D, D), diag (K, D), spherical (K,).
Precision Cholesky factors ``P`` satisfy ``P @ P.T == inv(covariance)``.

The E-step and M-step are matrix products on a block of row features. Each structure
maps a block of centred rows to ``phi`` (features × rows: products xᵢxⱼ for full and
tied, x² for diag, |x|² for spherical, then x and a row of ones), and its parameters to
``coef`` (K × features) so that ``coef @ phi`` is log N(x | μₖ, Σₖ) for every component
and row. The statistics the M-step needs are ``phi @ (w·r)ᵀ``, read back by ``unpack``.
Where another form of the same math is faster (``kernel``: full and tied covariances
through their precision factors, for many features), that form keeps its own ``phi`` and
``coef`` and its ``log_densities`` combines them, but hands the M-step the same statistics.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from gmmcli.errors import SingularCovarianceError

LOG_2PI = math.log(2 * math.pi)


def _cholesky_lower(matrix: np.ndarray, component: int | None) -> np.ndarray:
    try:
        return np.linalg.cholesky(matrix)
    except np.linalg.LinAlgError:
        raise SingularCovarianceError(component) from None


def _lower_solve_identity(lower: np.ndarray) -> np.ndarray:
    """L⁻¹ of a lower-triangular L by forward substitution, row by row (what a triangular
    solve against the identity does; numpy alone, as scipy.linalg costs 24 MB to load)."""
    solved = np.zeros_like(lower)
    for i in range(len(lower)):
        solved[i] = -(lower[i, :i] @ solved[:i])
        solved[i, i] += 1.0
        solved[i] /= lower[i, i]
    return solved


def _precision_factor(covariance: np.ndarray, component: int | None) -> np.ndarray:
    """Upper-triangular P with P Pᵀ = covariance⁻¹, by a triangular solve."""
    if not np.all(np.isfinite(covariance)):  # from finite data: sums that overflowed
        raise SingularCovarianceError(component, overflow=True)
    return _lower_solve_identity(_cholesky_lower(covariance, component)).T


def _covariance_from_factor(factor: np.ndarray) -> np.ndarray:
    """inv(F Fᵀ) from a triangular precision factor F, without a general inverse."""
    if np.allclose(factor, np.tril(factor)):
        inv_factor = _lower_solve_identity(factor)
    else:
        inv_factor = _lower_solve_identity(factor.T).T
    return inv_factor.T @ inv_factor


def _symmetrise(matrices: np.ndarray) -> np.ndarray:
    return 0.5 * (matrices + np.swapaxes(matrices, -1, -2))


def empty_components(nk: np.ndarray) -> np.ndarray:
    """Components whose weight is below one rounding unit of the total: the M-step keeps
    their previous parameters (with weight zero), so nothing hangs on noise."""
    return nk <= np.finfo(float).eps * nk.sum()


def _safe(nk: np.ndarray) -> np.ndarray:
    """Component totals with zeros replaced by 1, for components the M-step keeps as they were."""
    return np.where(nk > 0, nk, 1.0)


def n_products(n_features: int) -> int:
    return n_features * (n_features + 1) // 2


@functools.cache
def product_pairs(n_features: int) -> tuple[np.ndarray, np.ndarray]:
    """(i, j), i ≤ j, of the products xᵢxⱼ in the order ``phi`` holds them: by offset
    j - i, so that each offset's products are one elementwise product of two runs of
    consecutive rows of xᵀ (a broadcast product per i runs at half the speed)."""
    lengths = n_features - np.arange(n_features)
    rows = np.concatenate([np.arange(length) for length in lengths])
    cols = rows + np.repeat(np.arange(n_features), lengths)
    rows.flags.writeable = cols.flags.writeable = False
    return rows, cols


def _packed_gram(scaled: np.ndarray) -> np.ndarray:
    """Σ over rows of x xᵀ for the columns of ``scaled`` (D × rows), packed as the
    products xᵢxⱼ are (numpy takes ``a @ a.T`` as a symmetric rank-k update)."""
    return (scaled @ scaled.T)[product_pairs(len(scaled))]


def _products_into(out: np.ndarray, Xt: np.ndarray) -> None:
    """The products xᵢxⱼ (i ≤ j) of every row into ``out``, in product_pairs() order."""
    start = 0
    for offset in range(len(Xt)):
        stop = start + len(Xt) - offset
        np.multiply(Xt[: len(Xt) - offset], Xt[offset:], out=out[start:stop])
        start = stop


def _features_array(cov: Covariance, X: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    shape = (cov.n_row_features(X.shape[1]), len(X))
    if out is None:
        return np.empty(shape, X.dtype)
    return out[: shape[0] * shape[1]].reshape(shape)


def _pack(matrices: np.ndarray) -> np.ndarray:
    """The upper triangles of symmetric (…, D, D) matrices as quadratic-form weights.

    Off-diagonal entries count twice, so ``pack(A) @ products(x) == xᵀ A x``.
    """
    rows, cols = product_pairs(matrices.shape[-1])
    return matrices[..., rows, cols] * np.where(rows == cols, 1.0, 2.0)


def unpack(packed: np.ndarray, n_features: int) -> np.ndarray:
    """Symmetric (…, D, D) matrices from their upper triangles (plain entries)."""
    rows, cols = product_pairs(n_features)
    out = np.zeros((*packed.shape[:-1], n_features, n_features))
    out[..., rows, cols] = packed
    out[..., cols, rows] = packed
    return out


class Covariance:
    """Base of the four structures; subclasses fill in the type-specific pieces.

    ``name`` is scikit-learn's, ``mclust_name`` R mclust's (volume, shape, orientation:
    Equal, Variable or Identity across components).
    """

    name: str
    mclust_name: str
    stores_matrices = False  # whether covariances are kept as (…, D, D) matrices

    def own_rows(self, n_components: int, n_features: int) -> tuple[int, str]:
        """Effective rows a component needs for what it has of its own (here variances or
        a volume), and how that reads."""
        return 2, "2"

    def pooled_rows(self, n_components: int, n_features: int) -> tuple[int, str] | None:
        """Effective rows the components need in all for what they share (None: nothing)."""
        return None

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

    def log_det(self, prec_chol: np.ndarray, n_features: int) -> np.ndarray:
        """log det P for every component."""
        raise NotImplementedError

    def n_row_features(self, n_features: int) -> int:
        """Length of ``phi`` per row."""
        raise NotImplementedError

    def row_values(self, n_components: int, n_features: int) -> int:
        """Values an E-step keeps per row: ``phi`` and two K × rows arrays."""
        return self.n_row_features(n_features) + 2 * n_components

    def features(self, X: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``phi`` of a block of centred rows, shape (features, rows); written into ``out``
        (at least that many values of X's dtype) when given."""
        raise NotImplementedError

    def quadratic(self, means: np.ndarray, prec_chol: np.ndarray) -> np.ndarray:
        """Coefficients of the quadratic features (K × those features before x)."""
        raise NotImplementedError

    def linear(self, means: np.ndarray, prec_chol: np.ndarray) -> np.ndarray:
        """Λₖ μₖ for every component, shape (K, D)."""
        raise NotImplementedError

    def kernel(self, n_components: int, n_features: int) -> Covariance:
        """The structure whose features, coefficients, log_densities and moments the
        E-step uses for this many components and features: this one, unless another form
        of the same math is faster there. Any form's ``moments`` return the statistics in
        this structure's layout, so the sums and the M-step do not depend on the form."""
        return self

    def coefficients(
        self, means: np.ndarray, prec_chol: np.ndarray, offsets: np.ndarray | None = None
    ) -> np.ndarray:
        """(K, features) such that ``coef @ phi`` = log N(x | μₖ, Σₖ) + ``offsets``."""
        linear_and_constant = self._linear_and_constant(means, prec_chol, offsets)
        return np.hstack([self.quadratic(means, prec_chol), linear_and_constant])

    def _linear_and_constant(
        self, means: np.ndarray, prec_chol: np.ndarray, offsets: np.ndarray | None
    ) -> np.ndarray:
        """(K, D + 1): Λₖμₖ and -μₖᵀΛₖμₖ/2 + log det Pₖ - D/2 log 2π + offsets."""
        n_features = means.shape[1]
        linear = self.linear(means, prec_chol)
        constant = -0.5 * (
            n_features * LOG_2PI + np.einsum("ki,ki->k", linear, means)
        ) + self.log_det(prec_chol, n_features)
        if offsets is not None:
            constant += offsets
        return np.hstack([linear, constant[:, None]])

    def log_densities(self, coef: np.ndarray, phi: np.ndarray, n_features: int) -> np.ndarray:
        """``coef @ phi``: log-densities (plus offsets) of a block, shape (K, rows)."""
        return coef @ phi

    def moments(
        self, phi: np.ndarray, wresp: np.ndarray, weights: np.ndarray, n_features: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(Σ w r, Σ w r x, second moment) of a block from ``phi`` and w·r (K × rows)."""
        sums = wresp @ phi.T  # faster than phi @ wresp.T, whose result is the transpose
        n_quad = len(phi) - n_features - 1
        return sums[:, -1], sums[:, n_quad:-1], self._second(sums[:, :n_quad])

    def _second(self, sums: np.ndarray) -> np.ndarray:
        return sums

    def second_from_matrices(self, matrices: np.ndarray) -> np.ndarray:
        """The second moment in ``moments``' layout from every component's Σ w r x xᵀ as
        (K, D, D) matrices (what rows with missing features give)."""
        raise NotImplementedError

    def estimate(
        self,
        nk: np.ndarray,
        means: np.ndarray,
        second: np.ndarray,
        reg_covar: float,
        previous: np.ndarray | None = None,
    ) -> np.ndarray:
        """Covariances from summed statistics (means already divided out), reg_covar
        added to the scatter matrices (Wₖ + reg_covar·nₖ·I); ``previous`` covariances are
        where an iterative M-step starts."""
        raise NotImplementedError

    def full_matrices(
        self, covariances: np.ndarray, n_components: int, n_features: int
    ) -> np.ndarray:
        """Every component's covariance as a (K, D, D) array."""
        raise NotImplementedError

    def constraint_error(self, covariances: np.ndarray, n_features: int) -> str | None:
        """Why covariances of the right shape do not have this structure, or None (none of
        the four constrains more than its shape)."""
        return None

    def unregularised(
        self,
        covariances: np.ndarray,
        nk: np.ndarray,
        means: np.ndarray,
        second: np.ndarray,
        reg_covar: float,
    ) -> np.ndarray:
        """Full (K, D, D) covariances as the M-step gives them without reg_covar: here,
        where it only adds reg_covar·I to each, ``covariances`` less that."""
        n_components, n_features = means.shape
        full = self.full_matrices(covariances, n_components, n_features)
        return full - reg_covar * np.eye(n_features)

    def log_gaussian(self, X: np.ndarray, means: np.ndarray, prec_chol: np.ndarray) -> np.ndarray:
        """log N(x | μₖ, Σₖ) for every row and component, shape (n_rows, K)."""
        coef = self.coefficients(means, prec_chol)
        return self.log_densities(coef, self.features(X), X.shape[1]).T

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
    mclust_name = "VVV"
    stores_matrices = True

    def own_rows(self, n_components, n_features):
        return n_features + 1, "D + 1"

    def shape(self, n_components, n_features):
        return (n_components, n_features, n_features)

    def n_parameters(self, n_components, n_features):
        return n_components * n_products(n_features)

    def precision_cholesky(self, covariances):
        return np.stack([_precision_factor(c, k) for k, c in enumerate(covariances)])

    def precision_cholesky_from_precisions(self, precisions):
        return np.stack([_cholesky_lower(p, k) for k, p in enumerate(precisions)])

    def covariances_from_precision_cholesky(self, prec_chol):
        return np.stack([_covariance_from_factor(f) for f in prec_chol])

    def log_det(self, prec_chol, n_features):
        return np.log(np.diagonal(prec_chol, axis1=-2, axis2=-1)).sum(axis=-1)

    def n_row_features(self, n_features):
        return n_products(n_features) + n_features + 1

    def features(self, X, out=None):
        phi = _features_array(self, X, out)
        n_quad = n_products(X.shape[1])
        Xt = phi[n_quad:-1]
        Xt[...] = X.T
        _products_into(phi[:n_quad], Xt)
        phi[-1] = 1.0
        return phi

    def quadratic(self, means, prec_chol):
        return -0.5 * _pack(self.precisions(prec_chol))

    def linear(self, means, prec_chol):
        return np.einsum("kij,kj->ki", self.precisions(prec_chol), means)

    def estimate(self, nk, means, second, reg_covar, previous=None):
        n_features = means.shape[1]
        cov = unpack(second, n_features) / _safe(nk)[:, None, None]
        cov -= means[:, :, None] * means[:, None, :]
        idx = np.arange(n_features)
        cov[:, idx, idx] += reg_covar
        return cov

    def full_matrices(self, covariances, n_components, n_features):
        return covariances

    def second_from_matrices(self, matrices):
        rows, cols = product_pairs(matrices.shape[-1])
        return matrices[..., rows, cols]

    def kernel(self, n_components, n_features):
        # Row products cost D(D+1)/2 values per row whatever K, in ever smaller tiles;
        # the stacked form about 3·K·D² flops: it wins with many features and few
        # components (benchmarks/bench_kernels.py times both on either side of the rule).
        return STACKED_FULL if n_features >= 24 and n_features > 8 * n_components else self


class _PlainRows:
    """For the forms whose ``phi`` is just (x; 1): the rows themselves and a row of ones."""

    def n_row_features(self, n_features):
        return n_features + 1

    def features(self, X, out=None):
        phi = _features_array(self, X, out)
        phi[:-1] = X.T
        phi[-1] = 1.0
        return phi


class StackedFull(_PlainRows, Full):
    """Full covariances through the precision factors side by side: for many features
    and few components, where D(D+1)/2 row products per row would cost more.

    ``coef`` stacks, for every component, the D rows of [Pₖᵀ, -Pₖᵀμₖ] (so ``coef @ phi``
    gives zₖ = Pₖᵀ(x - μₖ)) and then K rows (0, cₖ) of constants; log N = cₖ - |zₖ|²/2.
    The second moment is a Gram matrix of the rows scaled by √(w·r) per component, packed
    as the row-product form packs it.
    """

    def row_values(self, n_components, n_features):
        # phi, zₖ and the constants, √(w·r), one scaled copy of the rows
        return 2 * (n_features + 1) + n_components * (n_features + 2)

    def coefficients(self, means, prec_chol, offsets=None):
        n_components, n_features = means.shape
        maps = np.swapaxes(prec_chol, 1, 2)
        shifts = -np.einsum("kij,kj->ki", maps, means)
        constants = self.log_det(prec_chol, n_features) - 0.5 * n_features * LOG_2PI
        if offsets is not None:
            constants = constants + offsets
        coef = np.zeros((n_components * (n_features + 1), n_features + 1))
        stacked = coef[: n_components * n_features].reshape(n_components, n_features, -1)
        stacked[:, :, :-1] = maps
        stacked[:, :, -1] = shifts
        coef[n_components * n_features :, -1] = constants
        return coef

    def log_densities(self, coef, phi, n_features):
        n_components = len(coef) // (n_features + 1)
        products = coef @ phi
        z = products[: n_components * n_features].reshape(n_components, n_features, -1)
        log_prob = products[n_components * n_features :]
        log_prob -= 0.5 * np.einsum("kdt,kdt->kt", z, z)
        return log_prob

    def moments(self, phi, wresp, weights, n_features):
        sums = wresp @ phi.T
        X_t, roots = phi[:-1], np.sqrt(wresp)
        scaled = np.empty_like(X_t)
        second = np.empty((len(wresp), n_products(n_features)), sums.dtype)
        for k, root in enumerate(roots):
            np.multiply(X_t, root, out=scaled)
            second[k] = _packed_gram(scaled)
        return sums[:, -1], sums[:, :-1], second


class Tied(Full):
    """One covariance shared by all components: the quadratic term is one row for all."""

    name = "tied"
    mclust_name = "EEE"

    def own_rows(self, n_components, n_features):
        return 1, "1"

    def pooled_rows(self, n_components, n_features):
        return n_components + n_features, "K + D"  # the pooled scatter: D beyond K means

    def shape(self, n_components, n_features):
        return (n_features, n_features)

    def n_parameters(self, n_components, n_features):
        return n_products(n_features)

    def precision_cholesky(self, covariances):
        return _precision_factor(covariances, None)

    def precision_cholesky_from_precisions(self, precisions):
        return _cholesky_lower(precisions, None)

    def covariances_from_precision_cholesky(self, prec_chol):
        return _covariance_from_factor(prec_chol)

    def quadratic(self, means, prec_chol):
        packed = -0.5 * _pack(self.precisions(prec_chol))
        return np.broadcast_to(packed, (len(means), len(packed)))

    def linear(self, means, prec_chol):
        return means @ self.precisions(prec_chol)

    def log_densities(self, coef, phi, n_features):
        n_quad = n_products(n_features)
        out = coef[:, n_quad:] @ phi[n_quad:]
        out += coef[:1, :n_quad] @ phi[:n_quad]
        return out

    def moments(self, phi, wresp, weights, n_features):
        n_quad = n_products(n_features)
        sums = wresp @ phi[n_quad:].T
        return sums[:, -1], sums[:, :-1], phi[:n_quad] @ weights

    def estimate(self, nk, means, second, reg_covar, previous=None):
        cov = _symmetrise(unpack(second, means.shape[1]) - (means.T * nk) @ means) / nk.sum()
        cov.flat[:: len(cov) + 1] += reg_covar
        return cov

    def full_matrices(self, covariances, n_components, n_features):
        return np.broadcast_to(covariances, (n_components, *covariances.shape))

    def second_from_matrices(self, matrices):
        return super().second_from_matrices(matrices.sum(axis=0))

    def select(self, covariances, order):
        return covariances

    def keep_previous(self, covariances, previous, mask):
        return covariances

    def kernel(self, n_components, n_features):
        # No row products from 8 features on (benchmarks/bench_kernels.py times both).
        return STACKED_TIED if n_features >= 8 else self


class StackedTied(_PlainRows, Tied):
    """The shared covariance through its precision factor P, without row products:
    log N(x | k) = xᵀΛμₖ + cₖ - |Pᵀx|²/2, the first two one product for all components,
    the last one shared by all. ``coef`` holds the K rows [Λμₖ, cₖ], then the D rows
    [Pᵀ, 0]. The pooled second moment is a Gram matrix of the rows scaled by √w."""

    def row_values(self, n_components, n_features):
        # phi, Pᵀx, a K × rows array twice, one scaled copy of the rows
        return 3 * (n_features + 1) + 2 * n_components

    def coefficients(self, means, prec_chol, offsets=None):
        factor = np.hstack([prec_chol.T, np.zeros((len(prec_chol), 1))])
        return np.vstack([self._linear_and_constant(means, prec_chol, offsets), factor])

    def log_densities(self, coef, phi, n_features):
        products = coef @ phi
        log_prob, z = products[:-n_features], products[-n_features:]
        log_prob -= 0.5 * np.einsum("dt,dt->t", z, z)
        return log_prob

    def moments(self, phi, wresp, weights, n_features):
        sums = wresp @ phi.T
        return sums[:, -1], sums[:, :-1], _packed_gram(phi[:-1] * np.sqrt(weights))


class Diag(Covariance):
    name = "diag"
    mclust_name = "VVI"

    def shape(self, n_components, n_features):
        return (n_components, n_features)

    def n_parameters(self, n_components, n_features):
        return n_components * n_features

    def precision_cholesky(self, covariances):
        bad = ~(covariances > 0)  # also catches NaN
        if np.any(bad):
            first = np.nonzero(bad)[0][0]
            overflow = not np.isfinite(covariances[first]).all()
            raise SingularCovarianceError(int(first), overflow=overflow)
        return 1.0 / np.sqrt(covariances)

    def precision_cholesky_from_precisions(self, precisions):
        return np.sqrt(precisions)

    def covariances_from_precision_cholesky(self, prec_chol):
        return 1.0 / prec_chol**2

    def precisions(self, prec_chol):
        return prec_chol**2

    def log_det(self, prec_chol, n_features):
        return np.log(prec_chol).sum(axis=1)

    def n_row_features(self, n_features):
        return 2 * n_features + 1

    def _squares_into(self, out: np.ndarray, Xt: np.ndarray) -> None:
        np.multiply(Xt, Xt, out=out)

    def features(self, X, out=None):
        phi = _features_array(self, X, out)
        n_quad = len(phi) - X.shape[1] - 1
        Xt = phi[n_quad:-1]
        Xt[...] = X.T
        self._squares_into(phi[:n_quad], Xt)
        phi[-1] = 1.0
        return phi

    def quadratic(self, means, prec_chol):
        return -0.5 * self.precisions(prec_chol)

    def linear(self, means, prec_chol):
        return self.precisions(prec_chol) * means

    def estimate(self, nk, means, second, reg_covar, previous=None):
        return second / _safe(nk)[:, None] - means**2 + reg_covar

    def full_matrices(self, covariances, n_components, n_features):
        return covariances[:, :, None] * np.eye(n_features)

    def second_from_matrices(self, matrices):
        return np.diagonal(matrices, axis1=1, axis2=2).copy()


class Spherical(Diag):
    name = "spherical"
    mclust_name = "VII"

    def shape(self, n_components, n_features):
        return (n_components,)

    def n_parameters(self, n_components, n_features):
        return n_components

    def precision_cholesky(self, covariances):
        return super().precision_cholesky(covariances[:, None])[:, 0]

    def log_det(self, prec_chol, n_features):
        return n_features * np.log(prec_chol)

    def n_row_features(self, n_features):
        return n_features + 2

    def _squares_into(self, out, Xt):
        np.einsum("ij,ij->j", Xt, Xt, out=out[0])

    def quadratic(self, means, prec_chol):
        return -0.5 * self.precisions(prec_chol)[:, None]

    def linear(self, means, prec_chol):
        return self.precisions(prec_chol)[:, None] * means

    def _second(self, sums):
        return sums[:, 0]

    def estimate(self, nk, means, second, reg_covar, previous=None):
        return (second / _safe(nk) - np.einsum("ki,ki->k", means, means)) / means.shape[
            1
        ] + reg_covar

    def full_matrices(self, covariances, n_components, n_features):
        return covariances[:, None, None] * np.eye(n_features)

    def second_from_matrices(self, matrices):
        return np.trace(matrices, axis1=1, axis2=2)


STACKED_FULL, STACKED_TIED = StackedFull(), StackedTied()
