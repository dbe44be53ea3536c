"""fit_rows(): restarts, the degeneracy rule and canonical component order, on any rows."""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from gmmcli.core.covariance import Covariance, empty_components
from gmmcli.core.em import (
    SERIAL,
    EMResult,
    Params,
    Prepared,
    Reducer,
    RowSource,
    Stats,
    add_up,
    e_step,
    has_gaps,
    rounding_allowance,
    run_em,
)
from gmmcli.core.init import (
    HcTree,
    initial_params,
    observed_start,
    observed_whole_start,
    whole_data_start,
)
from gmmcli.core.missing import CompleteRows, Coverage, starts_from_complete
from gmmcli.core.model import Classes, FitInfo, GaussianMixture, n_parameters
from gmmcli.core.options import DEFAULT_OPTIONS, FitOptions, whole_number
from gmmcli.core.structures import get_covariance
from gmmcli.errors import DataError, GMMWarning, InvalidParameter, SingularCovarianceError

COLLAPSE_RATIO = 1e-6
REG_COVAR_DOMINANCE = 1e-3


@dataclass
class DataSummary:
    """Weighted centre and covariance of the training rows; for rows with gaps, also the
    pairwise Coverage of all rows and the weight of the complete ones."""

    centre: np.ndarray
    covariance: np.ndarray
    total_weight: float
    n_samples: int
    coverage: Coverage | None = None  # None: no row has a gap
    complete: DataSummary | None = None  # with gaps: the complete rows' own, if any

    @property
    def missing_cells(self) -> int:
        return 0 if self.coverage is None else self.coverage.missing_cells

    @property
    def variances(self) -> np.ndarray:
        """Each feature's variance."""
        return np.diag(self.covariance)

    @property
    def variance(self) -> float:
        """The mean variance per feature."""
        return float(np.trace(self.covariance) / len(self.centre))


def summarise(rows: RowSource, reducer: Reducer = SERIAL, n_components: int = 1) -> DataSummary:
    """One pass: the weighted centre, covariance and counts of the rows (Moments; with
    gaps, see described()).

    Finite data whose sums overflow float64 are a SingularCovarianceError with
    ``overflow`` set, found here, before any other pass computes with them.
    """
    origin = np.zeros(rows.n_features)
    return described(reducer.sum(rows.centred(origin), gathered), origin, n_components)


@dataclass
class Moments:
    """Total weight, rows of positive weight, weighted mean and scatter Σw(x−x̄)(x−x̄)ᵀ of
    some rows. Two are added by the pairwise rule for means and scatters (Chan, Golub and
    LeVeque), so one pass finds them without knowing the centre first."""

    weight: float
    n_samples: int
    mean: np.ndarray
    scatter: np.ndarray

    def __add__(self, other: Moments) -> Moments:
        total = self.weight + other.weight
        share = other.weight / total
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow: described()
            delta = other.mean - self.mean
            mean = self.mean + delta * share
            scatter = self.scatter + other.scatter + np.outer(delta, delta * self.weight * share)
        return Moments(total, self.n_samples + other.n_samples, mean, scatter)


@dataclass
class Gathered:
    """What a pass gathers for the data's summary: the Moments of the complete rows and
    the Coverage of the rows with gaps (either None when there are none)."""

    moments: Moments | None
    coverage: Coverage | None = None

    def __add__(self, other: Gathered) -> Gathered:
        return Gathered(
            add_up([self.moments, other.moments]), add_up([self.coverage, other.coverage])
        )


def gathered(X: np.ndarray, weights: np.ndarray) -> Gathered:
    """A block's Gathered."""
    if not has_gaps(X):
        return Gathered(block_moments(X, weights))
    complete = ~np.isnan(X).any(axis=1)
    return Gathered(
        block_moments(X[complete], weights[complete]),
        Coverage.of(X[~complete], weights[~complete]),
    )


