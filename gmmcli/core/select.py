"""Model selection: fit a grid of (K, covariance type) and rank it by a criterion.

Conventions (scikit-learn's sign, lower is better): BIC = -2 log L + p log n,
AIC = -2 log L + 2p, ICL = BIC - 2 Σ wₙ log maxₖ p(k | xₙ) (mclust's ICL, Biernacki et al.),
n the total weight. mclust reports 2 log L - p log n (higher is better): mclust's BIC is
minus ours. The cross-validated criterion is the held-out mean log-likelihood per unit of
weight, where higher is better. Failed and degenerate grid points are rows with a reason,
never winners.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass

import numpy as np

from gmmcli.core.em import Block, InMemoryRows, PartFunction, RowSource, sum_blocks
from gmmcli.core.fit import fit_rows, validate_data
from gmmcli.core.init import INIT_SAMPLE
from gmmcli.core.model import GaussianMixture
from gmmcli.errors import GMMError

CRITERIA = ("bic", "aic", "icl", "cv")
HIGHER_IS_BETTER = {"cv"}
BLAS_THREAD_VARIABLES = (
    "GMMCLI_THREADS",
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


@dataclass
class GridPoint:
    """One row of the selection table."""

    n_components: int
    covariance_type: str
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

    @property
    def eligible(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True)
class FitOptions:
    """What every grid point is fitted with."""

    n_init: int = 3
    max_iter: int = 1000
    tol: float = 1e-6
    reg_covar: float = 1e-6
    init: str = "kmeans"
    init_sample: int = INIT_SAMPLE
    seed: int = 0
    dtype: str = "float64"


def resolve_seed(seed: int | None) -> int:
    """The seed itself, or fresh entropy when None, drawn once for the whole grid."""
    return int(np.random.SeedSequence().entropy) if seed is None else seed


def icl(model: GaussianMixture, rows: RowSource) -> float:
    """BIC plus twice the entropy of the hard (most probable) classification (one pass)."""
    hard = sum_blocks(rows, lambda X, w: w @ np.log(model.predict_proba(X).max(axis=1)))
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


def cross_validate(
    rows: RowSource,
    n_components: int,
    covariance_type: str,
    folds: tuple[int, list[int]],
    options: FitOptions,
) -> float:
    """Held-out log-likelihood per unit of weight, summed over the folds.

    A fold fit that collapsed would score its held-out twins of the collapsed value
    without bound, so it makes the whole point degenerate (a GMMError).
    """
    n_folds, positive_before = folds
    held_out = total = 0.0
    labels: dict = {}  # shared by every fold's passes
    for fold in range(n_folds):
        split = FoldRows(rows, fold, n_folds, options.seed, positive_before, labels=labels)
        model = _fit(split, n_components, covariance_type, options)
        if model.fit_info.degenerate:
            raise DegenerateFold(
                f"in cross-validation fold {fold}: {model.fit_info.degenerate_reason}"
            )
        test = dataclasses.replace(split, test=True)
        scored = sum_blocks(test, lambda X, w, m=model: np.array([w @ m.score_samples(X), w.sum()]))
        held_out, total = held_out + scored[0], total + scored[1]
    return held_out / total


class DegenerateFold(GMMError):
    """A cross-validation fold whose fit collapsed."""


def _fit(rows: RowSource, n_components, covariance_type, options: FitOptions) -> GaussianMixture:
    return fit_rows(
        rows,
        n_components,
        covariance_type=covariance_type,
        init=options.init,
        init_sample=options.init_sample,
        n_init=options.n_init,
        max_iter=options.max_iter,
        tol=options.tol,
        reg_covar=options.reg_covar,
        seed=options.seed,
        dtype=options.dtype,
    )


def evaluate(
    rows: RowSource,
    n_components: int,
    covariance_type: str,
    options: FitOptions,
    folds: tuple[int, list[int]] | None,
) -> tuple[GridPoint, GaussianMixture | None]:
    """Fit one grid point and measure every criterion; failures become the row's status."""
    point = GridPoint(n_components, covariance_type)
    started = time.perf_counter()
    try:
        model = _fit(rows, n_components, covariance_type, options)
        info = model.fit_info
        point.n_parameters = model.n_parameters
        point.log_likelihood = info.log_likelihood
        point.bic, point.aic = info.bic, info.aic
        point.icl = icl(model, rows)
        point.converged, point.n_iter = info.converged, info.n_iter
        point.degenerate = info.degenerate
        if info.degenerate:
            point.status = f"degenerate: {info.degenerate_reason}"
        if folds is not None and not info.degenerate:
            point.cv = cross_validate(rows, n_components, covariance_type, folds, options)
    except DegenerateFold as err:
        point.status = f"degenerate: {err}"
        point.degenerate = True
    except GMMError as err:
        model = None
        point.status = f"failed: {err}"
    point.seconds = time.perf_counter() - started
    return point, model


