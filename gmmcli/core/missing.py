"""Rows with missing features (NaN): their marginal densities and what EM expects of them.

A row whose features o are observed and m missing has, under component k, the density of
what it has, N(x_o | μₖ,o, Σₖ,oo), and given that, its missing features are Gaussian with
mean E[x_m | x_o, k] and covariance Cov[x_m | x_o, k] (Ghahramani and Jordan 1994). All
three come from the precision Λ = Σₖ⁻¹ restricted to the j missing features: with d = x − μₖ
(its gaps set to 0) and g = (Λ d)_m,

    E[x_m | x_o, k] = μₖ,m − Λ_mm⁻¹ g            Cov[x_m | x_o, k] = Λ_mm⁻¹
    d_oᵀ Σₖ,oo⁻¹ d_o = dᵀ Λ d − gᵀ Λ_mm⁻¹ g       log det Σₖ,oo = log det Σₖ + log det Λ_mm

so nothing of size |o| is factored row by row. A pattern of gaps that enough rows of a
block share (MIN_PATTERN_ROWS) is factored once per set of parameters in the covariance
form (Pattern: the whitening of Σₖ,oo and the regressions of x_m on x_o, side by side for
all components, each then one product over those rows); the other rows are taken together
by their number of gaps j, whichever features those are: the j × j Cholesky factors and
solves of the precision form run as numpy operations over all of them and every
component at once, one column at a time, so a rare pattern costs no calls of its own.
The M-step gets the expected statistics: the rows filled with their conditional means,
and the conditional covariances added to the second moments, in the layout of each
structure (Covariance.second_from_matrices), so its M-step is the one complete rows use.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from gmmcli.core.covariance import LOG_2PI, Covariance
from gmmcli.errors import SingularCovarianceError

COMPLETE_ROWS_PER_VALUE = 10
MIN_PATTERN_ROWS = 16  # rows of a block with one pattern of gaps that share its factors


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
class CountGroup:
    """Rows of a block that miss the same number j of features (whichever), under every
    component: Λ_mm of each row's pattern factored once per set of parameters, the rest
    row by row in numpy operations over all of them; the conditional means and draws
    predictions take (whose rows all come in CountGroups)."""

    rows: np.ndarray  # (n,) their positions in the block
    missing: np.ndarray  # (n, j) each row's missing features, ascending
    log_joint: np.ndarray  # (K, n) log πₖ + log N(x_o | μₖ,o, Σₖ,oo)
    filled: np.ndarray  # (K, n, D) the rows, their gaps filled with E[x_m | x_o, k]
    factor: np.ndarray  # (K, n, j, j) lower Cholesky factors of Λ_mm
    conditional: np.ndarray  # (K, n, j, j) Cov[x_m | x_o, k] = Λ_mm⁻¹

    def conditional_covariances(self) -> np.ndarray:
        """Cov[x_m | x_o, k], shape (K, n, j, j)."""
        return self.conditional

    def taken(self, keep: np.ndarray) -> CountGroup:
        """The group's rows where ``keep`` (n,) is true."""
        return CountGroup(
            self.rows[keep],
            self.missing[keep],
            self.log_joint[:, keep],
            self.filled[:, keep],
            self.factor[:, keep],
            self.conditional[:, keep],
        )

    def conditional_means(self) -> np.ndarray:
        """E[x_m | x_o, k], shape (K, n, j)."""
        return np.take_along_axis(self.filled, self.missing[None], axis=2)

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
        means = np.moveaxis(self.conditional_means(), 0, 1)[rows, chosen]  # (n, N, j)
        factor = np.moveaxis(self.factor, 0, 1)[rows, chosen]  # (n, N, j, j)
        return means + _solve_upper(factor, normals[..., None])[..., 0]

    def add_spread(self, second: np.ndarray, weighted: np.ndarray) -> None:
        """Add Σ w·rₖ Cov[x_m | x_o, k] to ``second`` (K, D, D) where both features are
        missing; ``weighted`` = w·rₖ of these rows, (K, n)."""
        n_components, n_features = second.shape[:2]
        spread = weighted[:, :, None, None] * self.conditional_covariances()
        cells = self.missing[:, :, None] * n_features + self.missing[:, None, :]
        size = n_features * n_features
        where = (np.arange(n_components)[:, None] * size + cells.reshape(1, -1)).ravel()
        second += np.bincount(where, spread.ravel(), n_components * size).reshape(second.shape)