def described(gathered: Gathered | None, origin: np.ndarray, n_components: int) -> DataSummary:
    """The data's summary from what a pass gathered, the rows' coordinates starting at
    ``origin``. With rows with gaps, the centre is each feature's mean where it is
    observed, and the covariance the complete rows' when they weigh enough (starts_from_
    complete) for ``n_components``, else the pairwise one (Coverage.covariance)."""
    moments, coverage = (None, None) if gathered is None else (gathered.moments, gathered.coverage)
    if coverage is None:
        if moments is None:
            raise DataError("no row with a positive weight is left to fit")
        centre = _finite(origin + moments.mean)
        covariance = _finite(moments.scatter / moments.weight)
        return DataSummary(centre, covariance, moments.weight, moments.n_samples)
    complete, n_samples, joined = None, coverage.n_samples, coverage
    if moments is not None:
        complete = described(Gathered(moments), origin, n_components)
        n_samples += moments.n_samples
        joined = coverage.with_complete(moments.weight, moments.mean, moments.scatter)
    if joined.weight <= 0:
        raise DataError("no row with a positive weight is left to fit")
    if complete and starts_from_complete(complete.total_weight, n_components, len(origin)):
        covariance = complete.covariance
    else:
        covariance = _finite(joined.covariance())
    with np.errstate(invalid="ignore", divide="ignore"):  # a feature never seen: fit_rows
        centre = origin + np.nan_to_num(joined.feature_means())
    return DataSummary(_finite(centre), covariance, joined.weight, n_samples, joined, complete)


def block_moments(X: np.ndarray, weights: np.ndarray) -> Moments | None:
    """A block's Moments (None when no row weighs anything)."""
    total = float(weights.sum())
    if total <= 0:
        return None
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow: described()
        mean = weights @ X / total
        scaled = (X - mean) * np.sqrt(weights)[:, None]
        scatter = scaled.T @ scaled  # (numpy multiplies a matrix by its own transpose by syrk)
    return Moments(total, int(np.count_nonzero(weights)), mean, scatter)


@dataclass
class _FirstPass:
    """A block's E-step statistics under a given start and its Gathered (fit_rows)."""

    stats: Stats
    gathered: Gathered

    def __add__(self, other: _FirstPass) -> _FirstPass:
        return _FirstPass(self.stats + other.stats, self.gathered + other.gathered)


def _stats_and_summary(prepared: Prepared, X: np.ndarray, weights: np.ndarray) -> _FirstPass:
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow: described()
        return _FirstPass(e_step(X, weights, prepared=prepared), gathered(X, weights))


def _finite(summary: np.ndarray) -> np.ndarray:
    """A summary of finite data, unless it overflowed."""
    if not np.isfinite(summary).all():
        raise SingularCovarianceError(None, overflow=True)
    return summary


def unregularised(params: Params, stats: Stats, cov: Covariance, reg_covar: float) -> np.ndarray:
    """Every component's covariance (K, D, D) as the M-step gives it without reg_covar,
    from the final statistics (Covariance.unregularised)."""
    means = stats.sx / np.where(empty_components(stats.nk), 1.0, stats.nk)[:, None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GMMWarning)  # a capped inner loop was reported
        return cov.unregularised(params.covariances, stats.nk, means, stats.second, reg_covar)


def degeneracy(
    params: Params,
    nk: np.ndarray,
    cov: Covariance,
    data: DataSummary,
    unregularised: np.ndarray,
) -> str | None:
    """Why a fit is degenerate, or None.

    Component k has collapsed when its covariance before regularisation has an eigenvalue
    λ below 1e-6 · vᵀ Σ_data v (v the eigenvector), or when it holds fewer effective rows
    than the structure's estimate needs: D + 1 for a component's own full covariance, 2
    for its own variances or volume, at least 1 for any; and in all, what shared
    parameters need (Covariance.own_rows, pooled_rows).
    """
    n_components, n_features = params.means.shape
    own, rule = cov.own_rows(n_components, n_features)
    few = np.nonzero(nk < max(own, 1))[0]
    if len(few):
        k = int(few[0])
        needs = rule if rule == str(own) else f"{rule} = {own}"
        return (
            f"component {k} holds {nk[k]:.3g} effective rows, fewer than the {needs} "
            f"its {cov.name} covariance needs"
        )
    pooled = cov.pooled_rows(n_components, n_features)
    if pooled is not None and nk.sum() < pooled[0]:
        return (
            f"the components hold {nk.sum():.3g} effective rows in all, fewer than the "
            f"{pooled[1]} = {pooled[0]} their shared {cov.name} covariance needs"
        )
    full = cov.full_matrices(params.covariances, n_components, n_features)
    broken = ~np.isfinite(unregularised).all(axis=(1, 2))
    values, vectors = np.linalg.eigh(np.where(broken[:, None, None], 0.0, unregularised))
    smallest, direction = values[:, 0], vectors[:, :, 0]
    spread = np.einsum("ki,ij,kj->k", direction, data.covariance, direction)
    slack = 64 * np.finfo(float).eps * np.abs(full).max(axis=(1, 2))
    collapsed = np.nonzero(broken | (smallest < COLLAPSE_RATIO * spread - slack))[0]
    if len(collapsed):
        k = int(collapsed[0])
        if broken[k]:
            return f"component {k} has collapsed: its covariance is singular"
        return (
            f"component {k} has collapsed: its variance along one direction is "
            f"{smallest[k]:.3g}, below {COLLAPSE_RATIO:g} of the data's {spread[k]:.3g}"
        )
    return None


