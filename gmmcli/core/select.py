"""Model selection: fit a grid of (K, covariance type) and rank it by a criterion.

Conventions (scikit-learn's sign, lower is better): BIC = -2 log L + p log n,
AIC = -2 log L + 2p, ICL = BIC - 2 Σ wₙ log maxₖ p(k | xₙ) (mclust's ICL, Biernacki et al.),
n the total weight. mclust reports 2 log L - p log n (higher is better): mclust's BIC is
minus ours. The cross-validated criterion is the held-out mean log-likelihood per unit of
weight, where higher is better. Failed and degenerate grid points are rows with a reason,
never winners.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import TypeVar

import numpy as np

from gmmcli.core.em import SERIAL, Block, PartFunction, Reducer, RowSource
from gmmcli.core.fit import fit_rows, summarise
from gmmcli.core.init import HcTree, check_hc_rows, hc_tree
from gmmcli.core.missing import CompleteRows
from gmmcli.core.model import GaussianMixture
from gmmcli.core.options import SELECT_DEFAULTS, FitOptions, Grid
from gmmcli.core.structures import get_covariance
from gmmcli.errors import DataError, GMMError, UserError

HIGHER_IS_BETTER = {"cv"}


@dataclass
class GridPoint:
    """One row of the selection table."""

    n_components: int
    covariance_type: str
    model: str  # mclust's name of the structure (E or V for one feature)
    n_parameters: int | None = None
    log_likelihood: float | None = None
    bic: float | None = None
    aic: float | None = None
    icl: float | None = None
    cv: float | None = None
    converged: bool | None = None
    n_iter: int | None = None
    degenerate: bool | None = None
    status: str = "ok"
    seconds: float = 0.0
    criterion: float | None = None
    best: bool = False
    failure: GMMError | None = field(default=None, repr=False)  # why it failed, if it did

    @property
    def eligible(self) -> bool:
        return self.status == "ok"

    def described(self, name: Callable[[str], str]) -> GridPoint:
        """The point with its failure described by ``name`` (GMMError.describe)."""
        if self.failure is None:
            return self
        status = f"failed: {self.failure.describe(name)}"
        return dataclasses.replace(self, status=status)


def icl(model: GaussianMixture, rows: RowSource, reducer: Reducer = SERIAL) -> float:
    """BIC plus twice the entropy of the hard (most probable) classification (one pass)."""
    hard = reducer.sum(rows, lambda X, w: w @ np.log(model.predict_proba(X).max(axis=1)))
    return model.fit_info.bic - 2.0 * float(hard)


def fold_labels(
    weights: np.ndarray, n_folds: int, seed: int, positive_before: int = 0
) -> np.ndarray:
    """Seeded balanced folds of the rows with positive weight (-1: no fold), block by block.

    The i-th positive row overall (``positive_before`` of them precede this block) goes to
    fold πⱼ(i mod n_folds), j = i // n_folds, where each πⱼ is the order of n_folds uniforms
    drawn for group j; the labels of a row do not depend on how the rows are cut in blocks.
    """
    labels = np.full(len(weights), -1)
    positive = np.flatnonzero(weights > 0)
    first, last = positive_before, positive_before + len(positive)
    first_group, end_group = first // n_folds, -(-last // n_folds)
    bits = np.random.PCG64(np.random.SeedSequence(seed).spawn(1)[0])
    bits.advance(first_group * n_folds)
    uniforms = np.random.Generator(bits).random((end_group - first_group, n_folds))
    order = np.argsort(uniforms, axis=1).ravel()
    offset = first_group * n_folds
    labels[positive] = order[first - offset : last - offset]
    return labels


@dataclass
class FoldRows:
    """Rows with the weights outside one fold (``test``) or inside it (train) set to zero:
    a zero weight counts as a deleted row, so this is the fold's split, in passes."""

    rows: RowSource
    fold: int
    n_folds: int
    seed: int
    positive_before: list[int]  # rows of positive weight before each part
    test: bool = False
    # Each block's labels, drawn once and kept for every pass and fold, in this process:
    # (part, positive rows before the block, block length) -> labels (int16).
    labels: dict = dataclasses.field(default_factory=dict)

    n_features = property(lambda self: self.rows.n_features)
    n_parts = property(lambda self: self.rows.n_parts)
    centre = property(lambda self: self.rows.centre)
    block_rows = property(lambda self: self.rows.block_rows)

    def centred(self, centre: np.ndarray, dtype: type = np.float64) -> FoldRows:
        return dataclasses.replace(self, rows=self.rows.centred(centre, dtype))

    def map_parts(self, function: PartFunction) -> list:
        fold, n_folds, seed, test = self.fold, self.n_folds, self.seed, self.test
        positive_before, kept = self.positive_before, self.labels

        def in_fold(blocks: Iterable[Block], index: int, first_row: int):
            def masked() -> Iterator[Block]:
                before = positive_before[index]
                for X, weights in blocks:
                    key = (index, before, len(weights))
                    if key not in kept:
                        kept[key] = fold_labels(weights, n_folds, seed, before).astype(np.int16)
                    inside = kept[key] == fold
                    before += int(np.count_nonzero(weights > 0))
                    yield X, np.where(inside if test else ~inside, weights, 0.0)

            return function(masked(), index, first_row)

        return self.rows.map_parts(in_fold)


