"""Fits to labelled rows: semi-supervised EM and the fit of rows all labelled.

Each class names one component, or several (Classes: each component's class, its owner);
a fit may have more components, of no class. A labelled row's responsibilities stay at
its class's components throughout EM (em.barred_components), unlabelled rows are fitted
as usual, and the log-likelihood EM climbs is the complete-data term of the labelled rows
(the class's mixture, for a class of several components) plus the mixture term of the
others (mclust's MclustSSC). The start is one M-step on the labelled rows, each at its
class's component, and on the unlabelled rows at the components of no class; a group of
several components (a class's, or those of no class) is first placed on its own rows by
the usual start (options.init).

When every row is labelled and each class has one component, the fit is that M-step and
nothing more, no EM (mclust's EDDA for one structure: LDA with a tied covariance, QDA with
full ones); its log-likelihood is then the mixture's, Σ log Σₖ πₖ N(x | k), as mclust
reports it, with the classes' weights (or given priors) as πₖ.

Rows with missing values (NaN) go through the marginal E-step (gmmcli.core.gaps), so their
moments depend on the parameters: in the start a missing value counts as the data's centre
with the data's variance (a group's start shares a row among its components by the
features the row has), and EM runs until the fit converges, rows all labelled too.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from gmmcli.core.covariance import Covariance
from gmmcli.core.em import (
    SERIAL,
    UNLABELLED,
    Block,
    EMResult,
    Params,
    Prepared,
    Reducer,
    RowSource,
    Stats,
    accumulate,
    e_step,
    log_joint,
    m_step,
    nan_mask,
    run_em,
)
from gmmcli.core.fit import (
    Starts,
    check_components,
    check_coverage,
    degeneracy,
    explicit_start,
    fit_record,
    fitted_model,
    reordered,
    summarise,
    unregularised,
    warn_about_inputs,
)
from gmmcli.core.gaps import Layout
from gmmcli.core.model import Classes, GaussianMixture
from gmmcli.core.options import DEFAULT_OPTIONS, FitOptions
from gmmcli.core.structures import get_covariance
from gmmcli.errors import DataError, InvalidParameter, SingularCovarianceError, UserError


@dataclass
class ClassRows:
    """A source of labelled rows seen as plain rows: those for which ``keep(classes)`` is
    true keep their weights, the others weigh 0 in their places (every row when ``keep``
    is None); the classes are not passed on."""

    source: RowSource
    keep: Callable[[np.ndarray], np.ndarray] | None = None

    def __getattr__(self, name: str):
        return getattr(self.source, name)  # n_features, n_parts, centre, block_rows

    def map_parts(self, function):
        # (a partial of module-level functions: it goes to a cluster's workers)
        return self.source.map_parts(functools.partial(_plain_part, function, self.keep))

    def centred(self, centre: np.ndarray, dtype: type = np.float64) -> ClassRows:
        return ClassRows(self.source.centred(centre, dtype), self.keep)


def _plain_part(function, keep, blocks: Iterable[Block], index: int, first_row: int):
    """``function`` of a part's blocks without their classes, the rows that ``keep``
    (ClassRows) refuses at weight 0."""
    plain = (
        (X, weights if keep is None else np.where(keep(classes), weights, 0.0))
        for X, weights, classes in blocks
    )
    return function(plain, index, first_row)


def class_weights(rows: RowSource, n_classes: int, reducer: Reducer = SERIAL) -> np.ndarray:
    """The total weight of each class's rows, then of the unlabelled rows, (C + 1,)."""

    def block(X: np.ndarray, weights: np.ndarray, classes: np.ndarray) -> np.ndarray:
        return np.bincount(
            np.where(classes == UNLABELLED, n_classes, classes), weights, n_classes + 1
        )

    return reducer.sum(rows, block)


def _start_stats(
    starts: dict[int, Prepared],
    owners: np.ndarray,
    cov: Covariance,
    variances: np.ndarray,
    X: np.ndarray,
    weights: np.ndarray,
    classes: np.ndarray,
) -> Stats:
    """A block's statistics for the start: each row among its class's components
    (``owners``: each component's class; UNLABELLED for an unlabelled row and the
    components of no class): at the one there is, or shared among them by the group's
    start (``starts``; by the features a row has); an unlabelled row is not counted when
    there are none. A missing value counts as the data's centre with its variance
    (``variances``), as under the whole data's Gaussian."""
    resp = np.zeros((len(owners), len(X)))
    for group in np.unique(classes):
        rows, members = np.flatnonzero(classes == group), np.flatnonzero(owners == group)
        if group not in starts:
            resp[members[:1], rows[:, None]] = 1.0  # (none: not counted)
            continue
        log_prob = _observed_log_joint(X[rows], starts[group])
        log_prob -= log_prob.max(axis=0)
        shares = np.exp(log_prob)
        resp[np.ix_(members, rows)] = shares / shares.sum(axis=0)
    gaps = nan_mask(X)
    if gaps is None:
        return accumulate(X, weights, resp, cov)
    stats = accumulate(np.where(gaps, 0.0, X), weights, resp, cov)
    missing = (resp * weights) @ (gaps * variances)  # (K, D)
    stats.second += cov.second_from_matrices(missing[:, :, None] * np.eye(X.shape[1]))
    return stats