def check_components(n_components: int, n_samples: int | None = None) -> None:
    """K must be a whole number from 1 to the ``n_samples`` rows of positive weight (when
    they are known; at least 1 before the rows are read)."""
    if not whole_number(1).test(n_components):
        raise InvalidParameter("n_components", n_components, "a whole number of at least 1")
    if n_samples is not None and n_components > n_samples:
        raise InvalidParameter(
            "n_components",
            n_components,
            f"a whole number from 1 to the {n_samples} rows with positive weight",
        )


def explicit_start(
    start: Params | None, shape: tuple[int, int], cov: Covariance, centre: np.ndarray, options
) -> Params:
    """``start`` (None when all three are given) with the options' initial values put in.

    Initial values have scikit-learn's shapes and meaning; means are centred here.
    """
    n_components, n_features = shape
    start = start or Params(None, None, None, None)
    if options.weights_init is not None:
        start.weights = np.asarray(options.weights_init, dtype=float)
        if start.weights.shape != (n_components,) or abs(start.weights.sum() - 1) > 1e-6:
            raise InvalidParameter(
                "weights_init", options.weights_init, f"{n_components} weights summing to 1"
            )
    if options.means_init is not None:
        means = np.asarray(options.means_init, dtype=float)
        if means.shape != (n_components, n_features):
            raise InvalidParameter(
                "means_init", means.shape, f"of shape ({n_components}, {n_features})"
            )
        start.means = means - centre
    if options.precisions_init is not None:
        precisions = np.asarray(options.precisions_init, dtype=float)
        expected = cov.shape(n_components, n_features)
        if precisions.shape != expected:
            raise InvalidParameter("precisions_init", precisions.shape, f"of shape {expected}")
        start.prec_chol = cov.precision_cholesky_from_precisions(precisions)
        start.covariances = cov.covariances_from_precision_cholesky(start.prec_chol)
    return start


def _canonical_order(params: Params, centre: np.ndarray) -> np.ndarray:
    """Descending weight, ties broken by the means in lexicographic order."""
    means = params.means + centre
    return np.lexsort((*means.T[::-1], -params.weights))


