"""The E-step through rows with missing features (NaN): their marginal densities and what
EM expects of them.

A row whose features o are observed and m missing has, under component k, the density of
what it has, N(x_o | μₖ,o, Σₖ,oo), and given that, its missing features are Gaussian with
mean E[x_m | x_o, k] and covariance Cov[x_m | x_o, k] (Ghahramani and Jordan 1994). The
core takes such a row as x̃, its gaps set to 0 (the data's centre, in the coordinates the
core works in), which the E-step's kernel takes like any complete row; the j missing
features then only need the precision Λ = Σₖ⁻¹ restricted to them. With
g = (Λ(x̃ − μₖ))_m, the gradient that x_m = 0 leaves in the quadratic form,

    E[x_m | x_o, k] = −Λ_mm⁻¹ g                  Cov[x_m | x_o, k] = Λ_mm⁻¹
    log N(x_o | μₖ,o, Σₖ,oo) = log N(x̃ | μₖ, Σₖ) + ½ gᵀΛ_mm⁻¹g − ½ log det Λ_mm + j/2 log 2π

so nothing of size |o| is factored: each pattern's Λ_mm once per set of parameters
(Factored), then for all rows with that many gaps the mean and the offset to add to the
kernel's log-density, in numpy operations over all of them and every component at once,
so a rare pattern costs no calls of its own. The M-step gets the kernel's statistics of
x̃ plus what the conditional means and covariances add (Gaps.moments), in the layout of
each structure (Covariance.second_from_matrices), so its M-step is the one complete rows
use.

Where a block's gaps lie (its Layout: cells, rows ranked by pattern) does not depend on
the parameters; EM passes over the same blocks every iteration, so the E-step keeps the
layouts of the blocks it has seen during a fit (LAYOUTS, at most MAX_LAYOUT_BYTES).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from gmmcli.core.covariance import LOG_2PI, Covariance
from gmmcli.errors import SingularCovarianceError

MAX_LAYOUT_BYTES = 1 << 26  # layouts kept for a fit's blocks (64 MB: 1M × 10 at 10%)


@dataclass
class Cells:
    """A block's missing cells feature by feature: ``rows`` (P,) the row of each, the
    cells of feature b at ``bounds[b]:bounds[b + 1]``, rows ascending."""

    rows: np.ndarray
    bounds: np.ndarray

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
    """A group's patterns of gaps: each one's missing features (P, j), Cov[x_m | x_o, k]
    once known (K, j, j, P), and where each one's run of rows starts (P,), while the
    rows are in runs."""

    missing: np.ndarray
    conditional: np.ndarray | None = None
    starts: np.ndarray | None = None

    def add_conditional(self, second: np.ndarray, weighted: np.ndarray, outer: np.ndarray) -> None:
        """Add to ``second`` (K, D, D), where both features are missing, the rows'
        ``outer`` (w·rₖ e eᵀ, (K, j, j, n)) and Σ w·rₖ Cov[x_m | x_o, k] (``weighted``
        = w·rₖ of the rows, (K, n)), summed pattern by pattern."""
        n_components, n_features = second.shape[:2]
        sums = np.add.reduceat(outer, self.starts, axis=3)
        sums += np.add.reduceat(weighted, self.starts, axis=1)[:, None, None] * self.conditional
        first, other = self.missing.T[:, None], self.missing.T[None, :]  # (j, j, P)
        size = n_features * n_features
        where = (first * n_features + other) + (np.arange(n_components) * size)[:, None, None, None]
        added = np.bincount(where.ravel(), sums.ravel(), n_components * size)
        second += added.reshape(second.shape)


@dataclass
class GroupLayout:
    """Where a group's rows lie in a block: ``rows`` (a run of the Layout's), each one's
    pattern ``which`` (into ``keys``, their _pattern_keys(), and the Patterns, whose
    runs the rows are in)."""

    rows: np.ndarray
    which: np.ndarray
    keys: np.ndarray
    patterns: Patterns


@dataclass
class Layout:
    """Where a block's gaps lie, whatever the parameters: its missing ``cells``, its
    ``rows`` with gaps sorted by their number of gaps, then pattern, in ``groups`` (a
    GroupLayout for each number of gaps, ascending, their rows one after the other),
    ``laid``: the cells of the groups' rows, group by group, each (j, n), ``order``:
    each cell's place in ``laid``, and ``place``: each row's place in ``rows`` plus 1, 0
    for a complete row."""

    cells: Cells
    rows: np.ndarray
    groups: list[GroupLayout]
    laid: np.ndarray
    order: np.ndarray
    place: np.ndarray

    @classmethod
    def of(cls, gaps: np.ndarray) -> Layout:
        """The Layout of a block's NaN mask ``gaps``."""
        n_rows, n_features = gaps.shape
        features, rows = np.divmod(np.flatnonzero(gaps.T.ravel()), n_rows)
        cells = Cells(rows, np.searchsorted(features, np.arange(n_features + 1)))
        position = np.empty(gaps.shape, dtype=np.intp)  # each cell's place, where missing
        position.ravel()[rows * n_features + features] = np.arange(len(rows))
        ranked = RankedRows.of(gaps, np.bincount(rows, minlength=n_rows))
        groups, laid = [], []
        for patterns, run in ranked.by_count():
            starts = ranked.starts[patterns.start : patterns.stop + 1]
            first_rows = ranked.rows[starts[:-1]]
            missing = np.nonzero(gaps[first_rows])[1].reshape(len(first_rows), -1).copy()
            which = ranked.which[run] - patterns.start
            pattern_runs = Patterns(missing, starts=starts[:-1] - starts[0])
            groups.append(GroupLayout(ranked.rows[run], which, ranked.keys[patterns], pattern_runs))
            laid.append(position[ranked.rows[run, None], missing[which]].T.ravel())
        laid = np.concatenate(laid)
        order = np.empty_like(laid)
        order[laid] = np.arange(len(laid))
        place = np.zeros(n_rows, dtype=np.intp)
        place[ranked.rows] = np.arange(1, len(ranked.rows) + 1)
        return cls(cells, ranked.rows, groups, laid, order, place)

    @property
    def nbytes(self) -> int:
        """The bytes of its arrays (views of one another counted each time)."""
        arrays = [self.cells.rows, self.cells.bounds, self.rows, self.laid, self.order, self.place]
        for group in self.groups:
            arrays += [group.which, group.keys, group.patterns.missing, group.patterns.starts]
        return sum(array.nbytes for array in arrays)


