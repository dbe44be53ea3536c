"""Rows with missing features (NaN): their marginal densities and what EM expects of them.

A row whose features o are observed and m missing has, under component k, the density of
what it has, N(x_o | μₖ,o, Σₖ,oo), and given that, its missing features are Gaussian with
mean E[x_m | x_o, k] and covariance Cov[x_m | x_o, k] (Ghahramani and Jordan 1994). All
three come from the precision Λ = Σₖ⁻¹ restricted to the j missing features: with d = x − μₖ
(its gaps set to 0) and g = (Λ d)_m,

    E[x_m | x_o, k] = μₖ,m − Λ_mm⁻¹ g            Cov[x_m | x_o, k] = Λ_mm⁻¹
    d_oᵀ Σₖ,oo⁻¹ d_o = dᵀ Λ d − gᵀ Λ_mm⁻¹ g       log det Σₖ,oo = log det Σₖ + log det Λ_mm

so nothing of size |o| is factored. Rows are taken together by their number of gaps j,
whichever features those are: the j × j Cholesky factors and solves run as numpy
operations over all those rows and every component at once, one column at a time, so a
rare pattern costs no calls of its own. The M-step gets the expected statistics: the rows
filled with their conditional means, and the conditional covariances added to the second
moments, in the layout of each structure (Covariance.second_from_matrices), so its M-step
is the one complete rows use.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from gmmcli.core.covariance import LOG_2PI, Covariance

COMPLETE_ROWS_PER_VALUE = 10


def starts_from_complete(complete_weight: float, n_components: int, n_features: int) -> bool:
    """Whether the complete rows weigh enough, 10·K·D, for a fit to start from them alone
    and for their covariance to stand for the data's."""
    return complete_weight >= COMPLETE_ROWS_PER_VALUE * n_components * n_features


@dataclass
class CompleteRows:
    """A row source's rows without gaps: the others read as zeros of weight zero, so that
    every block keeps its rows and its place (what the starts take, when these suffice)."""

    source: object  # a RowSource (gmmcli.core.em)

    def __getattr__(self, name: str):
        return getattr(self.source, name)  # n_features, n_parts, centre, block_rows

    def map_parts(self, function):
        def without_gaps(blocks, index, first_row):
            return function((_weightless_gaps(X, w) for X, w in blocks), index, first_row)

        return self.source.map_parts(without_gaps)

    def centred(self, centre: np.ndarray, dtype: type = np.float64) -> CompleteRows:
        return CompleteRows(self.source.centred(centre, dtype))