def positive_counts_before(rows: RowSource) -> list[int]:
    """For each part, the rows of positive weight in the parts before it (one pass)."""

    def count(blocks: Iterable[Block], index: int, first_row: int) -> int:
        return sum(int(np.count_nonzero(weights > 0)) for _, weights in blocks)

    counts = rows.map_parts(count)
    return np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(int).tolist()


HcTrees = dict[int, HcTree]


@dataclass(frozen=True)
class Point:
    """One grid point to fit: the rows, K, the options (with its covariance type), the
    folds (their count and each part's positive rows before it), the reducer, and the
    hierarchical trees of its hc starts, by restart, for the rows and for each training
    fold (hc_trees())."""

    rows: RowSource
    n_components: int
    options: FitOptions
    model: str
    folds: tuple[int, list[int]] | None = None
    reducer: Reducer = SERIAL
    trees: HcTrees | None = field(default=None, repr=False)
    fold_trees: list[HcTrees] | None = field(default=None, repr=False)

    @property
    def key(self) -> tuple[int, str]:
        """(K, covariance type): the point's place in the grid."""
        return self.n_components, self.options.covariance_type

    def fit(self, rows: RowSource, trees: HcTrees | None = None) -> GaussianMixture:
        return fit_rows(rows, self.n_components, self.options, reducer=self.reducer, hc_trees=trees)


def hc_trees(rows: RowSource, options: FitOptions, reducer: Reducer = SERIAL) -> HcTrees:
    """The hierarchical trees of the restarts that start from hc, built once for every
    point of a grid: restart i's as fit_rows() would build it (on the rows about their
    centre, drawing from ``SeedSequence(seed).spawn(n_init)[i]``), so that a point
    starts as the same fit on its own would. When the rows are few enough to be clustered
    whole, the tree does not depend on the draws and one serves every restart. Rows with
    no positive weight get none (every point fails on them anyway).
    """
    restarts = [i for i in range(options.n_init) if options.init_for(i) == "hc"]
    if not restarts:
        return {}
    try:
        summary = summarise(rows, reducer)
    except DataError:
        return {}
    centred = rows.centred(summary.centre)
    if summary.coverage is not None:  # rows with gaps: hc starts from the complete ones
        if summary.complete is None:
            return {}
        centred = CompleteRows(centred)
    children = np.random.SeedSequence(options.seed).spawn(options.n_init)
    trees: HcTrees = {}
    tree = None
    for restart in restarts:
        if tree is None or tree.sampled:
            rng = np.random.default_rng(children[restart])
            tree = hc_tree(centred, options.hc_rows, rng, reducer)
        trees[restart] = tree
    return trees


def cross_validate(point: Point) -> float:
    """Held-out log-likelihood per unit of weight, summed over the folds.

    A fold fit that collapsed would score its held-out twins of the collapsed value
    without bound, so it makes the whole point degenerate (a GMMError).
    """
    n_folds, positive_before = point.folds
    held_out = total = 0.0
    labels: dict = {}  # shared by every fold's passes
    for fold in range(n_folds):
        split = FoldRows(
            point.rows, fold, n_folds, point.options.seed, positive_before, labels=labels
        )
        model = point.fit(split, point.fold_trees[fold] if point.fold_trees else None)
        if model.fit_info.degenerate:
            raise DegenerateFold(
                f"in cross-validation fold {fold}: {model.fit_info.degenerate_reason}"
            )
        test = dataclasses.replace(split, test=True)
        scored = point.reducer.sum(
            test, lambda X, w, m=model: np.array([w @ m.score_samples(X), w.sum()])
        )
        held_out, total = held_out + scored[0], total + scored[1]
    return held_out / total


