"""Rows with missing features (NaN) beyond the E-step (gmmcli.core.gaps): what they say
of the data (Coverage, the pairwise summary), the complete rows a fit may start from, and
distances over observed features for the starts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
class Coverage:
    """What rows with gaps say of the data: their total weight, count and missing cells (in
    rows of positive weight), and for every pair of features (a, b), over the rows that
    observe both, their weight, the mean of xₐ (row a, column b of ``means``) and the
    co-moment Σw(xₐ − x̄ₐ)(x_b − x̄_b). Added up over blocks pair by pair as Moments are
    (Chan, Golub and LeVeque), so a feature far from 0 loses nothing; gmmcli.core.fit
    joins it to the complete rows' Moments."""

    weight: float
    n_samples: int
    missing_cells: int
    pair_weights: np.ndarray  # (D, D)
    means: np.ndarray  # (D, D)
    comoments: np.ndarray  # (D, D)

    @classmethod
    def of(cls, X: np.ndarray, weights: np.ndarray) -> Coverage:
        """The Coverage of rows that all have gaps (NaN)."""
        gaps = np.isnan(X)
        observed = (~gaps).astype(np.float64)
        seen = observed.sum(axis=0)
        reference = np.where(seen > 0, np.where(gaps, 0.0, X).sum(axis=0) / np.maximum(seen, 1), 0)
        values = np.where(gaps, 0.0, X - reference)  # about each column's mean in the block
        weighted = values * weights[:, None]
        pair_weights = observed.T @ (observed * weights[:, None])
        sums = weighted.T @ observed  # [a, b]: Σ w xₐ over rows observing b too
        with np.errstate(divide="ignore", invalid="ignore"):
            means = np.where(pair_weights > 0, sums / pair_weights, 0.0)
        comoments = weighted.T @ values - means * sums.T
        return cls(
            float(weights.sum()),
            int(np.count_nonzero(weights)),
            int(gaps[weights > 0].sum()),
            pair_weights,
            means + reference[:, None],
            comoments,
        )

    def __add__(self, other: Coverage) -> Coverage:
        total = self.pair_weights + other.pair_weights
        with np.errstate(divide="ignore", invalid="ignore"):
            share = np.where(total > 0, other.pair_weights / total, 0.0)
        delta = other.means - self.means
        return Coverage(
            self.weight + other.weight,
            self.n_samples + other.n_samples,
            self.missing_cells + other.missing_cells,
            total,
            self.means + delta * share,
            self.comoments + other.comoments + delta * delta.T * self.pair_weights * share,
        )

    def with_complete(self, weight: float, mean: np.ndarray, scatter: np.ndarray) -> Coverage:
        """This and complete rows of that total weight, mean and scatter Σw(x−x̄)(x−x̄)ᵀ
        (the same coordinates) in one Coverage (their count and cells aside)."""
        shape = self.pair_weights.shape
        complete = Coverage(
            weight, 0, 0, np.full(shape, weight), np.repeat(mean[:, None], shape[1], 1), scatter
        )
        return self + complete

    def feature_means(self) -> np.ndarray:
        """Each feature's weighted mean over the rows observing it."""
        return np.diagonal(self.means).copy()

    def covariance(self) -> np.ndarray:
        """Pairwise covariances: of features a and b over the rows observing both; 0 for
        a pair no row observes."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.pair_weights > 0, self.comoments / self.pair_weights, 0.0)

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
