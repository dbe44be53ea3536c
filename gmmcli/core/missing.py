"""Rows with missing features (NaN): their marginal densities and what EM expects of them.

A row whose features o are observed and m missing has, under component k, the density of
what it has, N(x_o | μₖ,o, Σₖ,oo), and given that, its missing features are Gaussian with
mean E[x_m | x_o, k] and covariance Cov[x_m | x_o, k] (Ghahramani and Jordan 1994). The
core takes such a row as x̃, its gaps set to 0 (the data's centre, in the coordinates the
core works in), which the E-step's kernel takes like any complete row; the j missing
features then only need the precision Λ = Σₖ⁻¹ restricted to them. With
g = (Λ(x̃ − μₖ))_m, the gradient that x_m = 0 leaves in the quadratic form,

    E[x_m | x_o, k] = −Λ_mm⁻¹ g                  Cov[x_m | x_o, k] = Λ_mm⁻¹
    log N(x_o | μₖ,o, Σₖ,oo) = log N(x̃ | μₖ, Σₖ) + ½ gᵀΛ_mm⁻¹g − ½ log det Λ_mm + j/2 log 2π

so nothing of size |o| is factored: each pattern's j × j factor L of Λ_mm once per set of
parameters, then (h = L⁻¹g) the offset ½|h|² − Σ log diag L + j/2 log 2π and the mean
−L⁻ᵀh for every row with that many gaps, in numpy operations over all of them and every
component at once, one column at a time, so a rare pattern costs no calls of its own.
The M-step gets the kernel's statistics of x̃ plus what the conditional means and
covariances add (Gaps.moments), in the layout of each structure
(Covariance.second_from_matrices), so its M-step is the one complete rows use.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field

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
class Cells:
    """A block's missing cells feature by feature: ``rows`` (P,) the row of each, the
    cells of feature b at ``bounds[b]:bounds[b + 1]``, rows ascending; ``position``
    (n_rows, D) each missing cell's place among them."""

    rows: np.ndarray
    bounds: np.ndarray
    position: np.ndarray

    @classmethod
    def of(cls, gaps: np.ndarray) -> Cells:
        features, rows = np.divmod(np.flatnonzero(gaps.T.ravel()), len(gaps))
        bounds = np.searchsorted(features, np.arange(gaps.shape[1] + 1))
        position = np.empty(gaps.shape, dtype=np.intp)  # read at missing cells only
        position.ravel()[rows * gaps.shape[1] + features] = np.arange(len(rows))
        return cls(rows, bounds, position)

    def runs(self) -> Iterator[tuple[int, slice]]:
        """(feature, its cells) for every feature missing somewhere."""
        for feature, (start, stop) in enumerate(itertools.pairwise(self.bounds)):
            if start < stop:
                yield feature, slice(start, stop)


@dataclass
class RankedRows:
    """A block's rows with gaps sorted by their number of gaps, then their pattern (by
    _pattern_keys()): ``rows`` in that order, each one's pattern ``which`` (an index of
    the patterns so sorted), the rows of pattern p at ``starts[p]:starts[p + 1]``, and for
    each pattern its ``keys`` and number of gaps (``counts``)."""

    rows: np.ndarray
    which: np.ndarray
    starts: np.ndarray
    keys: np.ndarray
    counts: np.ndarray

    @classmethod
    def of(cls, gaps: np.ndarray, per_row: np.ndarray) -> RankedRows:
        """From a block's NaN mask and each row's number of gaps."""
        gapped = np.flatnonzero(per_row)
        keys, which, sizes = np.unique(
            _pattern_keys(gaps[gapped], per_row[gapped]), return_inverse=True, return_counts=True
        )
        which = which.astype(np.min_scalar_type(len(keys)))  # a radix sort for few patterns
        order = np.argsort(which, kind="stable")
        starts = np.concatenate([[0], np.cumsum(sizes)])
        rows = gapped[order]
        return cls(rows, which[order], starts, keys, per_row[rows[starts[:-1]]])

    def by_count(self) -> Iterator[tuple[slice, slice]]:
        """The patterns with each number of gaps (ascending) and their rows, as slices."""
        bounds = [0, *(np.flatnonzero(np.diff(self.counts)) + 1).tolist(), len(self.counts)]
        for start, stop in itertools.pairwise(bounds):
            yield slice(start, stop), slice(self.starts[start], self.starts[stop])