@dataclass
class Pattern:
    """One pattern of gaps (observed features o, missing m) under every component,
    factored once per set of parameters: Σₖ,oo = LLᵀ, its whitening Y = L⁻¹ side by side
    for all components (z = Y(x_o − μₖ,o), log N = cₖ − |z|²/2), the regressions of x_m on
    x_o (E[x_m | x_o, k] = x_o Bₖ + bₖ) and Cov[x_m | x_o, k]."""

    observed: np.ndarray
    missing: np.ndarray
    maps: np.ndarray  # (|o|, K·|o| + K·j): the whitenings Yₖᵀ, then the regressions Bₖ
    intercepts: np.ndarray  # (K·|o| + K·j,): −μₖ,o Yₖᵀ, then bₖ
    constants: np.ndarray  # (K,) log πₖ + log det Y - |o|/2 log 2π
    conditional: np.ndarray  # (K, j, j)

    @classmethod
    def of(cls, marginal: Marginal, gaps: np.ndarray) -> Pattern:
        o, m = np.flatnonzero(~gaps), np.flatnonzero(gaps)
        covariances, means = marginal.covariances, marginal.means
        factor = _cholesky_or_singular(covariances[:, o[:, None], o])
        inverse_factor = np.linalg.solve(factor, np.eye(len(o)))  # Y = L⁻¹: Σ_oo⁻¹ = YᵀY
        half = inverse_factor @ covariances[:, o[:, None], m]  # Y Σ_om, (K, |o|, j)
        whitening = np.swapaxes(inverse_factor, 1, 2)  # z = x_o Yᵀ
        regressions = whitening @ half  # Σ_oo⁻¹ Σ_om = Yᵀ Y Σ_om
        log_det = np.log(np.diagonal(inverse_factor, axis1=1, axis2=2)).sum(axis=1)
        shifts = -np.einsum("ko,koq->kq", means[:, o], whitening).ravel()
        offsets = (means[:, m] - np.einsum("ko,koj->kj", means[:, o], regressions)).ravel()
        return cls(
            o,
            m,
            np.hstack([*whitening, *regressions]),
            np.concatenate([shifts, offsets]),
            marginal.log_weights + log_det - 0.5 * len(o) * LOG_2PI,
            covariances[:, m[:, None], m] - np.swapaxes(half, 1, 2) @ half,
        )


@dataclass
class PatternGroup:
    """Rows of a block with one Pattern of gaps, at least MIN_PATTERN_ROWS of them: each
    quantity a product of their observed values by the pattern's matrices."""

    rows: np.ndarray  # (n,) their positions in the block
    values: np.ndarray  # (n, D) the rows, NaN in their gaps
    pattern: Pattern
    log_joint: np.ndarray  # (K, n)
    means_missing: np.ndarray  # (n, K, j): E[x_m | x_o, k]

    @classmethod
    def of(cls, X: np.ndarray, rows: np.ndarray, pattern: Pattern) -> PatternGroup:
        values = X[rows]
        n_rows, n_components = len(rows), len(pattern.constants)
        mapped = values[:, pattern.observed] @ pattern.maps + pattern.intercepts
        whitened = n_components * len(pattern.observed)
        z = mapped[:, :whitened].reshape(n_rows, n_components, -1)
        log_joint = pattern.constants[:, None] - 0.5 * np.square(z).sum(axis=2).T
        means_missing = mapped[:, whitened:].reshape(n_rows, n_components, -1)
        return cls(rows, values, pattern, log_joint, means_missing)

    @property
    def missing(self) -> np.ndarray:
        return np.broadcast_to(self.pattern.missing, (len(self.rows), len(self.pattern.missing)))

    @property
    def filled(self) -> np.ndarray:
        """(K, n, D): the rows, their gaps filled with E[x_m | x_o, k]."""
        filled = np.repeat(self.values[None], len(self.log_joint), axis=0)
        filled[:, :, self.pattern.missing] = np.swapaxes(self.means_missing, 0, 1)
        return filled

    def conditional_covariances(self) -> np.ndarray:
        """Cov[x_m | x_o, k], shape (K, n, j, j): the pattern's, for every row."""
        conditional = self.pattern.conditional
        shape = (len(conditional), len(self.rows), *conditional.shape[1:])
        return np.broadcast_to(conditional[:, None], shape)

    def add_spread(self, second: np.ndarray, weighted: np.ndarray) -> None:
        """CountGroup.add_spread(): the pattern's one covariance, weighted by the total."""
        m = self.pattern.missing
        second[:, m[:, None], m] += weighted.sum(axis=1)[:, None, None] * self.pattern.conditional