def choose(points: list[GridPoint], criterion: str) -> GridPoint | None:
    """Fill in ``criterion`` and mark the best eligible point (ties: fewer parameters)."""
    sign = -1.0 if criterion in HIGHER_IS_BETTER else 1.0
    for point in points:
        point.criterion = getattr(point, criterion)
        point.best = False
    eligible = [p for p in points if p.eligible and p.criterion is not None]
    if not eligible:
        return None
    best = min(eligible, key=lambda p: (sign * p.criterion, p.n_parameters))
    best.best = True
    return best


@contextlib.contextmanager
def single_threaded_blas_environment() -> Iterator[None]:
    """Environment in which new worker processes start with one BLAS thread each."""
    saved = {name: os.environ.get(name) for name in BLAS_THREAD_VARIABLES}
    os.environ.update(dict.fromkeys(BLAS_THREAD_VARIABLES, "1"))  # GMMCLI_THREADS among them
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _evaluate_task(args):
    return evaluate(*args)


def select(
    X: np.ndarray, *, weights: np.ndarray | None = None, **options
) -> tuple[list[GridPoint], GaussianMixture | None]:
    """select_rows() on an array (and its frequency weights)."""
    X, weights = validate_data(X, weights, 1)
    return select_rows(InMemoryRows(X, weights, np.zeros(X.shape[1])), **options)


def select_rows(
    rows: RowSource,
    *,
    k_values: list[int],
    covariance_types: list[str],
    criterion: str = "bic",
    cv_folds: int | None = None,
    options: FitOptions = FitOptions(),
    jobs: int = 1,
    on_point: Callable[[GridPoint], None] | None = None,
) -> tuple[list[GridPoint], GaussianMixture | None]:
    """Fit every (K, covariance type), rank by ``criterion``; return the table and winner.

    Rows come from any source (an array, a file read in chunks). With ``jobs`` > 1 the
    points run in that many fresh processes, each limited to one BLAS thread; results do
    not depend on ``jobs`` beyond rounding.
    """
    if options.n_init < 1 or options.max_iter < 1 or options.tol < 0 or options.reg_covar < 0:
        raise GMMError("need n_init >= 1, max_iter >= 1, tol >= 0 and reg_covar >= 0")
    if criterion not in CRITERIA:
        raise GMMError(f"unknown criterion {criterion!r}; use one of {', '.join(CRITERIA)}")
    if criterion == "cv" and cv_folds is None:
        cv_folds = 5
    if cv_folds is not None and cv_folds < 2:
        raise GMMError("cross-validation needs at least 2 folds")
    folds = None if cv_folds is None else (cv_folds, positive_counts_before(rows))
    tasks = [(rows, k, cov, options, folds) for cov in covariance_types for k in k_values]
    results: list[tuple[GridPoint, GaussianMixture | None]] = []
    if jobs > 1:
        with single_threaded_blas_environment():
            pool = multiprocessing.get_context("spawn").Pool(min(jobs, len(tasks)))
        with pool:
            for result in pool.imap(_evaluate_task, tasks):
                results.append(result)
                if on_point:
                    on_point(result[0])
    else:
        for task in tasks:
            results.append(evaluate(*task))
            if on_point:
                on_point(results[-1][0])
    points = [point for point, _ in results]
    best = choose(points, criterion)
    winner = next((model for point, model in results if point is best), None)
    return points, winner


def table_columns(points: list[GridPoint]) -> dict[str, list]:
    """The grid as named columns, in the documented order."""
    rows = [asdict(p) for p in points]
    return {name: [row[name] for row in rows] for name in asdict(points[0])}


def on_edge(best: GridPoint, k_values: list[int]) -> bool:
    """Whether the winner's K is the largest of several tried, or the smallest above 1."""
    if len(k_values) < 2:
        return False
    return best.n_components == max(k_values) or 1 < best.n_components == min(k_values)