def _observed_log_joint(X: np.ndarray, prepared: Prepared) -> np.ndarray:
    """log πₖ + log N(x | k) of each row over the features it has (NaN: missing)."""
    gaps = nan_mask(X)
    if gaps is None:
        return log_joint(X, prepared)[1]
    prepared, filled = prepared.in_float64, np.where(gaps, 0.0, X)
    offsets = prepared.marginal.gaps(filled, Layout.of(gaps)).row_offsets()
    return log_joint(filled, prepared)[1] + offsets


def fit_labelled(
    rows: RowSource,
    classes: Classes,
    options: FitOptions = DEFAULT_OPTIONS,
    *,
    reducer: Reducer = SERIAL,
    feature_names: list[str] | None = None,
    class_priors: np.ndarray | None = None,
    on_iteration: Callable[[int, int, float], None] | None = None,
) -> GaussianMixture:
    """Fit the components of ``classes`` (Classes.named: the classes' first, in class
    order, then those of no class; Classes.per_class: several a class) to rows whose
    blocks carry each row's class (an index into ``classes.names``, UNLABELLED for
    none); the components come out by class, then those of no class, each group in
    descending weight. Every row labelled and one component a class: one M-step (with
    ``class_priors`` as the weights when given); every row labelled otherwise: EM, then
    the mixture's log-likelihood (each class weighing its prior when given). Restarts as
    fit_rows(), when a group's start is random (else there is nothing to restart). A
    complete start in ``options`` (weights_init, means_init, precisions_init) is refined:
    EM from it, its components in its order (rows all labelled, one component a class:
    the M-step of the labels, whatever the start)."""
    cov = get_covariance(options.covariance_type)
    class_names, owners = list(classes.names), np.array(classes.owners)
    n_classes, n_components = len(class_names), len(owners)
    n_features = rows.n_features
    weights = class_weights(rows, n_classes, reducer)
    if np.any(weights[:n_classes] <= 0):
        empty = class_names[int(np.argmax(weights[:n_classes] <= 0))]
        raise DataError(f"class {empty!r} has no row with a positive weight")
    all_labelled = weights[n_classes] <= 0
    if all_labelled and UNLABELLED in owners:
        raise InvalidParameter(
            "n_components",
            n_components,
            f"the {n_classes} classes: every row is labelled, so no component is left for "
            "rows of no class",
        )
    groups = [*range(n_classes), UNLABELLED]
    sizes = {group: int(np.sum(owners == group)) for group in groups}
    # the groups whose components start by options.init on their rows: a class with
    # several components, and the components of no class
    started = [g for g in groups if sizes[g] > 1 or (g == UNLABELLED and sizes[g] > 0)]
    if class_priors is not None:
        class_priors = _checked_priors(class_priors, n_classes, all_labelled)
    explicit = options.given_start[1]
    data = summarise(ClassRows(rows), reducer, n_components)
    check_components(n_components, data.n_samples)
    warn_about_inputs(data, options.reg_covar)
    gaps = data.coverage is not None
    check_coverage(data, cov, feature_names)
    plain_rows = rows.centred(data.centre)
    em_rows = rows.centred(data.centre, options.em_dtype)
    seed = int(np.random.SeedSequence().entropy) if options.seed is None else options.seed
    runs, failure = [], None
    with reducer.session(em_rows):
        from_labels = not explicit or (all_labelled and not started)  # (the M-step is the fit)
        group_starts = {
            g: _group_starts(plain_rows, g, class_names, sizes[g], options, reducer)
            for g in (started if from_labels else ())
        }
        for restart, child in enumerate(np.random.SeedSequence(seed).spawn(options.n_init)):
            rng = np.random.default_rng(child)
            try:
                if from_labels:
                    starts = {
                        g: Prepared.of(s.draw(restart, rng), cov) for g, s in group_starts.items()
                    }
                    block = functools.partial(_start_stats, starts, owners, cov, data.variances)
                    start_stats = reducer.sum(plain_rows, block)
                    start = m_step(start_stats, cov, options.reg_covar, None)
                else:
                    shape = (n_components, n_features)
                    start = explicit_start(None, shape, cov, plain_rows.centre, options)
                if all_labelled and not gaps and not started:  # K = C: the M-step is the fit
                    start.weights = start.weights if class_priors is None else class_priors
                    mixture = mixture_log_likelihood(em_rows, start, cov, reducer, options.em_dtype)
                    stats = dataclasses.replace(start_stats, log_likelihood=mixture)
                    runs.append(EMResult(start, stats, [mixture / data.total_weight], 0, True))
                    break
                result = run_em(
                    em_rows,
                    start,
                    options,
                    total_weight=data.total_weight,
                    reducer=reducer,
                    on_iteration=None
                    if on_iteration is None
                    else (lambda it, ll, r=restart: on_iteration(r, it, ll)),
                    owners=owners,
                )
            except SingularCovarianceError as err:
                failure = err
                continue
            if all_labelled:  # EM (gaps, or several components a class), then as above
                if class_priors is not None:
                    result.params.weights = _with_priors(
                        result.params.weights, owners, class_priors
                    )
                mixture = mixture_log_likelihood(
                    em_rows, result.params, cov, reducer, options.em_dtype
                )
                result.stats = dataclasses.replace(result.stats, log_likelihood=mixture)
            runs.append(result)
            if not (started and from_labels):  # a start with nothing random to restart
                break
    if not runs:
        raise failure
    best = max(runs, key=lambda result: result.stats.log_likelihood)
    params, stats = best.params, best.stats
    plain = unregularised(params, stats, cov, options.reg_covar)
    order = np.arange(n_components)  # a given start's; else by group, each by weight
    if not explicit:
        members = [np.flatnonzero(owners == g) for g in groups]
        order = np.concatenate([m[np.argsort(-params.weights[m], kind="stable")] for m in members])
    params = reordered(params, order, cov)
    reason = degeneracy(params, stats.nk[order], cov, data, plain[order])
    init = "labels" if from_labels and not started else options.init if from_labels else "explicit"
    info = fit_record(best, data, options, (init, seed), reason)
    named = Classes(classes.names, tuple(int(owner) for owner in owners[order]))
    return fitted_model(params, em_rows.centre, cov, feature_names, info, named)


