"""Mixture discriminant analysis (mclust's MclustDA): a mixture for each class, chosen by
BIC on the class's rows alone, the classes then joined into one model of classes; and
its special case with a structure shared by all classes (mclust's EDDA: select_shared).

Each class c gets the grid of K and structures (select_rows on the rows of class c: the
others weigh 0 in their places, so streamed and in-memory rows give the same bytes); its
winner f_c is the class's density. Joined, the model is one mixture of every class's
components with weights prior_c · π_ck and each component's class, whose class
probabilities are prior_c f_c(x) / Σ_c' prior_c' f_c'(x) (mclust's predict.MclustDA). Its
log-likelihood is Σ w log Σ_c prior_c f_c(x), and its parameters, as mclust ≥ 6.1.1
counts them, each class's mixture's and C − 1 priors.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from gmmcli.core.em import SERIAL, Reducer, RowSource
from gmmcli.core.labels import ClassRows, class_weights, fit_labelled, mixture_log_likelihood
from gmmcli.core.model import Classes, FitInfo, GaussianMixture
from gmmcli.core.options import SELECT_DEFAULTS, FitOptions, Grid
from gmmcli.core.select import GridPoint, choose, one_by_one, select_rows, structures
from gmmcli.core.structures import get_covariance
from gmmcli.errors import DataError, GMMError, UserError

FULL = get_covariance("full")


def joined(
    names: list[str],
    priors: np.ndarray,
    mixtures: list[GaussianMixture],
    feature_names: list[str] | None = None,
    fit_info: FitInfo | None = None,
) -> GaussianMixture:
    """One model of every class's mixture (their covariances as full matrices), the
    components of class c weighing prior_c π_ck, in class order."""
    weights, means, covariances, owners = [], [], [], []
    for c, (prior, mixture) in enumerate(zip(priors, mixtures, strict=True)):
        k, d = mixture.means.shape
        weights.append(prior * mixture.weights)
        means.append(mixture.means)
        covariances.append(mixture.covariance.full_matrices(mixture.covariances, k, d))
        owners += [c] * k
    classes = Classes(tuple(names), tuple(owners), tuple(float(p) for p in priors), tuple(mixtures))
    total = np.concatenate(weights)
    return GaussianMixture(
        total / total.sum(),
        np.concatenate(means),
        np.concatenate(covariances),
        "full",
        feature_names,
        fit_info,
        classes,
    )


def check_grid(grid: Grid) -> None:
    """A UserError unless the grid is ranked by BIC, as a grid by class is."""
    if grid.criterion != "bic":
        raise UserError(
            "with labels a grid is ranked by BIC alone (mclust's MclustDA): leave out {criterion}",
            ("criterion",),
        )


def _checked_class_weights(
    rows: RowSource, class_names: list[str], grid: Grid, reducer: Reducer
) -> np.ndarray:
    """class_weights() of rows for a grid by class: every row labelled, BIC the criterion."""
    check_grid(grid)
    weights = class_weights(rows, len(class_names), reducer)
    if weights[-1] > 0:
        raise DataError(
            "select-k with labels needs every row labelled; fit partly labelled rows with "
            "fit --label-column"
        )
    return weights


@dataclass(frozen=True)
class PointsRun:
    """How select-k with labels runs its points: ``map_points`` runs them as select_rows()
    does, ``on_point(class names, point)`` hears of each as it is fitted, with the classes
    it is listed under (one, or every class for a shared structure), and ``done`` holds
    points fitted before (select_by_class: by class name, then (K, covariance type);
    select_shared: by (K, covariance type))."""

    map_points: Callable | None = None
    on_point: Callable[[tuple[str, ...], GridPoint], None] | None = None
    done: Mapping | None = None


def select_by_class(
    rows: RowSource,
    class_names: list[str],
    grid: Grid,
    options: FitOptions = SELECT_DEFAULTS,
    *,
    reducer: Reducer = SERIAL,
    class_priors: np.ndarray | None = None,
    run: PointsRun = PointsRun(),
) -> tuple[list[tuple[str, GridPoint]], GaussianMixture | None]:
    """MclustDA on labelled rows (every one labelled): each class's grid by BIC
    (select_rows, its points run by ``run``; its ``done``: each class's points fitted
    before, by (K, covariance type), not fitted again), its points with the class's name;
    and the model joined from the winners (None if a class has none), its fit_info the
    joined model's (n_iter and the like the largest of the winners')."""
    weights = _checked_class_weights(rows, class_names, grid, reducer)
    table, winners = [], []
    for c, name in enumerate(class_names):
        one = ClassRows(rows, functools.partial(np.equal, c))
        report = None if run.on_point is None else functools.partial(run.on_point, (name,))
        points, winner = select_rows(
            one,
            grid,
            options,
            reducer=reducer,
            map_points=run.map_points,
            on_point=report,
            done=(run.done or {}).get(name),
        )
        table += [(name, point) for point in points]
        winners.append(winner)
    if any(winner is None for winner in winners):
        return table, None
    priors = weights[:-1] / weights[:-1].sum() if class_priors is None else class_priors
    model = joined(class_names, priors, winners)
    everything = ClassRows(rows).centred(model.centre)
    infos = [winner.fit_info for winner in winners]
    model.fit_info = dataclasses.replace(  # the options (init, tol, seed, ...): every class's
        infos[0],
        log_likelihood=mixture_log_likelihood(everything, model._params(), FULL, reducer),
        n_iter=max(i.n_iter for i in infos),
        converged=all(i.converged for i in infos),
        degenerate=any(i.degenerate for i in infos),
        degenerate_reason=next((i.degenerate_reason for i in infos if i.degenerate), None),
        n_samples=sum(i.n_samples for i in infos),
        total_weight=float(weights[:-1].sum()),
        n_parameters=model.n_parameters,
        largest_drop=max(i.largest_drop for i in infos),
        history=[],
        missing_cells=sum(i.missing_cells for i in infos),
    )
    return table, model


def select_shared(
    rows: RowSource,
    class_names: list[str],
    grid: Grid,
    options: FitOptions = SELECT_DEFAULTS,
    *,
    reducer: Reducer = SERIAL,
    class_priors: np.ndarray | None = None,
    run: PointsRun = PointsRun(),
) -> tuple[list[tuple[str, GridPoint]], GaussianMixture | None]:
    """A structure shared by every class, on labelled rows (every one labelled): for each
    K and structure of the grid, K components a class, all of the structure, fitted to
    the labels (core.labels.fit_labelled: one M-step for K = 1, mclust's EDDA; else EM,
    each row kept to its class's components); the point of the lowest total BIC wins
    (refitted if ``run.done``, the points fitted before by (K, covariance type), holds
    it). Points run by ``run`` as select_rows() runs them. Each point is listed under
    every class (its criteria the whole model's)."""
    _checked_class_weights(rows, class_names, grid, reducer)
    done, on_point = run.done or {}, run.on_point
    shared = structures(grid.covariance_types, rows.n_features).items()
    points = [
        GridPoint(k, s, mclust) for (s, mclust), k in itertools.product(shared, grid.k_values)
    ]
    todo = [point for point in points if _key(point) not in done]
    fit = functools.partial(_fit_shared, rows, class_names, options, reducer, class_priors)
    fitted = {}
    for _, (point, model) in (run.map_points or one_by_one)(fit, todo):
        fitted[_key(point)] = point, model
        if on_point is not None:
            on_point(tuple(class_names), dataclasses.replace(point))
    table = [
        (
            name,
            dataclasses.replace(
                done[_key(point)] if _key(point) in done else fitted[_key(point)][0]
            ),
        )
        for point in points
        for name in class_names
    ]
    best = choose([point for name, point in table if name == class_names[0]], "bic")
    key = None if best is None else _key(best)
    for _, point in table:
        point.criterion = point.bic
        point.best = _key(point) == key
    if key is None:
        return table, None
    return table, (fitted[key] if key in fitted else fit(dataclasses.replace(best)))[1]


def _key(point: GridPoint) -> tuple[int, str]:
    return point.n_components, point.covariance_type


def _fit_shared(
    rows: RowSource,
    class_names: list[str],
    options: FitOptions,
    reducer: Reducer,
    class_priors: np.ndarray | None,
    point: GridPoint,
) -> tuple[GridPoint, GaussianMixture | None]:
    """``point`` of select_shared() fitted (its row filled in), and its model (None if it
    failed)."""
    started = time.perf_counter()
    model = None
    try:
        fitted = dataclasses.replace(options, covariance_type=point.covariance_type)
        model = fit_labelled(
            rows,
            Classes.per_class(class_names, point.n_components),
            fitted,
            reducer=reducer,
            class_priors=class_priors,
        )
        info = model.fit_info
        point.n_parameters, point.log_likelihood = info.n_parameters, info.log_likelihood
        point.bic, point.aic = info.bic, info.aic
        point.converged, point.n_iter = info.converged, info.n_iter
        point.degenerate = info.degenerate
        if info.degenerate:
            point.status = f"degenerate: {info.degenerate_reason}"
    except GMMError as err:
        point.status, point.failure = f"failed: {err}", err
    point.seconds = time.perf_counter() - started
    return point, model