@dataclass
class Patterns:
    """A GapGroup's patterns of gaps, its rows in a run for each: where the runs start
    (P,), each pattern's missing features (P, j) and Cov[x_m | x_o, k], entrywise
    (j, j, P, K)."""

    starts: np.ndarray
    missing: np.ndarray
    conditional: np.ndarray

    def add_spread(self, second: np.ndarray, weighted: np.ndarray, spread: np.ndarray) -> None:
        """Add to ``second`` (K, D, D), where both features are missing, the rows'
        ``spread`` (w·rₖ e eᵀ, entrywise (j, j, n, K)) and Σ w·rₖ Cov[x_m | x_o, k]
        (``weighted`` = w·rₖ of the rows, (n, K)), summed pattern by pattern."""
        n_components, n_features = second.shape[:2]
        sums = np.add.reduceat(spread, self.starts, axis=2)
        sums += np.add.reduceat(weighted, self.starts, axis=0) * self.conditional
        first, second_feature = self.missing.T[:, None], self.missing.T[None, :]  # (j, j, P)
        cells = (first * n_features + second_feature)[..., None]
        size = n_features * n_features
        where = cells + np.arange(n_components) * size
        added = np.bincount(where.ravel(), sums.ravel(), n_components * size)
        second += added.reshape(second.shape)


@dataclass
class GapGroup:
    """Rows of a block that miss the same number j of features (whichever), under every
    component, pattern by pattern: each pattern's Λ_mm factored once per set of
    parameters, the rest row by row in numpy operations over all of them. Small
    matrices per row are held entrywise, (j, j, n, K), so that each operation runs
    over all rows and components at once."""

    rows: np.ndarray  # (n,) their positions in the block
    missing: np.ndarray  # (n, j) each row's missing features, ascending
    cells: np.ndarray  # (n, j) their places among the block's Cells
    offsets: np.ndarray  # (n, K) log N(x_o | μₖ,o, Σₖ,oo) - log N(x̃ | μₖ, Σₖ)
    means_missing: np.ndarray  # (j, n, K) E[x_m | x_o, k]
    factor: np.ndarray  # (j, j, n, K) lower Cholesky factors of Λ_mm
    patterns: Patterns | None  # None once rows are taken out of their runs

    def taken(self, keep: np.ndarray) -> GapGroup:
        """The group's rows where ``keep`` (n,) is true (not in pattern runs)."""
        return GapGroup(
            self.rows[keep],
            self.missing[keep],
            self.cells[keep],
            self.offsets[keep],
            self.means_missing[:, keep],
            self.factor[:, :, keep],
            None,
        )

    def draws(self, resp: np.ndarray, uniforms: np.ndarray, normals: np.ndarray) -> np.ndarray:
        """Draws of the missing features from the conditional mixture, shape (n, N, j):
        for each row and draw, component k where its uniform (n, N) falls among the
        cumulative p(k | x_o) (``resp``, (K, n)), then E[x_m | x_o, k] + L⁻ᵀ z for its
        standard normals z (``normals``, (n, N, j)), L Lᵀ = Λ_mm, so that L⁻ᵀ z has
        covariance Λ_mm⁻¹ = Cov[x_m | x_o, k]."""
        cumulative = np.cumsum(resp, axis=0)
        chosen = (cumulative[:, :, None] <= uniforms[None]).sum(axis=0)  # (n, N)
        chosen = np.minimum(chosen, len(resp) - 1)  # a last sum rounded below 1
        rows = np.arange(len(self.rows))[:, None]
        means = self.means_missing[:, rows, chosen]  # (j, n, N)
        factor = self.factor[:, :, rows, chosen]  # (j, j, n, N)
        drawn = means + _solve_upper(factor, np.moveaxis(normals, 2, 0))
        return np.moveaxis(drawn, 0, 2)