def fit_rows(
    rows: RowSource,
    n_components: int,
    options: FitOptions = DEFAULT_OPTIONS,
    *,
    reducer: Reducer = SERIAL,
    feature_names: list[str] | None = None,
    on_iteration: Callable[[int, int, float], None] | None = None,
    hc_trees: Mapping[int, HcTree] | None = None,
) -> GaussianMixture:
    """Fit by EM on rows from any source (arrays, a file read in chunks, a cluster).

    Restart i draws from ``SeedSequence(options.seed).spawn(n_init)[i]``; a seed of None
    draws fresh entropy and records it in ``fit_info.seed``. The best restart by final
    log-likelihood wins, but a degenerate one never beats a sound one. Without a given
    start, components come back in canonical order (descending weight, ties by the
    means); ``options.canonical_order`` overrides that either way.
    ``on_iteration(restart, iteration, mean_log_likelihood)`` is called after every EM
    iteration; ``reducer`` runs every pass over the rows. A restart that starts from hc
    cuts ``hc_trees[restart]`` when given (select-k builds them once for every K).
    """
    cov = get_covariance(options.covariance_type)
    seed = int(np.random.SeedSequence().entropy) if options.seed is None else options.seed
    shape = (n_components, rows.n_features)
    explicit, complete = options.given_start
    given = None  # a complete start in float64: its statistics and the summary in one pass
    if complete and np.dtype(options.em_dtype) == np.float64:
        given = explicit_start(None, shape, cov, np.zeros(shape[1]), options)
        centre = given.weights @ given.means
        given.means = given.means - centre
        rows = em_rows = rows.centred(centre)
    else:
        data = summarise(rows, reducer, n_components)
        rows, em_rows = rows.centred(data.centre), rows.centred(data.centre, options.em_dtype)

    runs: list[tuple[EMResult, str | None, np.ndarray]] = []
    failure: SingularCovarianceError | None = None
    with reducer.session(em_rows):
        start_stats = None
        if given is not None:
            prepared = Prepared.of(given, cov)
            first = reducer.sum(em_rows, functools.partial(_stats_and_summary, prepared))
            data = described(first and first.gathered, em_rows.centre, n_components)
            start_stats = first.stats
        check_components(n_components, data.n_samples)
        check_coverage(data, cov, feature_names)
        warn_about_inputs(data, options.reg_covar)
        starts = Starts(rows, data, n_components, options, reducer)
        for restart, child in enumerate(np.random.SeedSequence(seed).spawn(options.n_init)):
            rng = np.random.default_rng(child)
            try:
                start = given
                if not complete:
                    start = starts.draw(restart, rng, (hc_trees or {}).get(restart))
                if given is None:
                    start = explicit_start(start, shape, cov, em_rows.centre, options)
                result = run_em(
                    em_rows,
                    start,
                    options,
                    total_weight=data.total_weight,
                    reducer=reducer,
                    on_iteration=None
                    if on_iteration is None
                    else (lambda it, ll, r=restart: on_iteration(r, it, ll)),
                    start_stats=start_stats,
                )
            except SingularCovarianceError as err:
                failure = err
                continue
            plain = unregularised(result.params, result.stats, cov, options.reg_covar)
            reason = degeneracy(result.params, result.stats.nk, cov, data, plain)
            runs.append((result, reason, plain))
    if not runs:
        raise failure

    best, reason, plain = _best_run(runs, options.em_dtype)
    params = best.params
    canonical_order = not explicit if options.canonical_order is None else options.canonical_order
    if canonical_order:
        order = _canonical_order(params, em_rows.centre)
        params = reordered(params, order, cov)
        reason = degeneracy(params, best.stats.nk[order], cov, data, plain[order])
    init = "explicit" if explicit else "kmeans" if starts.start_rows is None else options.init
    info = fit_record(best, data, options, (init, seed), reason)
    return fitted_model(params, em_rows.centre, cov, feature_names, info)


def fitted_model(
    params: Params,
    centre: np.ndarray,
    cov: Covariance,
    feature_names: list[str] | None,
    info: FitInfo,
    classes: Classes | None = None,
) -> GaussianMixture:
    """The model of a fit's parameters (about ``centre``), its weights scaled to sum to 1;
    warned about as its record asks (warn_about_fit)."""
    model = GaussianMixture(
        params.weights / params.weights.sum(),
        params.means + centre,
        params.covariances,
        cov.name,
        feature_names,
        info,
        classes,
    )
    warn_about_fit(info)
    return model


def reordered(params: Params, order: np.ndarray, cov: Covariance) -> Params:
    """``params`` with their components in ``order``."""
    return Params(
        params.weights[order],
        params.means[order],
        cov.select(params.covariances, order),
        cov.select(params.prec_chol, order),
    )


def fit_record(
    best: EMResult,
    data: DataSummary,
    options: FitOptions,
    start: tuple[str, int],
    reason: str | None,
) -> FitInfo:
    """The FitInfo of a fit's best run on ``data`` with ``options``: its ``start`` (how it
    started, its seed) and why it is degenerate (None: it is not)."""
    cov = get_covariance(options.covariance_type)
    return FitInfo(
        log_likelihood=best.stats.log_likelihood,
        n_iter=best.n_iter,
        converged=best.converged,
        degenerate=reason is not None,
        degenerate_reason=reason,
        n_samples=data.n_samples,
        total_weight=data.total_weight,
        n_parameters=n_parameters(cov, *best.params.means.shape),
        init=start[0],
        n_init=options.n_init,
        max_iter=options.max_iter,
        tol=options.tol,
        reg_covar=options.reg_covar,
        seed=start[1],
        largest_drop=best.largest_drop,
        history=best.history,
        missing_cells=data.missing_cells,
    )