class DegenerateFold(GMMError):
    """A cross-validation fold whose fit collapsed."""


def evaluate(point: Point) -> tuple[GridPoint, GaussianMixture | None]:
    """Fit one grid point and measure every criterion; failures become the row's status."""
    row = GridPoint(point.n_components, point.options.covariance_type, point.model)
    started = time.perf_counter()
    try:
        model = point.fit(point.rows, point.trees)
        info = model.fit_info
        row.n_parameters = model.n_parameters
        row.log_likelihood = info.log_likelihood
        row.bic, row.aic = info.bic, info.aic
        row.icl = icl(model, point.rows, point.reducer)
        row.converged, row.n_iter = info.converged, info.n_iter
        row.degenerate = info.degenerate
        if info.degenerate:
            row.status = f"degenerate: {info.degenerate_reason}"
        if point.folds is not None and not info.degenerate:
            row.cv = cross_validate(point)
    except DegenerateFold as err:
        row.status = f"degenerate: {err}"
        row.degenerate = True
    except GMMError as err:
        model = None
        row.status, row.failure = f"failed: {err}", err
    row.seconds = time.perf_counter() - started
    return row, model


TIE = 1e-9  # criteria this close (relative) tie: fits that differ by rounding alone


def choose(points: list[GridPoint], criterion: str) -> GridPoint | None:
    """Fill in ``criterion`` and mark the best eligible point. Points within rounding of
    the best (TIE) are equal, and of those the one with fewer parameters wins, then the
    first in the grid (mclust's order of structures): K = 1 of EEE and VVV, the same fit,
    go to EEE, not to rounding."""
    sign = -1.0 if criterion in HIGHER_IS_BETTER else 1.0
    for point in points:
        point.criterion = getattr(point, criterion)
        point.best = False
    eligible = [p for p in points if p.eligible and p.criterion is not None]
    if not eligible:
        return None
    top = min(sign * p.criterion for p in eligible)
    tied = [p for p in eligible if sign * p.criterion <= top + TIE * max(1.0, abs(top))]
    best = min(tied, key=lambda p: p.n_parameters)
    best.best = True
    return best


def select_rows(
    rows: RowSource,
    grid: Grid,
    options: FitOptions = SELECT_DEFAULTS,
    *,
    reducer: Reducer = SERIAL,
    map_points: Callable[[Callable, Sequence[Point]], Iterable[tuple[int, object]]] | None = None,
    on_point: Callable[[GridPoint], None] | None = None,
    done: Mapping[tuple[int, str], GridPoint] | None = None,
) -> tuple[list[GridPoint], GaussianMixture | None]:
    """Fit every (K, covariance type) of ``grid`` with ``options`` (its covariance type
    replaced by each of the grid's), rank them by the grid's criterion; return the table
    and the winner.

    ``done`` holds rows fitted before with the same rows and options, by (K, covariance
    type): those points are not fitted again (the winner is refitted if it is one of
    them), and ``on_point`` hears of the others as each is fitted, in the order they finish.

    Rows come from any source (an array, a file read in chunks). ``map_points(evaluate,
    points)`` runs the points and yields (index, result) as each finishes (by default one
    after the other, here; an engine may run them in other processes, whose results do
    not depend on it beyond rounding). A
    seed of None draws fresh entropy once, for the whole grid. The trees of hc starts
    are built once, here, for every point (hc_trees(); for each training fold too).
    """
    if options.given_start[0]:
        raise UserError(
            "a start (weights_init, means_init, precisions_init) fits no grid: its points "
            "differ in K; leave it out"
        )
    if options.seed is None:
        options = dataclasses.replace(options, seed=int(np.random.SeedSequence().entropy))
    if any(options.init_for(i) == "hc" for i in range(options.n_init)):
        check_hc_rows(options.hc_rows, max(grid.k_values))
    folds = fold_trees = None
    if grid.cv_folds is not None:
        folds = (grid.cv_folds, positive_counts_before(rows))
        labels: dict = {}
        fold_trees = [
            hc_trees(
                FoldRows(rows, fold, grid.cv_folds, options.seed, folds[1], labels=labels),
                options,
                reducer,
            )
            for fold in range(grid.cv_folds)
        ]
    trees = hc_trees(rows, options, reducer)
    points = [
        Point(
            rows,
            k,
            dataclasses.replace(options, covariance_type=cov),
            model,
            folds,
            reducer,
            trees,
            fold_trees,
        )
        for cov, model in structures(grid.covariance_types, rows.n_features).items()
        for k in grid.k_values
    ]
    done = done or {}
    todo = [point for point in points if point.key not in done]
    map_points = map_points or one_by_one
    fitted: dict[tuple[int, str], tuple[GridPoint, GaussianMixture | None]] = {}
    for index, result in map_points(evaluate, todo):
        fitted[todo[index].key] = result
        if on_point:
            on_point(result[0])
    table = [done[p.key] if p.key in done else fitted[p.key][0] for p in points]
    best = choose(table, grid.criterion)
    if best is None:
        return table, None
    winner = next(p for p in points if p.key == (best.n_components, best.covariance_type))
    return table, (fitted[winner.key] if winner.key in fitted else evaluate(winner))[1]