@dataclass
class Gaps:
    """A block's rows with gaps under one set of parameters: its missing ``cells``, the
    block's rows at each (``values``: x̃, (P, D)), its ``rows`` with gaps in ``groups``
    (a GapGroup for each number of gaps, ascending, their rows one after the other) and
    their ``offsets`` (n, K); ``order``: each cell's place among the groups' cells laid
    out group by group, each (j, n)."""

    cells: Cells
    values: np.ndarray
    rows: np.ndarray
    offsets: np.ndarray
    groups: list[GapGroup]
    order: np.ndarray

    def moments(self, weighted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """What the rows with gaps add to Σ w·r x and Σ w·r x xᵀ of every component beyond
        what their x̃ gives, shapes (K, D) and (K, D, D); ``weighted`` is w·rₖ of the
        block's rows, (K, n_rows).

        Filled with its conditional means, a row is x̃ + e (e: E[x_m | x_o, k] in its gaps,
        0 elsewhere), and E[x xᵀ | x_o, k] = x̃x̃ᵀ + x̃eᵀ + ex̃ᵀ + eeᵀ + Cov[x_m | x_o, k]:
        where both features are missing, eeᵀ and Cov pattern by pattern, then w·r e at
        every missing cell and feature by feature x̃eᵀ as one product."""
        n_components, n_features = len(weighted), self.values.shape[1]
        row_weights = np.ascontiguousarray(np.take(weighted, self.rows, axis=1).T)
        laid = np.empty((len(self.values), n_components))  # w·rₖ e, group by group
        second = np.zeros((n_components, n_features, n_features))
        row, cell = 0, 0
        for group in self.groups:
            j, n_rows = group.means_missing.shape[:2]
            group_weights = row_weights[row : row + n_rows]
            scaled = laid[cell : cell + j * n_rows].reshape(j, n_rows, n_components)
            np.multiply(group_weights, group.means_missing, out=scaled)
            spread = scaled[:, None] * group.means_missing[None, :]
            group.patterns.add_spread(second, group_weights, spread)
            row, cell = row + n_rows, cell + j * n_rows
        at_cells = np.take(laid, self.order, axis=0)
        runs = list(self.cells.runs())
        sx = np.zeros((n_components, n_features))
        sums = np.add.reduceat(at_cells, [run.start for _, run in runs], axis=0)
        sx[:, [feature for feature, _ in runs]] = sums.T
        for feature, run in runs:
            cross = at_cells[run].T @ self.values[run]  # (K, D): Σ w·rₖ e x̃ᵀ
            second[:, :, feature] += cross
            second[:, feature, :] += cross
        return sx, second


@dataclass
class Factored:
    """Patterns of j gaps factored under one set of parameters: each one's ``slots`` (by
    its key, _pattern_keys()) in the lower Cholesky factors of Λ_mm and their inverses
    Cov[x_m | x_o, k], entrywise (j, j, S, K), and ½ log det Λ_mm (S, K)."""

    slots: dict
    factor: np.ndarray
    conditional: np.ndarray
    half_log_det: np.ndarray

    @classmethod
    def of(cls, keys: list, missing: np.ndarray, precisions: np.ndarray) -> Factored:
        """The patterns of ``keys``, their missing features ``missing`` (P, j), under
        ``precisions`` (K, D, D)."""
        by_entry = np.moveaxis(precisions, 0, 2)  # (D, D, K)
        factor = _cholesky(by_entry[missing.T[:, None], missing.T[None, :]])
        identity = np.eye(missing.shape[1])[:, :, None, None]
        unit = factor[:, :, None]  # the factor once for every column of the identity
        conditional = _solve_upper(unit, _solve_lower(unit, identity))
        half_log_det = np.log(factor[np.diag_indices(len(factor))]).sum(axis=0)
        slots = {key: slot for slot, key in enumerate(keys)}
        return cls(slots, factor, conditional, half_log_det)

    def __add__(self, other: Factored) -> Factored:
        shift = len(self.slots)
        slots = self.slots | {key: slot + shift for key, slot in other.slots.items()}
        return Factored(
            slots,
            np.concatenate([self.factor, other.factor], axis=2),
            np.concatenate([self.conditional, other.conditional], axis=2),
            np.concatenate([self.half_log_det, other.half_log_det]),
        )


@dataclass
class Marginal:
    """A mixture's parameters as the gaps' math takes them: the precisions Λₖ (K, D, D)
    and Λₖμₖ (K, D), with the patterns of gaps Factored so far by their number of gaps
    (per set of parameters, so per EM iteration; threads that factor the same pattern at
    once each keep their own, and one of them stays)."""

    precisions: np.ndarray
    linear: np.ndarray
    factored: dict[int, Factored] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, means: np.ndarray, prec_chol: np.ndarray, cov: Covariance) -> Marginal:
        precisions = cov.full_matrices(cov.precisions(prec_chol), *means.shape)
        return cls(precisions, np.einsum("kde,ke->kd", precisions, means))

    def gaps(self, filled: np.ndarray, gaps: np.ndarray, *, by_row: bool = False) -> Gaps:
        """The Gaps of a block: ``filled`` is the block with its gaps set to 0 (x̃),
        ``gaps`` its NaN mask. First g = (Λₖ(x̃ − μₖ))_m at every missing cell, feature by
        feature, then the groups.

        ``by_row``: each row's numbers computed in loops of its own (not BLAS's, whose
        order of sums may follow how many rows there are), so that they do not depend on
        the rows beside it (predictions, whose pieces may cut a tile anywhere)."""
        cells = Cells.of(gaps)
        values = np.take(filled, cells.rows, axis=0)
        gradients = np.empty((len(values), len(self.linear)))
        for feature, run in cells.runs():
            by_component = self.precisions[:, :, feature].T
            if by_row:
                gradients[run] = np.einsum("pd,dk->pk", values[run], by_component)
            else:
                np.matmul(values[run], by_component, out=gradients[run])
            gradients[run] -= self.linear[:, feature]
        ranked = RankedRows.of(gaps, np.bincount(cells.rows, minlength=len(gaps)))
        offsets = np.empty((len(ranked.rows), len(self.linear)))
        groups = [
            self._group(gaps, ranked, patterns, rows, cells.position, gradients, offsets[rows])
            for patterns, rows in ranked.by_count()
        ]
        laid = np.concatenate([group.cells.T.ravel() for group in groups])
        order = np.empty_like(laid)
        order[laid] = np.arange(len(laid))
        return Gaps(cells, values, ranked.rows, offsets, groups, order)

    def _group(
        self,
        gaps: np.ndarray,
        ranked: RankedRows,
        patterns: slice,
        rows: slice,
        position: np.ndarray,
        gradients: np.ndarray,
        offsets: np.ndarray,
    ) -> GapGroup:
        """The GapGroup of ``ranked``'s ``patterns`` (all of one count) and ``rows``,
        their ``offsets`` written in place."""
        starts = ranked.starts[patterns.start : patterns.stop + 1]
        block_rows = ranked.rows[rows]
        first_rows = ranked.rows[starts[:-1]]
        pattern_missing = np.nonzero(gaps[first_rows])[1].reshape(len(first_rows), -1)
        which = ranked.which[rows] - patterns.start
        factored, slots = self._factored(ranked.keys[patterns].tolist(), pattern_missing)
        at = slots[which]
        missing = pattern_missing[which]
        cells = position[block_rows[:, None], missing]
        factor = np.take(factored.factor, at, axis=2)
        whitened = _solve_lower(factor, np.take(gradients, cells.T, axis=0))  # h = L⁻¹g
        np.multiply(0.5, np.square(whitened).sum(axis=0), out=offsets)
        offsets += 0.5 * len(factor) * LOG_2PI - np.take(factored.half_log_det, at, axis=0)
        means_missing = -_solve_upper(factor, whitened)
        conditional = np.take(factored.conditional, slots, axis=2)
        run_starts = Patterns(starts[:-1] - starts[0], pattern_missing, conditional)
        return GapGroup(block_rows, missing, cells, offsets, means_missing, factor, run_starts)

    def _factored(self, keys: list, missing: np.ndarray) -> tuple[Factored, np.ndarray]:
        """The Factored patterns of j gaps, holding those of ``keys`` (their missing
        features ``missing``, (P, j)), and the slots of ``keys`` in it."""
        j = missing.shape[1]
        factored = self.factored.get(j)
        new = [i for i, key in enumerate(keys) if factored is None or key not in factored.slots]
        if new:
            added = Factored.of([keys[i] for i in new], missing[new], self.precisions)
            factored = added if factored is None else factored + added
            self.factored[j] = factored
        return factored, np.array([factored.slots[key] for key in keys], dtype=np.intp)


