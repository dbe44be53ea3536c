"""The EM loop on summed sufficient statistics.

An E-step maps one block of (centred) rows and their weights to a :class:`Stats`; blocks
are summed; the M-step turns the sum into new parameters. Every pass asks the row source
to run a function on each part of its rows (``RowSource.map_parts``) and adds up what the
parts return, so the same code serves arrays in memory, chunks streamed from a file and
partitions held by a cluster. How the blocks of a pass are shared out (threads,
processes, a cluster's workers) is a :class:`Reducer`'s business, given by the caller; the
order in which their statistics are added is fixed here, so it cannot change the result.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeVar

import numpy as np

from gmmcli.core.covariance import Covariance, empty_components
from gmmcli.core.gaps import LAYOUTS, Marginal
from gmmcli.core.structures import get_covariance

if TYPE_CHECKING:
    from gmmcli.core.options import FitOptions

S = TypeVar("S")
T = TypeVar("T")
BLOCK_BYTES = 1 << 22  # the float64 rows of a block: enough to amortise a block's calls
MIN_BLOCK_ROWS = 1024
MAX_BLOCK_ROWS = 16384  # blocks are what a pass shares over the cores: 100k rows make 7


def rows_per_block(n_features: int) -> int:
    """Rows per block of ``n_features`` features: the largest power of two whose rows fit
    in BLOCK_BYTES, from MIN_BLOCK_ROWS to MAX_BLOCK_ROWS.

    Every row source cuts its rows into blocks of this many, counted from the first row
    (the last block shorter), whatever chunks it reads them in, so every path to the core
    sees the same blocks and the same sums.
    """
    rows = max(1, BLOCK_BYTES // (8 * max(1, n_features)))
    return int(np.clip(1 << (rows.bit_length() - 1), MIN_BLOCK_ROWS, MAX_BLOCK_ROWS))


Block = tuple[np.ndarray, ...]  # (rows, weights), and each row's class for labelled rows
PartFunction = Callable[[Iterable[Block], int, int], T]
UNLABELLED = -1  # a row's class when it has none


class RowSource(Protocol):
    """Rows handed to the core in blocks, in a fixed order, with their weights.

    The rows lie in ``n_parts`` parts (partitions of a cluster; one part for rows in this
    process). ``map_parts(function)`` calls ``function(blocks, index, first_row)`` where
    each part lies and returns the results in part order: ``blocks`` yields the part's
    (rows minus ``centre``, cast to ``dtype``; float64 weights), and for a source of
    labelled rows each row's class too (an integer, UNLABELLED for none), and
    ``first_row`` counts the rows of the parts before it. ``centred`` gives the same rows
    about another centre or in another dtype. Blocks hold ``block_rows`` rows
    (rows_per_block() unless a test asks for others) counted from the part's first row,
    the last shorter. An engine (arrays in memory, a file read in chunks, a cluster) only
    has to provide these; every pass of the core goes through ``map_parts``.
    """

    n_features: int
    n_parts: int
    centre: np.ndarray
    block_rows: int

    def map_parts(self, function: PartFunction) -> list[T]: ...

    def centred(self, centre: np.ndarray, dtype: type = np.float64) -> RowSource: ...


class OnePart:
    """For row sources in this process: all rows in one part, served by ``blocks()``."""

    n_parts = 1

    def map_parts(self, function: PartFunction) -> list[T]:
        return [function(self.blocks(), 0, 0)]


def in_blocks(pieces: Iterable[Block], rows: int) -> Iterator[Block]:
    """Pieces of (rows, weights[, classes]) of any lengths re-cut into blocks of ``rows``
    rows, in order, the last shorter: what a source reading chunks hands the core."""
    held: list[Block] = []
    count = 0
    for piece in pieces:
        start = 0
        while start < len(piece[0]):
            take = min(rows - count, len(piece[0]) - start)
            held.append(tuple(array[start : start + take] for array in piece))
            count, start = count + take, start + take
            if count == rows:
                yield _joined(held)
                held, count = [], 0
    if held:
        yield _joined(held)


def _joined(pieces: list[Block]) -> Block:
    if len(pieces) == 1:
        return pieces[0]
    return tuple(np.concatenate(arrays) for arrays in zip(*pieces, strict=True))


@dataclass
class InMemoryRows(OnePart):
    """An in-memory array served as centred blocks; no centred copy of the whole array.

    Rows are centred in float64, then cast to ``dtype``; weights stay float64. With
    ``classes`` (each row's, UNLABELLED for none) the blocks carry them.
    """

    X: np.ndarray
    weights: np.ndarray
    centre: np.ndarray
    dtype: type = np.float64
    block_rows: int = 0  # 0: rows_per_block(n_features)
    classes: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.block_rows = self.block_rows or rows_per_block(self.X.shape[1])

    @property
    def n_features(self) -> int:
        return self.X.shape[1]

    def centred(self, centre: np.ndarray, dtype: type = np.float64) -> InMemoryRows:
        return dataclasses.replace(self, centre=centre, dtype=dtype)

    @property
    def n_blocks(self) -> int:
        return -(-len(self.X) // self.block_rows)

    def blocks(self, indices: Iterable[int] | None = None) -> Iterator[Block]:
        """The blocks in order, or those at ``indices``."""
        for index in range(self.n_blocks) if indices is None else indices:
            start = index * self.block_rows
            stop = start + self.block_rows
            block = (self.X[start:stop] - self.centre).astype(self.dtype, copy=False)
            if self.classes is None:
                yield block, self.weights[start:stop]
            else:
                yield block, self.weights[start:stop], self.classes[start:stop]


@dataclass
class Params:
    """Mixture parameters in the centred coordinates the loop works in."""

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    prec_chol: np.ndarray

    def log_weights(self) -> np.ndarray:
        out = np.full(self.weights.shape, -np.inf)
        np.log(self.weights, out=out, where=self.weights > 0)
        return out


@dataclass
class Stats:
    """Sufficient statistics summed over rows: Σwr, Σwr·x, the second moment, Σw·log p."""

    nk: np.ndarray
    sx: np.ndarray
    second: np.ndarray
    log_likelihood: float = 0.0

    def __add__(self, other: Stats) -> Stats:
        return Stats(
            self.nk + other.nk,
            self.sx + other.sx,
            self.second + other.second,
            self.log_likelihood + other.log_likelihood,
        )

    def add(self, other: Stats) -> None:
        """Add ``other`` in place (for a running sum that owns its arrays)."""
        self.nk += other.nk
        self.sx += other.sx
        self.second += other.second
        self.log_likelihood += other.log_likelihood


@dataclass
class Prepared:
    """Parameters as the E-step multiplies by them: ``kernel.log_densities(coef, phi)`` =
    log πₖ + log N(x | k), ``kernel`` being the form of the covariance structure chosen for
    this K and D (Covariance.kernel).

    An empty component gets a hugely negative finite log πₖ instead of -inf, so no
    product can turn into NaN. ``marginal`` (rows with missing features) is made from the
    means and precision factors the first time a block with gaps asks for it. ``run``
    names the EM run they belong to (LAYOUTS keeps one run's layouts at a time);
    ``owners`` the class of each component, when labelled rows are to keep to theirs.
    """

    coef: np.ndarray
    kernel: Covariance
    means: np.ndarray
    prec_chol: np.ndarray
    cov: Covariance
    log_weights: np.ndarray
    run: int = 0
    owners: np.ndarray | None = None  # each component's class, for labelled rows

    @classmethod
    def of(
        cls,
        params: Params,
        cov: Covariance,
        dtype=np.float64,
        run: int = 0,
        owners: np.ndarray | None = None,
    ) -> Prepared:
        kernel = cov.kernel(*params.means.shape)
        log_weights = np.maximum(params.log_weights(), np.finfo(dtype).min / 4)
        coef = kernel.coefficients(params.means, params.prec_chol, log_weights).astype(dtype)
        return cls(coef, kernel, params.means, params.prec_chol, cov, log_weights, run, owners)

    @functools.cached_property
    def in_float64(self) -> Prepared:
        """These parameters for float64 rows (blocks with gaps, whatever the working
        dtype: their log-densities are those of x̃ plus offsets that cancel much of them)."""
        if self.coef.dtype == np.float64:
            return self
        coef = self.kernel.coefficients(self.means, self.prec_chol, self.log_weights)
        return dataclasses.replace(self, coef=coef)

    @functools.cached_property
    def marginal(self) -> Marginal:
        return Marginal.of(self.means, self.prec_chol, self.cov)


def aligned_tiles(X: np.ndarray, first_row: int, rows: int) -> Iterator[tuple[np.ndarray, slice]]:
    """``X`` (rows ``first_row`` on of a longer input) in tiles of ``rows`` rows that start
    at multiples of ``rows`` in the whole input, as (tile, where X's rows lie in it).

    A tile that X fills only in part is padded to full length with copies of its edge
    rows, so that every row is computed by the same products, at the same position in a
    tile of the same shape, however the input was cut.
    """
    offset = first_row % rows
    start = 0
    while start < len(X):
        stop = min(len(X), start + rows - offset)
        piece = X[start:stop]
        if len(piece) < rows:
            piece = np.pad(piece, ((offset, rows - offset - len(piece)), (0, 0)), mode="edge")
        yield piece, slice(offset, offset + stop - start)
        start, offset = stop, 0


def log_joint(
    X: np.ndarray, prepared: Prepared, out: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The block's row features (in ``out`` if given) and log πₖ + log N(x | k), shape
    (K, rows)."""
    phi = prepared.kernel.features(X, out=out)
    return phi, prepared.kernel.log_densities(prepared.coef, phi, X.shape[1])


def accumulate(X: np.ndarray, weights: np.ndarray, resp: np.ndarray, cov: Covariance) -> Stats:
    """Statistics of one block for given responsibilities, shape (K, rows)."""
    weights = weights.astype(X.dtype, copy=False)
    return _block_stats(cov, cov.features(X), resp * weights, weights, X.shape[1])


def _block_stats(
    cov: Covariance, phi: np.ndarray, wresp: np.ndarray, weights: np.ndarray, n_features: int
) -> Stats:
    """A block's statistics from its row features and w·r: sums taken in the working
    dtype, handed on in float64."""
    moments = cov.moments(phi, wresp, weights, n_features)
    return Stats(*(np.asarray(m, dtype=np.float64) for m in moments))


def e_step(
    X: np.ndarray, weights: np.ndarray, classes: np.ndarray | None = None, *, prepared: Prepared
) -> Stats:
    """Statistics of one block under the current parameters, with its log-likelihood.

    Taken in tiles of tile_rows() rows from the block's start, summed in order, so that
    the products read the row features from a cache. Every path to the core cuts the same
    blocks (rows_per_block), so the same tiles. NaN is a missing feature: a block with
    some goes through the tiles with its gaps set to 0, each row with gaps taking the
    offset of its marginal density (gmmcli.core.gaps) before its responsibilities, and
    the statistics then get what the gaps' conditional moments add. With ``classes``
    (each row's) and ``prepared.owners``, a labelled row's responsibilities go to its
    class's components only (barred_components()).
    """
    gaps = nan_mask(X)
    offsets = kept = None
    if gaps is not None:
        prepared = prepared.in_float64
        X = np.where(gaps, 0.0, X).astype(np.float64, copy=False)
        block_gaps = prepared.marginal.gaps(X, LAYOUTS.get(gaps, prepared.run))
        offsets = block_gaps.row_offsets()
        kept = np.empty_like(offsets)
    if classes is not None and prepared.owners is not None:
        barred = barred_components(classes, prepared.owners)
        offsets = barred if offsets is None else offsets + barred
    rows = tile_rows(prepared, X.shape[1])
    tiles = [slice(start, start + rows) for start in range(0, len(X), rows)]
    total = add_up(
        _e_tile(
            X[t],
            weights[t],
            prepared,
            None if offsets is None else offsets[:, t],
            None if kept is None else kept[:, t],
        )
        for t in tiles
    )
    if gaps is not None:
        sx, second = block_gaps.moments(kept)
        total.sx += sx
        total.second += prepared.kernel.second_from_matrices(second)
    return total


SMALL_PRODUCT = 10**6  # multiply-adds up to which OpenBLAS takes its small-matrix kernels
MIN_SMALL_TILE_ROWS = 256  # ...worth it for tiles of this many rows or more
MIN_TILE_ROWS = 1024  # otherwise enough rows to amortise numpy's per-call cost
MAX_TILE_BYTES = 1 << 22  # ...but never so many row features that they leave the L3 cache


def tile_rows(prepared: Prepared, n_features: int) -> int:
    """Rows per tile of the E-step and of predictions, from the size of its products (at
    most a block's rows).

    ``coef @ phi`` costs coef.size multiply-adds per row, and no product of the M-step
    costs more. OpenBLAS (numpy's BLAS) multiplies matrices of up to SMALL_PRODUCT
    multiply-adds in small-matrix kernels, faster than its general path on these shapes.
    So the tile is the largest that stays within, if that is at least MIN_SMALL_TILE_ROWS
    rows, else MIN_TILE_ROWS rows; either way at most MAX_TILE_BYTES of row features, so
    that they stay in cache. The sizes do not depend on the dtype (float32 products change
    paths at the same size). The stacked forms (Covariance.kernel) keep x and a row of
    ones as their row features and K·(D + 1) more values per row. benchmarks/
    bench_kernels.py times the tiles on either side of these bounds.
    """
    per_row = prepared.kernel.n_row_features(n_features) * np.dtype(np.float64).itemsize
    small = SMALL_PRODUCT // prepared.coef.size
    rows = small if small >= MIN_SMALL_TILE_ROWS else MIN_TILE_ROWS
    return max(1, min(rows, MAX_TILE_BYTES // per_row, rows_per_block(n_features)))


def _e_tile(
    X: np.ndarray,
    weights: np.ndarray,
    prepared: Prepared,
    offsets: np.ndarray | None = None,
    kept: np.ndarray | None = None,
) -> Stats:
    """e_step() of one tile: the log-likelihood and responsibilities (a logsumexp over
    components) then accumulate(), fused (the unnormalised responsibilities are scaled by
    w / Σₖ in one pass). ``offsets`` (K, rows) are added to the rows' log-densities (a
    tile whose gaps are set to 0), and the rows' w·r are copied into ``kept``."""
    kernel = prepared.kernel
    buffer = _scratch(kernel.n_row_features(X.shape[1]) * len(X), X.dtype)
    phi, log_prob = log_joint(X, prepared, out=buffer)
    if offsets is not None:
        log_prob += offsets
    block_weights = weights.astype(X.dtype, copy=False)
    wresp, log_norm = weighted_responsibilities(log_prob, block_weights)
    if kept is not None:
        kept[:] = wresp
    stats = _block_stats(kernel, phi, wresp, block_weights, X.shape[1])
    stats.log_likelihood = float(weights @ log_norm)
    return stats


def weighted_responsibilities(
    log_prob: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """w·r (in ``log_prob``'s place) and each row's log Σₖ exp(log_prob), from log πₖ +
    log N(x | k) of shape (K, rows): a logsumexp over components, the unnormalised
    responsibilities scaled by w / Σₖ in one pass."""
    top = log_prob.max(axis=0)
    log_prob -= top
    # Relative responsibilities below sqrt(smallest normal number) (1e-19 in float32,
    # 1e-154 in float64) are zero for every purpose; floored there, they cannot become
    # subnormal once weighted, which would make the products that follow many times slower.
    np.maximum(log_prob, 0.5 * np.log(np.finfo(log_prob.dtype).tiny), out=log_prob)
    wresp = np.exp(log_prob, out=log_prob)
    total = wresp.sum(axis=0)
    wresp *= weights / total
    return wresp, np.log(total, dtype=np.float64) + top


BARRED = np.finfo(np.float32).min / 4  # an offset no log-density outweighs, finite in float32


def barred_components(classes: np.ndarray, owners: np.ndarray) -> np.ndarray:
    """Offsets (K, rows) that keep each labelled row (``classes`` ≥ 0) out of the
    components its class does not own (``owners``: each component's class, UNLABELLED
    for a component of no class): BARRED there, 0 elsewhere."""
    allowed = (owners[:, None] == classes[None, :]) | (classes[None, :] == UNLABELLED)
    return np.where(allowed, 0.0, BARRED)


def nan_mask(X: np.ndarray) -> np.ndarray | None:
    """X's NaN mask if some value of X is NaN, else None (the sum first: one fast pass
    when none is)."""
    with np.errstate(over="ignore"):  # finite rows whose sum overflows: no NaN among them
        if np.isfinite(X.sum()):
            return None
    gaps = np.isnan(X)
    return gaps if gaps.any() else None


def has_gaps(X: np.ndarray) -> bool:
    """Whether some value of X is NaN."""
    return nan_mask(X) is not None


# Per-thread storage only: the core starts no threads, but a reducer may run its blocks
# in several (a context variable would not do: threads may start with a copy of another's).
_per_thread = threading.local()


def _scratch(size: int, dtype) -> np.ndarray:
    """A flat array of at least ``size`` values kept by this thread for the next block: a
    fresh array of the row features would be mapped into memory page by page every block."""
    kept = getattr(_per_thread, "scratch", None)
    if kept is None or kept.size < size or kept.dtype != dtype:
        kept = _per_thread.scratch = np.empty(size, dtype)
    return kept


BlockFunction = Callable[[np.ndarray, np.ndarray], T]


class Reducer(Protocol):
    """How a pass over a row source is run: the core's only way to sum over rows.

    ``sum(rows, block_stats)`` returns the sum of ``block_stats(X, weights)`` over every
    block (None when there are none), added in groups of ``group_blocks(rows)`` blocks in
    block order and the groups in order (``sum_in_groups``), so that the result does not
    depend on where or how concurrently the blocks were computed. ``block_stats`` must not
    draw random numbers or change state the caller relies on. Within ``session(rows)``
    (an EM run), a reducer may keep whatever it needs for the passes over ``rows``.

    ``map(function, items)`` yields ``function(item)`` for every item, in order, run in
    this process as concurrently as the reducer runs blocks: for independent pieces of
    work that write their results into arrays the caller holds (predictions).
    """

    def sum(self, rows: RowSource, block_stats: BlockFunction) -> T | None: ...

    def session(self, rows: RowSource) -> AbstractContextManager[None]: ...

    def map(self, function: Callable[[S], T], items: Iterable[S]) -> Iterator[T]: ...


class Serial:
    """The blocks one after the other, here (or where each part of the rows lies)."""

    def sum(self, rows: RowSource, block_stats: BlockFunction) -> T | None:
        group = group_blocks(rows)

        def part_sum(blocks: Iterable[Block], index: int, first_row: int):
            return sum_in_groups((block_stats(*block) for block in blocks), group)

        return add_up(rows.map_parts(part_sum))

    def session(self, rows: RowSource) -> AbstractContextManager[None]:
        return contextlib.nullcontext()

    def map(self, function: Callable[[S], T], items: Iterable[S]) -> Iterator[T]:
        return map(function, items)


SERIAL = Serial()
GROUP_ROWS = 1 << 14


def group_blocks(rows: RowSource) -> int:
    """Blocks per group: whole blocks of about GROUP_ROWS rows."""
    return max(1, GROUP_ROWS // rows.block_rows)


def sum_in_groups(values: Iterable, group: int) -> Stats | None:
    """add_up() of each run of ``group`` values, then of those sums, in order."""
    values = iter(values)
    total = None
    while run := list(itertools.islice(values, group)):
        total = add_up([total, add_up(run)])
    return total


def add_up(values: Iterable) -> Stats | None:
    """The sum of the values that are not None, in order; None if there are none."""
    total = None
    for value in values:
        if value is not None:
            total = value if total is None else total + value
    return total


def m_step(stats: Stats, cov: Covariance, reg_covar: float, previous: Params | None) -> Params:
    """New parameters from summed statistics.

    A component whose weight is below one rounding unit of the total keeps its previous
    mean and covariance (what of it is its own), with weight zero: nothing is divided by
    zero and the outcome does not depend on noise. An iterative M-step starts from the
    previous covariances.
    """
    total = stats.nk.sum()
    empty = empty_components(stats.nk)
    means = stats.sx / np.where(empty, 1.0, stats.nk)[:, None]
    if empty.any():
        means[empty] = previous.means[empty]
    before = None if previous is None else previous.covariances
    covariances = cov.estimate(stats.nk, means, stats.second, reg_covar, before)
    if empty.any():
        covariances = cov.keep_previous(covariances, previous.covariances, empty)
    weights = np.where(empty, 0.0, stats.nk / total)
    return Params(weights, means, covariances, cov.precision_cholesky(covariances))


def rounding_allowance(dtype: np.dtype) -> float:
    """Relative change of the mean log-likelihood that rounding alone can explain."""
    return 1e-10 * np.sqrt(np.finfo(dtype).eps / np.finfo(np.float64).eps)


def regularisation_slack(params: Params, cov: Covariance, reg_covar: float) -> float:
    """How far, per sample, adding reg_covar to the covariances may pull the log-likelihood.

    With reg_covar > 0 the M-step is not exactly the likelihood's maximiser, so EM may lose
    up to about ¼ (reg_covar · λ)² per sample and precision eigenvalue λ as it settles; this
    bound, reg_covar² Σₖ πₖ |Λₖ|²_F, is four times that and is no numerical failure.
    """
    if reg_covar == 0:
        return 0.0
    n_components, n_features = params.means.shape
    precisions = cov.full_matrices(cov.precisions(params.prec_chol), n_components, n_features)
    return reg_covar**2 * float(params.weights @ np.square(precisions).sum(axis=(1, 2)))


@dataclass
class EMResult:
    params: Params
    stats: Stats
    history: list[float] = field(default_factory=list)
    n_iter: int = 0
    converged: bool = False
    largest_drop: float = 0.0


_runs = itertools.count(1)


@contextlib.contextmanager
def em_run() -> Iterator[int]:
    """A number for one EM run (Prepared.run); its LAYOUTS dropped here when it ends
    (other processes that ran its blocks end with it, or keep none)."""
    run = next(_runs)
    try:
        yield run
    finally:
        LAYOUTS.forget(run)


def run_em(
    source: RowSource,
    params: Params,
    options: FitOptions,
    *,
    total_weight: float,
    reducer: Reducer = SERIAL,
    on_iteration: Callable[[int, float], None] | None = None,
    start_stats: Stats | None = None,
    owners: np.ndarray | None = None,
) -> EMResult:
    """EM from ``params`` until the mean log-likelihood gains less than ``options.tol``.

    Converged means -allowance <= gain < tol; a larger drop is recorded, never taken for
    convergence. With tol == 0 exactly ``max_iter`` iterations run. The returned
    statistics and last history entry belong to the returned parameters. ``start_stats``
    are ``params``' statistics when a pass has taken them already. With ``owners`` (each
    component's class) the labelled rows of ``source`` keep to their class's components,
    and the log-likelihood is theirs with them (the complete-data term) plus the others'.
    """
    cov, reg_covar = get_covariance(options.covariance_type), options.reg_covar
    dtype = options.em_dtype

    def e_pass(current: Params) -> Stats:
        prepared = Prepared.of(current, cov, dtype, run, owners)
        return reducer.sum(source, functools.partial(e_step, prepared=prepared))

    with reducer.session(source), em_run() as run:
        stats = e_pass(params) if start_stats is None else start_stats
        result = EMResult(params, stats, [stats.log_likelihood / total_weight])
        allowance = rounding_allowance(dtype)
        for iteration in range(1, options.max_iter + 1):
            params = m_step(stats, cov, reg_covar, params)
            stats = e_pass(params)
            mean_ll = stats.log_likelihood / total_weight
            gain = mean_ll - result.history[-1]
            result.history.append(mean_ll)
            result.params, result.stats, result.n_iter = params, stats, iteration
            if on_iteration is not None:
                on_iteration(iteration, mean_ll)
            slack = allowance * max(1.0, abs(mean_ll)) + regularisation_slack(
                params, cov, reg_covar
            )
            if gain < -slack:
                result.largest_drop = max(result.largest_drop, -gain)
            elif options.tol > 0 and gain < options.tol:
                result.converged = True
                break
        return result
