"""fit(): validation, restarts, the degeneracy rule and canonical component order."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from gmmcli.core.covariance import Covariance, SingularCovarianceError, get_covariance
from gmmcli.core.em import (
    EMResult,
    InMemoryRows,
    Params,
    RowSource,
    accumulate,
    block_rows_for,
    rounding_allowance,
    run_em,
    sum_blocks,
)
from gmmcli.core.init import INIT_METHODS, INIT_SAMPLE, initial_params, whole_data_start
from gmmcli.core.model import FitInfo, GaussianMixture, n_parameters
from gmmcli.errors import GMMError, GMMWarning

COLLAPSE_RATIO = 1e-6
REG_COVAR_DOMINANCE = 1e-3


@dataclass
class DataSummary:
    """Weighted centre and covariance of the training rows."""

    centre: np.ndarray
    covariance: np.ndarray
    total_weight: float
    n_samples: int


def summarise(rows: RowSource) -> DataSummary:
    """Two passes: the weighted centre (and counts), then the covariance about it."""
    raw = rows.centred(np.zeros(rows.n_features))
    sums = sum_blocks(raw, lambda X, w: np.concatenate([[w.sum(), np.count_nonzero(w)], w @ X]))
    if sums is None or sums[0] <= 0:
        raise GMMError("no row with a positive weight is left to fit")
    total, n_samples, centre = float(sums[0]), int(sums[1]), sums[2:] / sums[0]
    full = get_covariance("full")
    stats = sum_blocks(
        rows.centred(centre), lambda X, w: accumulate(X, w, np.ones((1, len(X))), full)
    )
    covariance = full.estimate(stats.nk, stats.sx / total, stats.second, 0.0)[0]
    return DataSummary(centre, covariance, total, n_samples)


def degeneracy(
    params: Params, nk: np.ndarray, cov: Covariance, data: DataSummary, reg_covar: float
) -> str | None:
    """Why a fit is degenerate, or None.

    Component k has collapsed when its covariance before regularisation has an eigenvalue
    λ below 1e-6 · vᵀ Σ_data v (v the eigenvector), or when it holds fewer than D + 1
    effective rows. The same rule for every covariance type keeps model selection
    reproducible.
    """
    n_components, n_features = params.means.shape
    few = np.nonzero(nk < n_features + 1)[0]
    if len(few):
        k = int(few[0])
        return (
            f"component {k} holds {nk[k]:.3g} effective rows, fewer than D + 1 = {n_features + 1}"
        )
    full = cov.full_matrices(params.covariances, n_components, n_features)
    unregularised = full - reg_covar * np.eye(n_features)
    values, vectors = np.linalg.eigh(unregularised)
    smallest, direction = values[:, 0], vectors[:, :, 0]
    spread = np.einsum("ki,ij,kj->k", direction, data.covariance, direction)
    slack = 64 * np.finfo(float).eps * np.abs(full).max(axis=(1, 2))
    collapsed = np.nonzero(smallest < COLLAPSE_RATIO * spread - slack)[0]
    if len(collapsed):
        k = int(collapsed[0])
        return (
            f"component {k} has collapsed: its variance along one direction is "
            f"{smallest[k]:.3g}, below {COLLAPSE_RATIO:g} of the data's {spread[k]:.3g}"
        )
    return None


def validate_data(X, weights, n_components) -> tuple[np.ndarray, np.ndarray]:
    """Arrays checked and converted; the counts are checked again by fit_rows."""
    X = np.asarray(X, dtype=float)
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise GMMError(f"data must be a non-empty 2-D array, got shape {X.shape}")
    if not np.all(np.isfinite(X)):
        raise GMMError("data contain NaN or infinite values")
    weights = np.ones(len(X)) if weights is None else np.asarray(weights, dtype=float)
    if weights.shape != (len(X),):
        raise GMMError(f"weights have shape {weights.shape}, expected ({len(X)},)")
    if not np.all(np.isfinite(weights)) or np.any(weights < 0):
        raise GMMError("weights must be finite and non-negative")
    positive = int(np.count_nonzero(weights))
    if positive == 0:
        raise GMMError("all weights are zero")
    if not 1 <= n_components <= positive:
        raise GMMError(
            f"the number of components (K) must be between 1 and the {positive} rows with "
            f"positive weight, got {n_components}"
        )
    return np.ascontiguousarray(X), weights


def _explicit_start(
    start: Params | None,
    shape: tuple[int, int],
    cov: Covariance,
    centre: np.ndarray,
    weights_init,
    means_init,
    precisions_init,
) -> Params:
    """``start`` (None when all three are given) with the given initial values put in.

    Initial values have scikit-learn's shapes and meaning; means are centred here.
    """
    n_components, n_features = shape
    start = start or Params(None, None, None, None)
    if weights_init is not None:
        start.weights = np.asarray(weights_init, dtype=float)
        if start.weights.shape != (n_components,) or abs(start.weights.sum() - 1) > 1e-6:
            raise GMMError(f"weights_init must be {n_components} weights summing to 1")
    if means_init is not None:
        means = np.asarray(means_init, dtype=float)
        if means.shape != (n_components, n_features):
            raise GMMError(f"means_init must have shape ({n_components}, {n_features})")
        start.means = means - centre
    if precisions_init is not None:
        precisions = np.asarray(precisions_init, dtype=float)
        expected = cov.shape(n_components, n_features)
        if precisions.shape != expected:
            raise GMMError(f"precisions_init must have shape {expected}")
        start.prec_chol = cov.precision_cholesky_from_precisions(precisions)
        start.covariances = cov.covariances_from_precision_cholesky(start.prec_chol)
    return start


def _canonical_order(params: Params, centre: np.ndarray) -> np.ndarray:
    """Descending weight, ties broken by the means in lexicographic order."""
    means = params.means + centre
    return np.lexsort((*means.T[::-1], -params.weights))


def fit(
    X: np.ndarray,
    n_components: int,
    *,
    weights: np.ndarray | None = None,
    covariance_type: str = "full",
    block_rows: int | None = None,
    dtype: str = "float64",
    **options,
) -> GaussianMixture:
    """Fit a mixture of ``n_components`` Gaussians to the rows of ``X`` by EM.

    ``weights`` are frequencies (a row of weight 3 counts as three rows). The other
    options are those of :func:`fit_rows`; ``block_rows`` overrides the automatic block
    size (from D and K).
    """
    cov = get_covariance(covariance_type)
    X, weights = validate_data(X, weights, n_components)
    if block_rows is None:
        block_rows = block_rows_for(cov, X.shape[1], n_components, _dtype(dtype))
    rows = InMemoryRows(X, weights, np.zeros(X.shape[1]), block_rows)
    return fit_rows(rows, n_components, covariance_type=covariance_type, dtype=dtype, **options)


def _dtype(name: str) -> type:
    if name not in ("float32", "float64"):
        raise GMMError(f"dtype must be float32 or float64, got {name!r}")
    return np.dtype(name).type


def fit_rows(
    rows: RowSource,
    n_components: int,
    *,
    covariance_type: str = "full",
    init: str = "kmeans",
    init_sample: int = INIT_SAMPLE,
    n_init: int = 1,
    max_iter: int = 100,
    tol: float = 1e-3,
    reg_covar: float = 1e-6,
    seed: int | None = None,
    weights_init: np.ndarray | None = None,
    means_init: np.ndarray | None = None,
    precisions_init: np.ndarray | None = None,
    feature_names: list[str] | None = None,
    canonical_order: bool | None = None,
    on_iteration: Callable[[int, int, float], None] | None = None,
    dtype: str = "float64",
) -> GaussianMixture:
    """Fit by EM on rows from any source (arrays, a file read in chunks, a cluster).

    Restart i draws from ``SeedSequence(seed).spawn(n_init)[i]``; ``seed=None`` draws
    fresh entropy and records it in ``fit_info.seed``. The best restart by final
    log-likelihood wins, but a degenerate one never beats a sound one. Without initial
    values, components come back in canonical order (descending weight, ties by the
    means); ``canonical_order`` overrides that either way.
    ``on_iteration(restart, iteration, mean_log_likelihood)`` is called after every EM
    iteration. k-means++ seeds on a weighted random sample of about ``init_sample`` rows
    when there are more (0: on every row). ``dtype="float32"`` runs the E-step in single
    precision (data centred in float64 first, statistics summed in float64).
    """
    cov = get_covariance(covariance_type)
    if init not in INIT_METHODS:
        raise GMMError(f"unknown init {init!r}; use one of {', '.join(INIT_METHODS)}")
    if n_init < 1 or max_iter < 1 or tol < 0 or reg_covar < 0 or init_sample < 0:
        raise GMMError(
            "need n_init >= 1, max_iter >= 1, tol >= 0, reg_covar >= 0 and init_sample >= 0"
        )
    em_dtype = _dtype(dtype)
    if seed is None:
        seed = int(np.random.SeedSequence().entropy)
    data = summarise(rows)
    if n_components > data.n_samples:
        raise GMMError(
            f"the number of components (K) must be between 1 and the {data.n_samples} rows "
            f"with positive weight, got {n_components}"
        )
    _warn_about_inputs(data, reg_covar)
    n_features = rows.n_features
    rows, em_rows = rows.centred(data.centre), rows.centred(data.centre, em_dtype)
    given = [v is not None for v in (weights_init, means_init, precisions_init)]
    explicit, complete = any(given), all(given)

    runs: list[tuple[EMResult, str | None]] = []
    failure: SingularCovarianceError | None = None
    fallback = None  # the same for every restart: one pass, on the first that needs it
    for restart, child in enumerate(np.random.SeedSequence(seed).spawn(n_init)):
        rng = np.random.default_rng(child)
        try:
            start = None  # a complete explicit start leaves nothing for the init method
            if not complete:
                fallback = fallback or whole_data_start(rows, n_components, cov, reg_covar)
                start = initial_params(
                    rows,
                    n_components,
                    cov,
                    fallback=fallback,
                    method=init,
                    reg_covar=reg_covar,
                    total_weight=data.total_weight,
                    n_samples=data.n_samples,
                    data_variance=float(np.trace(data.covariance) / n_features),
                    rng=rng,
                    init_sample=init_sample,
                )
            start = _explicit_start(
                start,
                (n_components, n_features),
                cov,
                data.centre,
                weights_init,
                means_init,
                precisions_init,
            )
            result = run_em(
                em_rows,
                start,
                cov,
                total_weight=data.total_weight,
                max_iter=max_iter,
                tol=tol,
                reg_covar=reg_covar,
                dtype=em_dtype,
                on_iteration=None
                if on_iteration is None
                else (lambda it, ll, r=restart: on_iteration(r, it, ll)),
            )
        except SingularCovarianceError as err:
            failure = err
            continue
        runs.append((result, degeneracy(result.params, result.stats.nk, cov, data, reg_covar)))
    if not runs:
        raise failure

    best, reason = _best_run(runs, em_dtype)
    params = best.params
    if canonical_order is None:
        canonical_order = not explicit
    if canonical_order:
        order = _canonical_order(params, data.centre)
        params = Params(
            params.weights[order],
            params.means[order],
            cov.select(params.covariances, order),
            cov.select(params.prec_chol, order),
        )
        reason = degeneracy(params, best.stats.nk[order], cov, data, reg_covar)
    info = FitInfo(
        log_likelihood=best.stats.log_likelihood,
        n_iter=best.n_iter,
        converged=best.converged,
        degenerate=reason is not None,
        degenerate_reason=reason,
        n_samples=data.n_samples,
        total_weight=data.total_weight,
        n_parameters=n_parameters(cov, n_components, n_features),
        init="explicit" if explicit else init,
        n_init=n_init,
        max_iter=max_iter,
        tol=tol,
        reg_covar=reg_covar,
        seed=seed,
        largest_drop=best.largest_drop,
        history=best.history,
    )
    model = GaussianMixture(
        params.weights / params.weights.sum(),
        params.means + data.centre,
        params.covariances,
        cov.name,
        feature_names,
        info,
    )
    _warn_about_fit(info)
    return model


def _best_run(runs: list[tuple[EMResult, str | None]], dtype: type) -> tuple[EMResult, str | None]:
    """The restart with the highest log-likelihood, sound before degenerate; restarts
    within rounding of the highest count as equal and the first of them wins, so the
    choice does not hang on the order in which partial sums were added."""
    sound = [run for run in runs if run[1] is None] or runs
    top = max(result.stats.log_likelihood for result, _ in sound)
    slack = rounding_allowance(dtype) * abs(top)
    return next(run for run in sound if run[0].stats.log_likelihood >= top - slack)


def _warn_about_inputs(data: DataSummary, reg_covar: float) -> None:
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


def _warn_about_fit(info: FitInfo) -> None:
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