def _group_starts(
    rows: RowSource,
    group: int,
    class_names: list[str],
    count: int,
    options: FitOptions,
    reducer: Reducer,
) -> Starts:
    """Starts of the ``count`` components of a class (or of no class: ``group``
    UNLABELLED) on its rows alone (options.init)."""
    own = ClassRows(rows, functools.partial(np.equal, group))
    data = summarise(own, reducer, count)
    if data.n_samples < count:
        whose = "of no class" if group == UNLABELLED else f"of class {class_names[group]!r}"
        rows_of = "the unlabelled rows" if group == UNLABELLED else "its rows"
        raise UserError(
            f"{count} components {whose} start on {rows_of}, but only {data.n_samples} have "
            "a positive weight: lower {n_components}",
            ("n_components",),
        )
    return Starts(own, data, count, options, reducer)


def _checked_priors(priors, n_classes: int, all_labelled: bool) -> np.ndarray:
    """Class priors as the weights of a fit of rows all labelled: C non-negative numbers,
    not all 0, scaled to sum to 1."""
    if not all_labelled:
        raise UserError(
            "{class_priors} needs every row labelled (with unlabelled rows EM fits the "
            "classes' weights): leave it out",
            ("class_priors",),
        )
    priors = np.asarray(priors, dtype=float)
    if priors.shape != (n_classes,) or not np.all(priors >= 0) or priors.sum() <= 0:
        raise InvalidParameter(
            "class_priors", priors.tolist(), f"{n_classes} non-negative numbers, not all 0"
        )
    return priors / priors.sum()


def _with_priors(weights: np.ndarray, owners: np.ndarray, priors: np.ndarray) -> np.ndarray:
    """Component weights whose classes (``owners``) weigh ``priors``, each component its
    share of its class's weight."""
    class_weight = np.bincount(owners, weights, len(priors))
    return priors[owners] * weights / class_weight[owners]


def mixture_log_likelihood(
    em_rows: RowSource, params: Params, cov: Covariance, reducer: Reducer, dtype=np.float64
) -> float:
    """Σ w log Σₖ πₖ N(x | k) at ``params``: one pass, no row kept to its class."""
    prepared = Prepared.of(params, cov, dtype)
    return reducer.sum(em_rows, functools.partial(e_step, prepared=prepared)).log_likelihood