@dataclass
class Marginal:
    """A mixture's parameters as the gaps' math takes them: means (K, D), covariances and
    precisions (K, D, D), log det of each precision's Cholesky factor and log πₖ (K,);
    with the Patterns factored so far (per set of parameters, so per EM iteration)."""

    means: np.ndarray
    covariances: np.ndarray
    precisions: np.ndarray
    log_det_factor: np.ndarray
    log_weights: np.ndarray
    patterns: dict[bytes, Pattern] = field(default_factory=dict, repr=False)
    blocks: dict[bytes, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, means, prec_chol, log_weights, cov: Covariance) -> Marginal:
        shape = means.shape
        covariances = cov.covariances_from_precision_cholesky(prec_chol)
        return cls(
            means,
            cov.full_matrices(covariances, *shape),
            cov.full_matrices(cov.precisions(prec_chol), *shape),
            cov.log_det(prec_chol, shape[1]),
            log_weights,
        )

    def groups(
        self, X: np.ndarray, gaps: np.ndarray, *, shared: bool = True
    ) -> Iterator[PatternGroup | CountGroup]:
        """The rows of ``X`` with gaps (``gaps``: X's NaN mask) in groups, in a fixed
        order: a PatternGroup for each pattern of gaps that at least MIN_PATTERN_ROWS rows
        share (patterns in ascending order of their bits), then a CountGroup for each
        number of gaps of the other rows (ascending). Rows without gaps are left out.

        Without ``shared`` every row is in a CountGroup, whose numbers for a row do not
        depend on the rows beside it (predictions, whose pieces may cut a tile anywhere);
        the E-step's blocks are fixed, so it may share factors between rows."""
        if not shared:
            yield from self._by_count(X, gaps, np.flatnonzero(gaps.any(axis=1)), by_row=True)
            return
        gapped = np.flatnonzero(gaps.any(axis=1))
        keys, inverse, counts = np.unique(
            _pattern_keys(gaps[gapped]), return_inverse=True, return_counts=True
        )
        for index in np.flatnonzero(counts >= MIN_PATTERN_ROWS):
            rows = gapped[inverse == index]
            key = gaps[rows[0]].tobytes()
            if key not in self.patterns:
                self.patterns[key] = Pattern.of(self, gaps[rows[0]])
            yield PatternGroup.of(X, rows, self.patterns[key])
        yield from self._by_count(X, gaps, gapped[counts[inverse] < MIN_PATTERN_ROWS])

    def _by_count(
        self, X: np.ndarray, gaps: np.ndarray, rest: np.ndarray, by_row: bool = False
    ) -> Iterator[CountGroup]:
        per_row = gaps[rest].sum(axis=1)
        for j in np.unique(per_row):
            rows = rest[per_row == j]
            yield self._count_group(X[rows], gaps[rows], rows, int(j), by_row)

    def _count_group(
        self, X: np.ndarray, gaps: np.ndarray, rows: np.ndarray, j: int, by_row: bool
    ) -> CountGroup:
        """The CountGroup of rows with j gaps; ``by_row``: each row's numbers computed in
        loops of its own (not BLAS's, whose order of sums may follow how many rows there
        are), so that they do not depend on the rows beside it."""
        n_rows, n_features = X.shape
        missing = np.nonzero(gaps)[1].reshape(n_rows, j)
        deviations = np.where(gaps, 0.0, X[None] - self.means[:, None, :])
        product = functools.partial(np.einsum, "knd,kde->kne") if by_row else np.matmul
        times_precision = product(deviations, self.precisions)  # (Λd)ᵀ, Λ symmetric
        g = np.take_along_axis(times_precision, missing[None], axis=2)
        _, first, which = np.unique(_pattern_keys(gaps), return_index=True, return_inverse=True)
        factors, conditionals = self._precision_blocks(gaps[first], missing[first])
        factor, conditional = factors[:, which], conditionals[:, which]
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
        return CountGroup(rows, missing, log_joint, filled, factor, conditional)

    def _precision_blocks(
        self, gaps: np.ndarray, missing: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """For each pattern of gaps (rows of ``gaps``, their missing features ``missing``),
        the Cholesky factor of Λ_mm and its inverse Cov[x_m | x_o, k] for every component,
        shapes (K, P, j, j): factored once per set of parameters (``blocks``)."""
        keys = [row.tobytes() for row in gaps]
        new = [i for i, key in enumerate(keys) if key not in self.blocks]
        if new:
            cells = missing[new]
            factor = _cholesky(self.precisions[:, cells[:, :, None], cells[:, None, :]])
            identity = np.broadcast_to(np.eye(missing.shape[1]), factor.shape)
            conditional = _solve_upper(factor, _solve_lower(factor, identity))
            for at, i in enumerate(new):
                self.blocks[keys[i]] = factor[:, at], conditional[:, at]
        kept = [self.blocks[key] for key in keys]
        return np.stack([f for f, _ in kept], axis=1), np.stack([c for _, c in kept], axis=1)


def expected_moments(
    groups: list[PatternGroup | CountGroup], weighted: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(Σ w·r, Σ w·r E[x | x_o], Σ w·r E[x xᵀ | x_o]) over the rows of ``groups`` for every
    component, shapes (K,), (K, D), (K, D, D); ``weighted`` is their w·rₖ, (K, n), the
    rows in the groups' order. One product over all the rows (their gaps filled with
    the conditional means), then each group's conditional covariances added."""
    filled = np.concatenate([group.filled for group in groups], axis=1)
    scaled = weighted[:, :, None] * filled
    second = np.swapaxes(filled, 1, 2) @ scaled
    start = 0
    for group in groups:
        stop = start + len(group.rows)
        group.add_spread(second, weighted[:, start:stop])
        start = stop
    return weighted.sum(axis=1), scaled.sum(axis=1), second


def _cholesky_or_singular(matrices: np.ndarray) -> np.ndarray:
    """np.linalg.cholesky of (K, j, j) blocks of the components' matrices, a component
    whose block is not positive definite a SingularCovarianceError naming it."""
    try:
        return np.linalg.cholesky(matrices)
    except np.linalg.LinAlgError:
        bad = next(k for k, block in enumerate(matrices) if not _positive_definite(block))
        raise SingularCovarianceError(bad) from None


def _positive_definite(matrix: np.ndarray) -> bool:
    try:
        np.linalg.cholesky(matrix)
    except np.linalg.LinAlgError:
        return False
    return True


def _pattern_keys(gaps: np.ndarray) -> np.ndarray:
    """One sortable key per row that only rows with the same gaps share: the bits of the
    row's gaps as an integer (up to 63 features), else its packed bytes."""
    if gaps.shape[1] < 64:
        return gaps @ (np.uint64(1) << np.arange(gaps.shape[1], dtype=np.uint64))
    packed = np.ascontiguousarray(np.packbits(gaps, axis=1))
    return packed.view(np.dtype((np.void, packed.shape[1])))[:, 0]


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