def one_by_one(function: Callable, tasks: Sequence) -> Iterator[tuple[int, object]]:
    """(index, function(task)) for every task, in order, here."""
    return enumerate(map(function, tasks))


def structures(names: Sequence[str], n_features: int) -> dict[str, str]:
    """The structures a grid fits, by canonical name, with mclust's name of each. With one
    feature the fourteen are two, as in mclust: E (equal variance), fitted as EII, and V
    (varying), fitted as VII; each is fitted once."""
    found = {name: get_covariance(name).mclust_name for name in names}
    if n_features > 1:
        return found
    one = {"E": ("EII", "E"), "V": (get_covariance("VII").name, "V")}
    return dict(one[mclust[0]] for mclust in found.values())


def table_columns(points: list[GridPoint]) -> dict[str, list]:
    """The grid as named columns, in the documented order (the failure is in status)."""
    return {
        f.name: [getattr(p, f.name) for p in points]
        for f in fields(GridPoint)
        if f.name != "failure"
    }


_KINDS = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,)}


def table_points(columns: dict[str, list]) -> list[GridPoint]:
    """The points of a table that table_columns() made, unranked (criterion and best are
    choose()'s); a KeyError names a column it lacks, a ValueError a value of the wrong
    kind (its column and row)."""
    kept = [f for f in fields(GridPoint) if f.name not in ("criterion", "best", "failure")]
    for kind in kept:
        name, *optional = kind.type.split(" | ")
        for row, value in enumerate(columns[kind.name], start=1):
            if value is None and optional:
                continue
            if not isinstance(value, _KINDS[name]) or (name != "bool" and value is True):
                raise ValueError(f"column '{kind.name}', row {row}, holds {value!r}, not {name}")
    rows = zip(*(columns[kind.name] for kind in kept), strict=True)
    return [GridPoint(*row) for row in rows]  # (kept: the fields before criterion, in order)


T = TypeVar("T")


def by_class(labelled: Iterable[tuple[str, T]]) -> dict[str, list[T]]:
    """The items of a grid for each class (select-k with labels) by class, the classes in
    the order they first appear."""
    grouped: dict[str, list[T]] = {}
    for label, item in labelled:
        grouped.setdefault(label, []).append(item)
    return grouped


def one_shared_grid(grids: dict[str, list]) -> bool:
    """Whether grids by class are one structure shared by every class (select-k
    --shared-structure): several classes, each listing the same points, the whole model's."""
    values = list(grids.values())
    return len(values) > 1 and all(value == values[0] for value in values)


def on_edge(best: GridPoint, k_values: list[int]) -> bool:
    """Whether the winner's K is the largest of several tried, or the smallest above 1."""
    if len(k_values) < 2:
        return False
    return best.n_components == max(k_values) or 1 < best.n_components == min(k_values)