@dataclass
class Kept:
    """The layouts kept for EM run ``run``, by key, and their bytes with the keys'."""

    run: int
    layouts: dict[tuple, Layout] = field(default_factory=dict)
    size: int = 0


class LayoutCache:
    """Layouts of the blocks an EM run has met, by their gaps, up to ``max_bytes`` with
    their keys (then no more are kept: EM passes over the blocks in the same order every
    iteration, so the first ones kept are those met again). One run's at a time: a block
    of another run (Prepared.run) replaces them. No lock (a child process copied while
    one was held would wait forever): threads that race find a layout again or miscount
    a few bytes, no worse, as a layout is only ever found by its block's whole mask."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.kept = Kept(0)

    def get(self, gaps: np.ndarray, run: int) -> Layout:
        """The Layout of a block's NaN mask ``gaps`` in EM run ``run``."""
        kept = self.kept
        if kept.run != run:
            kept = self.kept = Kept(run)
        key = (gaps.shape, gaps.tobytes())
        layout = kept.layouts.get(key)
        if layout is None:
            layout = Layout.of(gaps)
            added = layout.nbytes + len(key[1])
            if kept.size + added <= self.max_bytes:
                kept.layouts[key] = layout
                kept.size += added
        return layout

    def forget(self, run: int) -> None:
        """Drop run ``run``'s layouts (not those of a run that came since)."""
        if self.kept.run == run:
            self.clear()

    def clear(self) -> None:
        """Drop every layout kept."""
        self.kept = Kept(0)


