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
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import numpy as np

from gmmcli.core.fit import fit
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


def icl(model: GaussianMixture, X: np.ndarray, weights: np.ndarray) -> float:
    """BIC plus twice the entropy of the hard (most probable) classification."""
    log_max = np.log(model.predict_proba(X).max(axis=1))
    return model.fit_info.bic - 2.0 * float(weights @ log_max)


def fold_labels(weights: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """A seeded balanced split of the rows with positive weight into folds (-1: no fold)."""
    labels = np.full(len(weights), -1)
    positive = np.flatnonzero(weights > 0)
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])
    labels[rng.permutation(positive)] = np.arange(len(positive)) % n_folds
    return labels


def cross_validate(
    X: np.ndarray,
    weights: np.ndarray,
    n_components: int,
    covariance_type: str,
    folds: np.ndarray,
    options: FitOptions,
) -> float:
    """Held-out log-likelihood per unit of weight, summed over the folds.

    A fold fit that collapsed would score its held-out twins of the collapsed value
    without bound, so it makes the whole point degenerate (a GMMError).
    """
    held_out = 0.0
    for fold in range(folds.max() + 1):
        test, train = folds == fold, (folds != fold) & (folds >= 0)
        model = _fit(X[train], weights[train], n_components, covariance_type, options)
        if model.fit_info.degenerate:
            raise DegenerateFold(
                f"in cross-validation fold {fold}: {model.fit_info.degenerate_reason}"
            )
        held_out += float(weights[test] @ model.score_samples(X[test]))
    return held_out / float(weights[folds >= 0].sum())


class DegenerateFold(GMMError):
    """A cross-validation fold whose fit collapsed."""


def _fit(X, weights, n_components, covariance_type, options: FitOptions) -> GaussianMixture:
    return fit(
        X,
        n_components,
        weights=weights,
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
    X: np.ndarray,
    weights: np.ndarray,
    n_components: int,
    covariance_type: str,
    options: FitOptions,
    folds: np.ndarray | None,
) -> tuple[GridPoint, GaussianMixture | None]:
    """Fit one grid point and measure every criterion; failures become the row's status."""
    point = GridPoint(n_components, covariance_type)
    started = time.perf_counter()
    try:
        model = _fit(X, weights, n_components, covariance_type, options)
        info = model.fit_info
        point.n_parameters = model.n_parameters
        point.log_likelihood = info.log_likelihood
        point.bic, point.aic = info.bic, info.aic
        point.icl = icl(model, X, weights)
        point.converged, point.n_iter = info.converged, info.n_iter
        point.degenerate = info.degenerate
        if info.degenerate:
            point.status = f"degenerate: {info.degenerate_reason}"
        if folds is not None and not info.degenerate:
            point.cv = cross_validate(X, weights, n_components, covariance_type, folds, options)
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
    X: np.ndarray,
    *,
    weights: np.ndarray | None = None,
    k_values: list[int],
    covariance_types: list[str],
    criterion: str = "bic",
    cv_folds: int | None = None,
    options: FitOptions = FitOptions(),
    jobs: int = 1,
    on_point: Callable[[GridPoint], None] | None = None,
) -> tuple[list[GridPoint], GaussianMixture | None]:
    """Fit every (K, covariance type), rank by ``criterion``; return the table and winner.

    With ``jobs`` > 1 the points run in that many fresh processes, each limited to one BLAS
    thread; results do not depend on ``jobs`` beyond rounding.
    """
    if options.n_init < 1 or options.max_iter < 1 or options.tol < 0 or options.reg_covar < 0:
        raise GMMError("need n_init >= 1, max_iter >= 1, tol >= 0 and reg_covar >= 0")
    if criterion not in CRITERIA:
        raise GMMError(f"unknown criterion {criterion!r}; use one of {', '.join(CRITERIA)}")
    if criterion == "cv" and cv_folds is None:
        cv_folds = 5
    if cv_folds is not None and cv_folds < 2:
        raise GMMError("cross-validation needs at least 2 folds")
    X = np.asarray(X, dtype=float)
    weights = np.ones(len(X)) if weights is None else np.asarray(weights, dtype=float)
    folds = None if cv_folds is None else fold_labels(weights, cv_folds, options.seed)
    tasks = [(X, weights, k, cov, options, folds) for cov in covariance_types for k in k_values]
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