def _weightless_gaps(X: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gaps = np.isnan(X)
    if not gaps.any():
        return X, weights
    return np.where(gaps, 0.0, X).astype(X.dtype), np.where(gaps.any(axis=1), 0.0, weights)


@dataclass
class GapGroup:
    """The rows of a block that miss the same number j of features, under every component."""

    rows: np.ndarray  # (n,) their positions in the block
    missing: np.ndarray  # (n, j) each row's missing features, ascending
    log_joint: np.ndarray  # (K, n) log πₖ + log N(x_o | μₖ,o, Σₖ,oo)
    filled: np.ndarray  # (K, n, D) the rows, their gaps filled with E[x_m | x_o, k]
    factor: np.ndarray  # (K, n, j, j) lower Cholesky factors of Λ_mm

    def conditional_covariances(self) -> np.ndarray:
        """Cov[x_m | x_o, k] = Λ_mm⁻¹, shape (K, n, j, j), from the factors."""
        j = self.factor.shape[-1]
        identity = np.broadcast_to(np.eye(j), self.factor.shape)
        return _solve_upper(self.factor, _solve_lower(self.factor, identity))

    def taken(self, keep: np.ndarray) -> GapGroup:
        """The group's rows where ``keep`` (n,) is true."""
        return GapGroup(
            self.rows[keep],
            self.missing[keep],
            self.log_joint[:, keep],
            self.filled[:, keep],
            self.factor[:, keep],
        )

    def conditional_means(self) -> np.ndarray:
        """E[x_m | x_o, k], shape (K, n, j)."""
        return np.take_along_axis(self.filled, self.missing[None], axis=2)

    def draws(self, resp: np.ndarray, uniforms: np.ndarray, normals: np.ndarray) -> np.ndarray:
        """Draws of the missing features from the conditional mixture, shape (n, N, j):
        for each row and draw, component k where its uniform (n, N) falls among the
        cumulative p(k | x_o) (``resp``, (K, n)), then E[x_m | x_o, k] + L⁻ᵀ z for its
        standard normals z (``normals``, (n, N, j)), L Lᵀ = Λ_mm the factor held, so that
        L⁻ᵀ z has covariance Λ_mm⁻¹ = Cov[x_m | x_o, k]."""
        cumulative = np.cumsum(resp, axis=0)
        chosen = (cumulative[:, :, None] <= uniforms[None]).sum(axis=0)  # (n, N)
        chosen = np.minimum(chosen, len(resp) - 1)  # a last sum rounded below 1
        rows = np.arange(len(self.rows))[:, None]
        means = np.moveaxis(self.conditional_means(), 0, 1)[rows, chosen]  # (n, N, j)
        factor = np.moveaxis(self.factor, 0, 1)[rows, chosen]  # (n, N, j, j)
        return means + _solve_upper(factor, normals[..., None])[..., 0]


@dataclass
class Marginal:
    """A mixture's parameters as the gaps' math takes them: means (K, D), precisions
    (K, D, D), log det of each precision's Cholesky factor and log πₖ (K,)."""

    means: np.ndarray
    precisions: np.ndarray
    log_det_factor: np.ndarray
    log_weights: np.ndarray

    @classmethod
    def of(cls, means, prec_chol, log_weights, cov: Covariance) -> Marginal:
        n_components, n_features = means.shape
        precisions = cov.full_matrices(cov.precisions(prec_chol), n_components, n_features)
        return cls(means, precisions, cov.log_det(prec_chol, n_features), log_weights)

    def groups(self, X: np.ndarray, gaps: np.ndarray) -> Iterator[GapGroup]:
        """A GapGroup for each number of gaps from 1 that some row of ``X`` has, in
        ascending order; ``gaps`` is X's NaN mask. Rows without gaps are left out."""
        counts = gaps.sum(axis=1)
        for j in np.unique(counts[counts > 0]):
            rows = np.flatnonzero(counts == j)
            yield self._group(X[rows], gaps[rows], rows, int(j))

    def _group(self, X: np.ndarray, gaps: np.ndarray, rows: np.ndarray, j: int) -> GapGroup:
        n_rows, n_features = X.shape
        missing = np.nonzero(gaps)[1].reshape(n_rows, j)
        deviations = np.where(gaps, 0.0, X[None] - self.means[:, None, :])
        times_precision = np.matmul(deviations, self.precisions)  # (Λ d)ᵀ, Λ symmetric
        g = np.take_along_axis(times_precision, missing[None], axis=2)
        block = self.precisions[:, missing[:, :, None], missing[:, None, :]]  # Λ_mm per row
        factor = _cholesky(block)
        solved = _solve_upper(factor, _solve_lower(factor, g[..., None]))[..., 0]
        quadratic = np.einsum("knd,knd->kn", deviations, times_precision)
        quadratic -= np.einsum("knj,knj->kn", g, solved)
        half_log_det_block = np.log(np.diagonal(factor, axis1=2, axis2=3)).sum(axis=2)
        log_joint = (
            -0.5 * quadratic
            - half_log_det_block
            + (self.log_det_factor + self.log_weights)[:, None]
            - 0.5 * (n_features - j) * LOG_2PI
        )
        filled = np.repeat(X[None], len(self.means), axis=0)
        means_missing = np.take_along_axis(
            np.broadcast_to(self.means[:, None, :], filled.shape), missing[None], axis=2
        )
        np.put_along_axis(filled, np.broadcast_to(missing, solved.shape), means_missing - solved, 2)
        return GapGroup(rows, missing, log_joint, filled, factor)


def expected_second_moments(group: GapGroup, weighted: np.ndarray, n_features: int) -> np.ndarray:
    """Σ over the group's rows of w·rₖ E[x xᵀ | x_o, k] for every component, (K, D, D):
    the filled rows' products plus the conditional covariances where both features are
    missing. ``weighted`` is w·rₖ, shape (K, n)."""
    filled = group.filled
    second = np.stack([(rows.T * w) @ rows for rows, w in zip(filled, weighted, strict=True)])
    spread = weighted[:, :, None, None] * group.conditional_covariances()
    cells = group.missing[:, :, None] * n_features + group.missing[:, None, :]
    n_components, size = len(second), n_features * n_features
    where = (np.arange(n_components)[:, None] * size + cells.reshape(1, -1)).ravel()
    second += np.bincount(where, spread.ravel(), n_components * size).reshape(second.shape)
    return second


def _cholesky(matrices: np.ndarray) -> np.ndarray:
    """Lower Cholesky factors of a stack of small positive definite matrices (…, j, j),
    a column at a time over the whole stack."""
    j = matrices.shape[-1]
    factor = np.zeros_like(matrices)
    for c in range(j):
        done = factor[..., c, :c]
        pivot = np.sqrt(matrices[..., c, c] - np.einsum("...i,...i->...", done, done))
        factor[..., c, c] = pivot
        below = matrices[..., c + 1 :, c] - np.einsum(
            "...ri,...i->...r", factor[..., c + 1 :, :c], done
        )
        factor[..., c + 1 :, c] = below / pivot[..., None]
    return factor


def _solve_lower(factor: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """L y = rhs for a stack of lower triangular L (…, j, j) and right sides (…, j, r)."""
    out = np.empty(np.broadcast_shapes(factor.shape[:-1] + (1,), rhs.shape))
    for c in range(factor.shape[-1]):
        known = np.einsum("...i,...ir->...r", factor[..., c, :c], out[..., :c, :])
        out[..., c, :] = (rhs[..., c, :] - known) / factor[..., c, c, None]
    return out


def _solve_upper(factor: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Lᵀ x = rhs for a stack of lower triangular L (…, j, j) and right sides (…, j, r)."""
    out = np.empty(np.broadcast_shapes(factor.shape[:-1] + (1,), rhs.shape))
    for c in reversed(range(factor.shape[-1])):
        known = np.einsum("...i,...ir->...r", factor[..., c + 1 :, c], out[..., c + 1 :, :])
        out[..., c, :] = (rhs[..., c, :] - known) / factor[..., c, c, None]
    return out


@dataclass
class Coverage:
    """What rows with gaps say of the data, summed over them: their total weight and count
    (of positive weight), the cells missing, and for every pair of features (a, b), over
    the rows observing both, Σw, Σw·xₐ and Σw·xₐx_b (xₐ for row a, column b of ``sums``).
    Added up over blocks; gmmcli.core.fit joins it to the complete rows' Moments."""

    weight: float
    n_samples: int
    missing_cells: int
    pair_weights: np.ndarray  # (D, D)
    sums: np.ndarray  # (D, D)
    products: np.ndarray  # (D, D)

    @classmethod
    def of(cls, X: np.ndarray, weights: np.ndarray) -> Coverage:
        """The Coverage of rows that all have gaps (NaN)."""
        gaps = np.isnan(X)
        observed = (~gaps).astype(np.float64)
        weighted = np.where(gaps, 0.0, X) * weights[:, None]
        return cls(
            float(weights.sum()),
            int(np.count_nonzero(weights)),
            int(gaps.sum()),
            observed.T @ (observed * weights[:, None]),
            weighted.T @ observed,
            weighted.T @ np.where(gaps, 0.0, X),
        )

    def __add__(self, other: Coverage) -> Coverage:
        return Coverage(
            self.weight + other.weight,
            self.n_samples + other.n_samples,
            self.missing_cells + other.missing_cells,
            self.pair_weights + other.pair_weights,
            self.sums + other.sums,
            self.products + other.products,
        )

    def with_complete(self, weight: float, mean: np.ndarray, scatter: np.ndarray) -> Coverage:
        """This and complete rows of that total weight, mean and scatter Σw(x−x̄)(x−x̄)ᵀ
        (the same coordinates) in one Coverage (their count and cells aside)."""
        sums = np.broadcast_to((weight * mean)[:, None], self.sums.shape)
        products = scatter + weight * np.outer(mean, mean)
        return Coverage(
            self.weight + weight,
            self.n_samples,
            self.missing_cells,
            self.pair_weights + weight,
            self.sums + sums,
            self.products + products,
        )

    def means(self) -> np.ndarray:
        """Each feature's weighted mean over the rows observing it."""
        return np.diagonal(self.sums) / np.diagonal(self.pair_weights)

    def covariance(self) -> np.ndarray:
        """Pairwise covariances: of features a and b over the rows observing both; 0 for
        a pair no row observes."""
        with np.errstate(divide="ignore", invalid="ignore"):
            means = self.sums / self.pair_weights  # [a, b]: xₐ's mean where b is seen too
            covariance = self.products / self.pair_weights - means * means.T
        return np.where(self.pair_weights > 0, covariance, 0.0)

    def unseen_pairs(self) -> list[tuple[int, int]]:
        """Pairs of features (a < b, and (a, a) for a feature never seen) that no row of
        positive weight observes together."""
        rows, cols = np.nonzero(np.triu(self.pair_weights <= 0))
        return list(zip(rows.tolist(), cols.tolist(), strict=True))


def observed_distances(X: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """|x − c|² over each row's observed features, scaled by D over their number (to
    all D features), for every row and centre; a block without gaps, plain |x − c|²."""
    gaps = np.isnan(X)
    observed = (~gaps).astype(np.float64)
    values = np.where(gaps, 0.0, X)
    sq = np.einsum("ij,ij->i", values, values)[:, None] - 2.0 * (values @ centres.T)
    sq += observed @ (centres * centres).T
    sq *= (X.shape[1] / np.maximum(observed.sum(axis=1), 1.0))[:, None]
    return np.maximum(sq, 0.0, out=sq)