@dataclass
class Starts:
    """Starts of ``n_components`` on ``rows`` (summarised by ``data``), restart after
    restart: by each restart's options.init on the rows, or, with gaps, on the complete
    ones when they weigh enough (starts_from_complete), else observed_start()'s. What an
    empty component keeps (the whole data) is found once, when first needed."""

    rows: RowSource
    data: DataSummary
    n_components: int
    options: FitOptions
    reducer: Reducer

    def __post_init__(self) -> None:
        self.cov = get_covariance(self.options.covariance_type)
        self.start_rows, self.start_data = self.rows, self.data
        complete = self.data.complete
        if self.data.coverage is not None:
            enough = complete and starts_from_complete(
                complete.total_weight, self.n_components, self.rows.n_features
            )
            self.start_rows, self.start_data = (
                (CompleteRows(self.rows), complete) if enough else (None, self.data)
            )

    @functools.cached_property
    def fallback(self) -> Params:
        """Every component as the whole data."""
        if self.start_rows is None:
            return observed_whole_start(
                self.data, self.n_components, self.cov, self.options.reg_covar
            )
        return whole_data_start(
            self.start_rows, self.n_components, self.cov, self.options.reg_covar, self.reducer
        )

    def draw(self, restart: int, rng: np.random.Generator, hc: HcTree | None = None) -> Params:
        """Restart ``restart``'s start (``hc``: the tree an hc start cuts, if built)."""
        if self.start_rows is None:
            return observed_start(
                self.rows,
                self.n_components,
                self.cov,
                self.options.reg_covar,
                data=self.data,
                fallback=self.fallback,
                rng=rng,
                reducer=self.reducer,
            )
        return initial_params(
            self.start_rows,
            self.n_components,
            dataclasses.replace(self.options, init=self.options.init_for(restart)),
            data=self.start_data,
            fallback=self.fallback,
            rng=rng,
            reducer=self.reducer,
            hc=hc,
        )


def check_coverage(data: DataSummary, cov: Covariance, feature_names: list[str] | None) -> None:
    """Rows with gaps must still give every parameter data: every feature a value, and
    for structures with covariances between features, every pair a row that has both."""
    if data.coverage is None:
        return

    def name(feature: int) -> str:
        return repr(feature_names[feature]) if feature_names else f"feature {feature}"

    unseen = data.coverage.unseen_pairs()
    empty = [a for a, b in unseen if a == b]
    if empty:
        raise DataError(
            f"{', '.join(map(name, empty))} has no value in any row: leave it out of the fit"
        )
    if unseen and cov.stores_matrices:
        a, b = unseen[0]
        raise DataError(
            f"no row has both {name(a)} and {name(b)} ({len(unseen)} such pair(s)), so their "
            f"covariance has no data: fit a {cov.name} covariance on fewer features, or a "
            "diagonal structure (diag, spherical)"
        )


def _best_run(runs: list[tuple[EMResult, str | None, np.ndarray]], dtype: type):
    """The restart with the highest log-likelihood, sound before degenerate; restarts
    within rounding of the highest count as equal and the first of them wins, so the
    choice does not hang on the order in which partial sums were added."""
    sound = [run for run in runs if run[1] is None] or runs
    top = max(result.stats.log_likelihood for result, *_ in sound)
    slack = rounding_allowance(dtype) * abs(top)
    return next(run for run in sound if run[0].stats.log_likelihood >= top - slack)


def warn_about_inputs(data: DataSummary, reg_covar: float) -> None:
    if data.total_weight < data.n_samples:
        warnings.warn(
            f"the weights sum to {data.total_weight:.4g}, less than the {data.n_samples} rows "
            "they weigh: weights are frequencies (counts), so BIC and AIC are not meaningful "
            "for normalised weights",
            GMMWarning,
            stacklevel=3,
        )
    variances = np.diag(data.covariance)
    smallest = int(np.argmin(variances))
    if reg_covar > REG_COVAR_DOMINANCE * variances[smallest]:
        warnings.warn(
            f"reg_covar {reg_covar:g} exceeds {REG_COVAR_DOMINANCE:g} of the variance of "
            f"feature {smallest} ({variances[smallest]:.3g}) and dominates it; "
            "rescale data given in tiny units or drop constant features",
            GMMWarning,
            stacklevel=3,
        )


def warn_about_fit(info: FitInfo) -> None:
    if info.largest_drop > 0:
        warnings.warn(
            f"the log-likelihood dropped by {info.largest_drop:.3g} per sample during EM; "
            "this points to a numerical problem, try a larger reg_covar",
            GMMWarning,
            stacklevel=3,
        )
    if info.degenerate:
        warnings.warn(f"degenerate fit: {info.degenerate_reason}", GMMWarning, stacklevel=3)
    if not info.converged and info.tol > 0:
        warnings.warn(
            f"EM did not converge in {info.max_iter} iterations (tol {info.tol:g}); "
            "raise max_iter or tol",
            GMMWarning,
            stacklevel=3,
        )