LAYOUTS = LayoutCache(MAX_LAYOUT_BYTES)


@dataclass
class GapGroup:
    """Rows of a block that miss the same number j of features (whichever), under every
    component: each pattern's Λ_mm factored once per set of parameters, the rest row by
    row in numpy operations over all of them at once, each small vector or matrix of a
    row held entrywise, rows last ((K, j, n), (K, j, j, n))."""

    rows: np.ndarray  # (n,) their positions in the block
    which: np.ndarray  # (n,) each row's pattern in ``patterns``
    patterns: Patterns
    offsets: np.ndarray  # (K, n) log N(x_o | μₖ,o, Σₖ,oo) - log N(x̃ | μₖ, Σₖ)
    means_missing: np.ndarray  # (K, j, n) E[x_m | x_o, k]
    slots: np.ndarray  # (n,) each row's pattern in ``factored``
    factored: Factored

    @property
    def missing(self) -> np.ndarray:
        """Each row's missing features, ascending, (n, j)."""
        return self.patterns.missing[self.which]

    def taken(self, keep: np.ndarray) -> GapGroup:
        """The group's rows where ``keep`` (n,) is true (no longer in pattern runs)."""
        return GapGroup(
            self.rows[keep],
            self.which[keep],
            dataclasses.replace(self.patterns, starts=None),
            self.offsets[:, keep],
            self.means_missing[:, :, keep],
            self.slots[keep],
            self.factored,
        )

    def draws(self, resp: np.ndarray, uniforms: np.ndarray, normals: np.ndarray) -> np.ndarray:
        """Draws of the missing features from the conditional mixture, shape (n, N, j):
        for each row and draw, component k where its uniform (n, N) falls among the
        cumulative p(k | x_o) (``resp``, (K, n)), then E[x_m | x_o, k] + U z for its
        standard normals z (``normals``, (n, N, j)), U = L⁻ᵀ for L Lᵀ = Λ_mm, so that U z
        has covariance Λ_mm⁻¹ = Cov[x_m | x_o, k]."""
        cumulative = np.cumsum(resp, axis=0)
        chosen = (cumulative[:, :, None] <= uniforms[None]).sum(axis=0)  # (n, N)
        chosen = np.minimum(chosen, len(resp) - 1)  # a last sum rounded below 1
        rows = np.arange(len(self.rows))[:, None]
        means = self.means_missing[chosen, :, rows]  # (n, N, j)
        factor = self.factored.draw_factor[chosen, :, :, self.slots[:, None]]  # (n, N, j, j)
        return means + np.einsum("nscd,nsd->nsc", factor, normals)