def _pattern_keys(gaps: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """One key per row that only rows with the same gaps share, sorting by number of
    gaps (``counts``) first: the number and the bits of the row's gaps in an integer
    (up to 57 features), else as bytes (big-endian number, then the packed bits)."""
    n_features = gaps.shape[1]
    if n_features <= 57:
        bits = gaps @ (np.uint64(1) << np.arange(n_features, dtype=np.uint64))
        return bits | (counts.astype(np.uint64) << np.uint64(57))
    number = counts.astype(">u2").view(np.uint8).reshape(-1, 2)
    packed = np.ascontiguousarray(np.hstack([number, np.packbits(gaps, axis=1)]))
    return packed.view(np.dtype((np.void, packed.shape[1])))[:, 0]


def _cholesky(matrices: np.ndarray) -> np.ndarray:
    """Lower Cholesky factors of small positive definite matrices held entrywise,
    (j, j, …), a column at a time over the whole stack."""
    factor = np.zeros_like(matrices)
    for c in range(len(matrices)):
        done = factor[c, :c]
        pivot = np.sqrt(matrices[c, c] - np.square(done).sum(axis=0))
        factor[c, c] = pivot
        below = matrices[c + 1 :, c] - (factor[c + 1 :, :c] * done).sum(axis=1)
        factor[c + 1 :, c] = below / pivot
    return factor


def _solve_lower(factor: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """L y = rhs for lower triangular L held entrywise (j, j, …) and right sides (j, …)."""
    out = np.empty(np.broadcast_shapes(factor.shape[1:], rhs.shape))
    for c in range(len(factor)):
        known = rhs[c] - (factor[c, :c] * out[:c]).sum(axis=0) if c else rhs[c]
        np.divide(known, factor[c, c], out=out[c])
    return out


def _solve_upper(factor: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Lᵀ x = rhs for lower triangular L held entrywise (j, j, …) and right sides (j, …)."""
    out = np.empty(np.broadcast_shapes(factor.shape[1:], rhs.shape))
    last = len(factor) - 1
    for c in reversed(range(len(factor))):
        known = rhs[c] - (factor[c + 1 :, c] * out[c + 1 :]).sum(axis=0) if c < last else rhs[c]
        np.divide(known, factor[c, c], out=out[c])
    return out


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