@dataclass
class Gaps:
    """A block's rows with gaps under one set of parameters: its Layout, the block's
    rows at its cells (``values``: x̃, (P, D)), the rows' ``offsets`` (K, 1 + n: zeros,
    then the rows in the layout's order) and ``groups``, a GapGroup for each of the
    layout's."""

    layout: Layout
    values: np.ndarray
    offsets: np.ndarray
    groups: list[GapGroup]

    @property
    def rows(self) -> np.ndarray:
        return self.layout.rows

    def row_offsets(self) -> np.ndarray:
        """The offsets of all the block's rows, 0 for complete ones, (K, n_rows)."""
        return np.take(self.offsets, self.layout.place, axis=1)

    def moments(self, weighted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """What the rows with gaps add to Σ w·r x and Σ w·r x xᵀ of every component beyond
        what their x̃ gives, shapes (K, D) and (K, D, D); ``weighted`` is w·rₖ of the
        block's rows, (K, n_rows).

        Filled with its conditional means, a row is x̃ + e (e: E[x_m | x_o, k] in its gaps,
        0 elsewhere), and E[x xᵀ | x_o, k] = x̃x̃ᵀ + x̃eᵀ + ex̃ᵀ + eeᵀ + Cov[x_m | x_o, k]:
        where both features are missing, eeᵀ and Cov pattern by pattern, then w·r e at
        every missing cell and feature by feature x̃eᵀ as one product."""
        n_components, n_features = len(weighted), self.values.shape[1]
        row_weights = np.take(weighted, self.rows, axis=1)
        scaled_means = np.empty((n_components, len(self.values)))  # w·rₖ e, as Layout.laid
        second = np.zeros((n_components, n_features, n_features))
        row, cell = 0, 0
        for group in self.groups:
            j, n_rows = group.means_missing.shape[1:]
            group_weights = row_weights[:, row : row + n_rows]
            scaled = scaled_means[:, cell : cell + j * n_rows].reshape(n_components, j, n_rows)
            np.multiply(group_weights[:, None], group.means_missing, out=scaled)
            outer = scaled[:, :, None] * group.means_missing[:, None]
            group.patterns.add_conditional(second, group_weights, outer)
            row, cell = row + n_rows, cell + j * n_rows
        at_cells = np.take(scaled_means, self.layout.order, axis=1)
        runs = list(self.layout.cells.runs())
        sx = np.zeros((n_components, n_features))
        sx[:, [feature for feature, _ in runs]] = np.add.reduceat(
            at_cells, [run.start for _, run in runs], axis=1
        )
        for feature, run in runs:
            cross = at_cells[:, run] @ self.values[run]  # (K, D): Σ w·rₖ e x̃ᵀ
            second[:, :, feature] += cross
            second[:, feature, :] += cross
        return sx, second


@dataclass
class Factored:
    """Patterns of j gaps under one set of parameters: each one's ``slots`` (by its key,
    _pattern_keys()) in Cov[x_m | x_o, k] = Λ_mm⁻¹ (``conditional``) and U = L⁻ᵀ
    (``draw_factor``, U Uᵀ = Λ_mm⁻¹, for L Lᵀ = Λ_mm), both (K, j, j, S), and
    ``constants`` j/2 log 2π − ½ log det Λ_mm (K, S)."""

    slots: dict
    conditional: np.ndarray
    draw_factor: np.ndarray
    constants: np.ndarray

    @classmethod
    def of(cls, keys: list, missing: np.ndarray, precisions: np.ndarray) -> Factored:
        """The patterns of ``keys``, their missing features ``missing`` (S, j), under
        ``precisions`` (K, D, D)."""
        j = missing.shape[1]
        blocks = precisions[:, missing[:, :, None], missing[:, None, :]]  # (K, S, j, j)
        try:
            factor = np.linalg.cholesky(blocks)
        except np.linalg.LinAlgError:  # Λ_mm of a positive definite Λ lost to rounding
            bad = next(k for k, some in enumerate(blocks) if not _positive_definite(some))
            raise SingularCovarianceError(bad) from None
        draw_factor = np.swapaxes(np.linalg.solve(factor, np.eye(j)), 2, 3)  # L⁻ᵀ
        conditional = draw_factor @ np.swapaxes(draw_factor, 2, 3)
        half_log_det = np.log(np.diagonal(factor, axis1=2, axis2=3)).sum(axis=2)
        return cls(
            {key: slot for slot, key in enumerate(keys)},
            np.moveaxis(conditional, 1, 3),
            np.moveaxis(draw_factor, 1, 3),
            0.5 * j * LOG_2PI - half_log_det,
        )

    def __add__(self, other: Factored) -> Factored:
        shift = len(self.slots)
        slots = self.slots | {key: slot + shift for key, slot in other.slots.items()}
        return Factored(
            slots,
            *(
                np.concatenate([mine, theirs], axis=-1)
                for mine, theirs in [
                    (self.conditional, other.conditional),
                    (self.draw_factor, other.draw_factor),
                    (self.constants, other.constants),
                ]
            ),
        )


@dataclass
class Marginal:
    """A mixture's parameters as the gaps' math takes them: the precisions Λₖ (K, D, D)
    and Λₖμₖ (K, D), with the patterns of gaps Factored so far by their number of gaps
    (per set of parameters, so per EM iteration; threads that add patterns of one number
    of gaps at once each make a table, one of which stays: the others' patterns are
    factored again when met)."""

    precisions: np.ndarray
    linear: np.ndarray
    factored: dict[int, Factored] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, means: np.ndarray, prec_chol: np.ndarray, cov: Covariance) -> Marginal:
        precisions = cov.full_matrices(cov.precisions(prec_chol), *means.shape)
        return cls(precisions, np.einsum("kde,ke->kd", precisions, means))

    def gaps(self, filled: np.ndarray, layout: Layout, *, by_row: bool = False) -> Gaps:
        """The Gaps of a block: ``filled`` is the block with its gaps set to 0 (x̃),
        ``layout`` where they lie. First g = (Λₖ(x̃ − μₖ))_m at every missing cell, feature
        by feature, then laid out group by group, each group's numbers from them.

        ``by_row``: each row's numbers computed in loops of its own (not BLAS's, whose
        order of sums may follow how many rows there are), so that they do not depend on
        the rows beside it (predictions, whose pieces may cut a tile anywhere)."""
        values = np.take(filled, layout.cells.rows, axis=0)
        gradients = np.empty((len(values), len(self.linear)))
        for feature, run in layout.cells.runs():
            by_component = self.precisions[:, :, feature].T
            if by_row:
                gradients[run] = np.einsum("pd,dk->pk", values[run], by_component)
            else:
                np.matmul(values[run], by_component, out=gradients[run])
            gradients[run] -= self.linear[:, feature]
        laid_gradients = np.take(gradients, layout.laid, axis=0).T  # (K, P)
        offsets = np.zeros((len(self.linear), 1 + len(layout.rows)))
        groups, row, cell = [], 1, 0
        for group in layout.groups:
            n_rows, j = len(group.rows), group.patterns.missing.shape[1]
            g = laid_gradients[:, cell : cell + j * n_rows].reshape(-1, j, n_rows)
            groups.append(self._group(group, g, offsets[:, row : row + n_rows]))
            row, cell = row + n_rows, cell + j * n_rows
        return Gaps(layout, values, offsets, groups)

    def _group(self, layout: GroupLayout, g: np.ndarray, offsets: np.ndarray) -> GapGroup:
        """The GapGroup of ``layout``'s rows from their gradients ``g`` (K, j, n), their
        ``offsets`` written in place: E[x_m | x_o, k] = −Λ_mm⁻¹g and the offset
        ½ gᵀΛ_mm⁻¹g + j/2 log 2π − ½ log det Λ_mm."""
        factored, slots = self._factored(layout.keys.tolist(), layout.patterns.missing)
        at = slots[layout.which]
        conditional = np.take(factored.conditional, at, axis=3)  # (K, j, j, n)
        means_missing = np.einsum("kcdn,kdn->kcn", conditional, g)
        np.negative(means_missing, out=means_missing)
        np.einsum("kjn,kjn->kn", g, means_missing, out=offsets)
        offsets *= -0.5
        offsets += np.take(factored.constants, at, axis=1)
        patterns = dataclasses.replace(
            layout.patterns, conditional=np.take(factored.conditional, slots, axis=3)
        )
        return GapGroup(layout.rows, layout.which, patterns, offsets, means_missing, at, factored)

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


def _positive_definite(matrices: np.ndarray) -> bool:
    try:
        np.linalg.cholesky(matrices)
    except np.linalg.LinAlgError:
        return False
    return True


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
