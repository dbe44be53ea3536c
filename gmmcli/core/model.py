"""A fitted (or given) Gaussian mixture: its parameters, predictions and criteria."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from gmmcli.core.blas import one_blas_thread
from gmmcli.core.constrained import Constrained, Parts
from gmmcli.core.covariance import Covariance
from gmmcli.core.em import (
    SERIAL,
    UNLABELLED,
    Params,
    Prepared,
    Reducer,
    aligned_tiles,
    log_joint,
    nan_mask,
    tile_rows,
)
from gmmcli.core.gaps import GapGroup, Layout
from gmmcli.core.structures import get_covariance
from gmmcli.errors import DataError, GMMError, InvalidParameter, SingularCovarianceError

WEIGHT_SUM_TOLERANCE = 1e-9
PREDICTION_TILE_ROWS = 4096  # at most: a partial tile is padded, so a few rows stay cheap
PREDICTION_RUN_ROWS = 1 << 15  # rows of whole tiles given to the reducer at a time
SYMMETRY_TOLERANCE = 1e-10


def _serial() -> Reducer:
    return SERIAL


_prediction_reducer: Callable[[], Reducer] = _serial


def share_predictions(reducer: Callable[[], Reducer]) -> None:
    """Where the model's own methods (predict, predict_proba, score_samples, ...) run their
    runs of tiles: in ``reducer()``, asked at each call. The core chooses no engine, so
    one after the other here until the package wires in the local engine's (gmmcli's
    ``__init__``, on first use of its API)."""
    global _prediction_reducer
    _prediction_reducer = reducer


@dataclass
class FitInfo:
    """How a model was fitted: the training record saved with it."""

    log_likelihood: float
    n_iter: int
    converged: bool
    degenerate: bool
    degenerate_reason: str | None
    n_samples: int
    total_weight: float
    n_parameters: int
    init: str
    n_init: int
    max_iter: int
    tol: float
    reg_covar: float
    seed: int | None
    largest_drop: float = 0.0
    history: list[float] = field(default_factory=list)
    missing_cells: int = 0  # feature values missing in the rows fitted (through them)

    @property
    def mean_log_likelihood(self) -> float:
        return self.log_likelihood / self.total_weight

    @property
    def bic(self) -> float:
        return bic(self.log_likelihood, self.n_parameters, self.total_weight)

    @property
    def aic(self) -> float:
        return aic(self.log_likelihood, self.n_parameters)


def bic(log_likelihood: float, n_parameters: int, total_weight: float) -> float:
    """-2 log L + p log n (scikit-learn's sign: lower is better)."""
    return -2.0 * log_likelihood + n_parameters * math.log(total_weight)


def aic(log_likelihood: float, n_parameters: int) -> float:
    """-2 log L + 2 p (lower is better)."""
    return -2.0 * log_likelihood + 2.0 * n_parameters


def _check_finite(name: str, value: np.ndarray) -> None:
    if not np.all(np.isfinite(value)):
        raise GMMError(f"{name} contain a non-finite number")


def n_parameters(cov: Covariance, n_components: int, n_features: int) -> int:
    """Free parameters: covariances, means and K - 1 mixing weights."""
    return cov.n_parameters(n_components, n_features) + n_components * n_features + n_components - 1


@dataclass
class RowOutputs:
    """The per-row arrays a prediction fills (GaussianMixture.predict_into); None for
    those not wanted.

    ``probabilities`` is indexed (component, row), with any strides: the transpose of an
    (n_rows, K) array fills that array; a (K, n_rows) array holds each component's
    probabilities contiguous, as a table's column.

    ``imputed`` and ``draws`` are the rows with their missing features (NaN) filled, by
    the conditional mean Σₖ p(k | x_o) E[x_m | x_o, k], or drawn from the conditional
    mixture (GapGroup.draws); their observed values are copied as they are. The draws of
    the row at position i of the input use ``numpy.random.default_rng([seed, i])`` (N
    uniforms, then N·j standard normals), so they do not depend on how the input is cut.
    """

    log_likelihood: np.ndarray | None = None  # (n_rows,) float64
    probabilities: np.ndarray | None = None  # (K, n_rows) float64
    labels: np.ndarray | None = None  # (n_rows,) integers: the most probable component
    imputed: np.ndarray | None = None  # (n_rows, D) float64
    draws: np.ndarray | None = None  # (N, n_rows, D) float64: N draws of each row
    seed: int = 0  # of the draws

    @classmethod
    def empty(
        cls,
        n_rows: int,
        n_components: int,
        *,
        log_likelihood: bool = False,
        probabilities: bool = False,
        labels: bool = False,
        imputed: int | None = None,
    ) -> RowOutputs:
        """Arrays for what is wanted, probabilities the transpose of an (n_rows, K) array;
        ``imputed``: the number of features, for the imputed rows."""
        return cls(
            np.empty(n_rows) if log_likelihood else None,
            np.empty((n_rows, n_components)).T if probabilities else None,
            np.empty(n_rows, dtype=np.intp) if labels else None,
            None if imputed is None else np.empty((n_rows, imputed)),
        )

    def __getitem__(self, rows: slice) -> RowOutputs:
        """The outputs of ``rows`` (views)."""
        return RowOutputs(
            None if self.log_likelihood is None else self.log_likelihood[rows],
            None if self.probabilities is None else self.probabilities[:, rows],
            None if self.labels is None else self.labels[rows],
            None if self.imputed is None else self.imputed[rows],
            None if self.draws is None else self.draws[:, rows],
            self.seed,
        )


def _predict_tiles(
    X: np.ndarray,
    first_row: int,
    rows: int,
    prepared: Prepared,
    centre: np.ndarray,
    outputs: RowOutputs,
) -> None:
    """``outputs`` of rows ``first_row`` on of an input, in tiles of ``rows`` rows at
    multiples of ``rows`` in the whole input (aligned_tiles): log πₖ + log N(x | k) once
    per tile (of the features a row has, for rows with NaN: gmmcli.core.gaps), the
    log-likelihood, probabilities, labels and imputed rows from it."""
    n_features = X.shape[1]
    centred = np.empty((rows, n_features))
    buffer = np.empty(prepared.kernel.n_row_features(n_features) * rows)
    done = 0
    for tile, held in aligned_tiles(X, first_row, rows):
        np.subtract(tile, centre, out=centred)
        gaps = nan_mask(centred)
        if gaps is not None:
            centred[gaps] = 0.0
        log_prob = log_joint(centred, prepared, out=buffer)[1]
        groups = []
        if gaps is not None:
            groups = prepared.marginal.gaps(centred, Layout.of(gaps), by_row=True).groups
            for group in groups:
                log_prob[:, group.rows] += group.offsets
        top = log_prob.max(axis=0)  # a logsumexp over components, then the quotients
        log_prob -= top
        resp = np.exp(log_prob, out=log_prob)
        total = resp.sum(axis=0)
        here = slice(done, done + held.stop - held.start)
        done = here.stop
        if outputs.imputed is not None or outputs.draws is not None:
            _impute_tile(
                tile, held, first_row + here.start, groups, resp, total, centre, outputs[here]
            )
        if outputs.log_likelihood is not None:
            np.add(np.log(total[held]), top[held], out=outputs.log_likelihood[here])
        if outputs.probabilities is None and outputs.labels is None:
            continue
        proba = resp[:, held] if outputs.probabilities is None else outputs.probabilities[:, here]
        np.divide(resp[:, held], total[held], out=proba)
        if outputs.labels is not None:
            outputs.labels[here] = proba.argmax(axis=0)


def _impute_tile(
    tile: np.ndarray,
    held: slice,
    position: int,
    groups: list[GapGroup],
    resp: np.ndarray,
    total: np.ndarray,
    centre: np.ndarray,
    outputs: RowOutputs,
) -> None:
    """``outputs.imputed`` and ``outputs.draws`` of a tile's rows ``held`` (the first at
    ``position`` in the input): the rows as they are, then the gaps of each of ``groups``
    (in centred coordinates) filled from the unnormalised responsibilities ``resp`` and
    their sums ``total``."""
    rows = tile[held]
    if outputs.imputed is not None:
        outputs.imputed[:] = rows
    if outputs.draws is not None:
        outputs.draws[:] = rows
    for group in groups:
        group = group.taken((group.rows >= held.start) & (group.rows < held.stop))
        if len(group.rows) == 0:
            continue
        here = (group.rows - held.start)[:, None]  # rows of the outputs
        gap_centre = centre[group.missing]
        proba = resp[:, group.rows] / total[group.rows]
        if outputs.imputed is not None:
            means = np.einsum("kn,kjn->nj", proba, group.means_missing)
            outputs.imputed[here, group.missing] = means + gap_centre
        if outputs.draws is not None:
            n_draws, j = len(outputs.draws), group.missing.shape[1]
            uniforms = np.empty((len(here), n_draws))
            normals = np.empty((len(here), n_draws, j))
            for i, row in enumerate(here[:, 0]):
                rng = np.random.default_rng([outputs.seed, position + int(row)])
                uniforms[i] = rng.random(n_draws)
                normals[i] = rng.standard_normal((n_draws, j))
            drawn = group.draws(proba, uniforms, normals) + gap_centre[:, None]
            outputs.draws[:, here, group.missing] = np.moveaxis(drawn, 1, 0)


@dataclass(frozen=True)
class Classes:
    """The classes a model's components are named for: their ``names``, in class order,
    and each component's class, ``owners`` (an index into ``names``; UNLABELLED for a
    component of no class). A model joined from a mixture per class (discriminant
    analysis, gmmcli.core.discriminant) keeps those ``mixtures`` and the classes'
    ``priors``, what its model file holds."""

    names: tuple[str, ...]
    owners: tuple[int, ...]
    priors: tuple[float, ...] | None = None
    mixtures: tuple[GaussianMixture, ...] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if len(set(self.names)) != len(self.names):
            raise GMMError("class names must differ from one another")
        if any(owner < UNLABELLED or owner >= len(self.names) for owner in self.owners):
            raise GMMError(f"a component's class must be one of the {len(self.names)} classes")
        if set(range(len(self.names))) - set(self.owners):
            raise GMMError("every class must name a component")

    @classmethod
    def named(cls, names: list[str], n_components: int) -> Classes:
        """Each class naming one component, in class order, the other components of no
        class."""
        if n_components < len(names):
            raise InvalidParameter(
                "n_components", n_components, f"at least the {len(names)} classes of the labels"
            )
        extra = n_components - len(names)
        return cls(tuple(names), (*range(len(names)), *[UNLABELLED] * extra))

    @classmethod
    def per_class(cls, names: list[str], k: int) -> Classes:
        """``k`` components for each class, class by class."""
        return cls(tuple(names), tuple(c for c in range(len(names)) for _ in range(k)))

    def class_of(self, component: int) -> str | None:
        """A component's class name (None for one of no class)."""
        owner = self.owners[component]
        return None if owner < 0 else self.names[owner]

    def probabilities(self, component_probabilities: np.ndarray) -> np.ndarray:
        """Each class's probability, summing its components' (a component of no class
        counts for none), from (rows, K) to (rows, C); at most 1 (a sum may round above)."""
        owners = np.asarray(self.owners)
        by_class = [
            component_probabilities[:, owners == c].sum(axis=1) for c in range(len(self.names))
        ]
        return np.minimum(np.stack(by_class, axis=1), 1.0)


@dataclass
class GaussianMixture:
    """A Gaussian mixture: parameters in scikit-learn's shapes, predictions and criteria.

    Validated on construction: shapes, finite numbers, weights summing to 1, symmetric
    positive-definite covariances and, for mclust's ten constrained structures, the
    structure's constraint (a GMMError says which check failed).

    Parameters
    ----------
    weights : array of shape (K,)
        Mixing weights, summing to 1.
    means : array of shape (K, D)
        Component means.
    covariances : array
        By ``covariance_type``: full (K, D, D), tied (D, D), diag (K, D), spherical (K,);
        of mclust's ten, EII (K,) as spherical, EEI, VEI and EVI (K, D) as diag, VEE, EVE,
        VVE, EEV, VEV and EVV (K, D, D) as full. Those ten must have the structure
        Σₖ = λₖ Oₖ diag(Aₖ) Oₖᵀ with the parts it shares equal across components (to
        1e-8 relative); ``from_parts`` builds them from volumes, shapes and orientations.
    covariance_type : str
        One of the fourteen structures, by scikit-learn's name ("full", "tied", "diag",
        "spherical") or mclust's ("EII", "VII", "EEI", "VEI", "EVI", "VVI", "EEE", "VEE",
        "EVE", "VVE", "EEV", "VEV", "EVV", "VVV"), in any case; kept as scikit-learn's
        name for the four it has (VVV, EEE, VVI, VII) and as mclust's for the others.
    feature_names : list of str or None
        The D features' names: predictions on a table take these columns.
    fit_info : FitInfo or None
        The training record of a fitted model.
    classes : Classes or None
        The classes its components are named for (a fit with labels).

    Attributes
    ----------
    precisions_cholesky : array
        Cholesky factors P of the precisions (P Pᵀ = Σ⁻¹), shaped as ``covariances``.
    precisions : array
        The inverse covariances, shaped as ``covariances``.
    parts : Parts or None
        For mclust's ten structures, the volumes (K,), shapes (K, D) and orientations
        (K, D, D) the covariances are built from; None for scikit-learn's four.
    mclust_name : str
        R mclust's name for the structure.
    n_components, n_features, n_parameters : int
        K, D and the free parameters (covariances, means, K - 1 weights).

    Examples
    --------
    >>> import numpy as np
    >>> model = GaussianMixture([0.5, 0.5], [[0.0, 0.0], [4.0, 4.0]], [1.0, 1.0], "spherical")
    >>> model.predict(np.array([[0.5, 0.0], [3.0, 4.5]]))
    array([0, 1])
    >>> model.n_parameters
    7
    """

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    covariance_type: str = "full"
    feature_names: list[str] | None = None
    fit_info: FitInfo | None = None
    classes: Classes | None = None
    precisions_cholesky: np.ndarray = field(init=False, repr=False)
    # The parts the model was built from, and a copy of the covariances built from them.
    _given_parts: tuple[Parts, np.ndarray] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        self.weights = np.asarray(self.weights, dtype=float)
        self.means = np.atleast_2d(np.asarray(self.means, dtype=float))
        self.covariances = np.asarray(self.covariances, dtype=float)
        cov = get_covariance(self.covariance_type)
        self.covariance_type = cov.name
        n_components, n_features = self.means.shape
        if self.weights.shape != (n_components,):
            raise GMMError(f"weights have shape {self.weights.shape}, expected ({n_components},)")
        expected = cov.shape(n_components, n_features)
        if self.covariances.shape != expected:
            raise GMMError(
                f"{self.covariance_type} covariances have shape {self.covariances.shape}, "
                f"expected {expected}"
            )
        for name in ("weights", "means", "covariances"):
            _check_finite(name, getattr(self, name))
        if np.any(self.weights < 0) or abs(self.weights.sum() - 1) > WEIGHT_SUM_TOLERANCE:
            raise GMMError("weights must be non-negative and sum to 1")
        if cov.stores_matrices:
            asym = np.abs(self.covariances - np.swapaxes(self.covariances, -1, -2))
            if np.any(asym > SYMMETRY_TOLERANCE * np.abs(self.covariances).max()):
                raise GMMError("covariances are not symmetric")
        if self.feature_names is not None and len(self.feature_names) != n_features:
            raise GMMError(f"{len(self.feature_names)} feature names for {n_features} features")
        if self.classes is not None and len(self.classes.owners) != n_components:
            raise GMMError(f"{len(self.classes.owners)} component classes for {n_components}")
        try:
            self.precisions_cholesky = cov.precision_cholesky(self.covariances)
        except SingularCovarianceError as err:
            raise GMMError(
                f"the covariance of {err.where} is singular (not positive definite): "
                "not a valid covariance"
            ) from None
        problem = cov.constraint_error(self.covariances, n_features)
        if problem is not None:
            raise GMMError(problem)

    @classmethod
    def from_parts(
        cls,
        weights: np.ndarray,
        means: np.ndarray,
        parts: Parts,
        covariance_type: str,
        feature_names: list[str] | None = None,
        fit_info: FitInfo | None = None,
        classes: Classes | None = None,
    ) -> GaussianMixture:
        """A model of one of mclust's ten structures from its covariances' parts.

        Parameters
        ----------
        parts : Parts
            Volumes (K,), shapes (K, D) and orientations (K, D, D), one entry per
            component: volumes positive, each shape positive with product 1,
            orientations orthonormal; the parts the structure shares the same for every
            component, and those it has not (letter I) the identity.

        The model keeps ``parts`` as given (``model.parts``, what a model file holds), and
        its covariances are Σₖ = λₖ Oₖ diag(Aₖ) Oₖᵀ in the structure's stored shape.
        Other parameters are as for the constructor.
        """
        cov = get_covariance(covariance_type)
        if not isinstance(cov, Constrained):
            raise GMMError(f"{cov.name} covariances are not built from parts; give the covariances")
        parts = Parts(
            *(np.array(p, dtype=float) for p in (parts.volumes, parts.shapes, parts.orientations))
        )
        n_components, n_features = np.atleast_2d(np.asarray(means)).shape
        problem = cov.parts_error(parts, n_components, n_features)
        if problem is not None:
            raise GMMError(problem)
        covariances = cov.stored(parts.matrices())
        model = cls(weights, means, covariances, cov.name, feature_names, fit_info, classes)
        model._given_parts = (parts, model.covariances.copy())
        return model

    @property
    def n_components(self) -> int:
        return self.means.shape[0]

    @property
    def n_features(self) -> int:
        return self.means.shape[1]

    @property
    def covariance(self) -> Covariance:
        return get_covariance(self.covariance_type)

    @property
    def mclust_name(self) -> str:
        """R mclust's name for the covariance structure: one of EII, VII, EEI, VEI, EVI,
        VVI, EEE, VEE, EVE, VVE, EEV, VEV, EVV and VVV (VII, VVI, EEE and VVV are
        spherical, diag, tied and full)."""
        return self.covariance.mclust_name

    @property
    def parts(self) -> Parts | None:
        """For mclust's ten structures, the volumes (K,), shapes (K, D) and orientations
        (K, D, D) of the covariances, one entry per component even where shared: those the
        model was built from (``from_parts``, a model file), or else recovered from the
        covariances (shared parts averaged over the components). None for the four of
        scikit-learn."""
        cov = self.covariance
        if not isinstance(cov, Constrained):
            return None
        if self._given_parts is not None:
            parts, built = self._given_parts
            if np.array_equal(built, self.covariances):
                return parts
        return cov.parts(self.covariances, self.n_features)

    @property
    def n_parameters(self) -> int:
        """Free parameters; of a model joined from a mixture per class, each mixture's and
        the C − 1 class priors (mclust ≥ 6.1.1)."""
        mixtures = None if self.classes is None else self.classes.mixtures
        if mixtures is not None:
            return sum(mixture.n_parameters for mixture in mixtures) + len(mixtures) - 1
        return n_parameters(self.covariance, self.n_components, self.n_features)

    @property
    def precisions(self) -> np.ndarray:
        """Inverse covariances, in scikit-learn's shapes."""
        return self.covariance.precisions(self.precisions_cholesky)

    @property
    def centre(self) -> np.ndarray:
        """The mixture's mean, where predictions centre the data."""
        return self.weights @ self.means

    def _params(self) -> Params:
        centre = self.centre
        return Params(self.weights, self.means - centre, self.covariances, self.precisions_cholesky)

    def _check(self, X) -> np.ndarray:
        X = np.asarray(self._named_columns(X), dtype=float)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise DataError(f"data have shape {X.shape}, expected (n, {self.n_features})")
        if np.isinf(X).any():
            raise DataError("data contain an infinite number (NaN is a missing value, ±inf is not)")
        return X

    def _named_columns(self, X):
        """A table's columns named like the features, in the model's order, wherever they
        stand (an Arrow table by ``select``, pandas and polars DataFrames by indexing); an
        array as it is."""
        if self.feature_names is None or isinstance(X, np.ndarray) or not hasattr(X, "columns"):
            return X
        names = list(getattr(X, "column_names", X.columns))
        absent = [name for name in self.feature_names if name not in names]
        if absent:
            raise DataError(
                f"the table has no column '{absent[0]}' of the model's features "
                f"({', '.join(self.feature_names)})"
            )
        arrow = hasattr(X, "column_names")
        return X.select(self.feature_names) if arrow else X[self.feature_names]

    def predict_into(
        self, X, outputs: RowOutputs, *, first_row: int = 0, reducer: Reducer = SERIAL
    ) -> None:
        """Fill ``outputs`` (those that are not None) for rows of a longer input.

        Rows are computed in tiles at fixed positions of the whole input, so a row comes
        out bit for bit the same however the input is cut into pieces and wherever its
        tile is computed.

        Parameters
        ----------
        X : array or table of shape (n_rows, D)
            Rows ``first_row`` to ``first_row + n_rows - 1`` of the input.
        outputs : RowOutputs
            The arrays to fill, one entry per row of ``X``.
        first_row : int
            How many rows of the input come before ``X``.
        reducer : Reducer
            Where runs of tiles are computed (``reducer.map``); SERIAL: here, in turn.
        """
        self._fill(self._check(X), outputs, first_row, reducer)

    @one_blas_thread()
    def _fill(self, X: np.ndarray, outputs: RowOutputs, first_row: int, reducer: Reducer) -> None:
        """predict_into() of checked rows: runs of whole tiles handed to ``reducer.map``,
        BLAS held to one thread."""
        prepared = Prepared.of(self._params(), self.covariance)
        rows = min(tile_rows(prepared, self.n_features), PREDICTION_TILE_ROWS)
        run_rows = rows * max(1, PREDICTION_RUN_ROWS // rows)
        # Runs start where tiles do, so that no tile is computed twice (padded, by two runs).
        bounds = [0, *range(-first_row % rows or run_rows, len(X), run_rows), len(X)]
        runs = [slice(a, b) for a, b in itertools.pairwise(bounds) if a < b]
        centre = self.centre

        def predict_run(run: slice) -> None:
            start = first_row + run.start
            _predict_tiles(X[run], start, rows, prepared, centre, outputs[run])

        for _ in reducer.map(predict_run, runs):
            pass

    def _predicted(
        self,
        X,
        *,
        first_row: int = 0,
        reducer: Reducer | None = None,
        log_likelihood: bool = False,
        probabilities: bool = False,
        labels: bool = False,
        imputed: bool = False,
    ) -> RowOutputs:
        """The outputs asked for of every row of ``X`` (predict_into()'s arguments; by
        default, the reducer share_predictions() gives)."""
        X = self._check(X)
        outputs = RowOutputs.empty(
            len(X),
            self.n_components,
            log_likelihood=log_likelihood,
            probabilities=probabilities,
            labels=labels,
            imputed=self.n_features if imputed else None,
        )
        self._fill(X, outputs, first_row, reducer or _prediction_reducer())
        return outputs

    def row_predictions(
        self, X, *, first_row: int = 0, reducer: Reducer | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """score_samples() and predict_proba() at once, from one pass over the rows (for
        the arguments, see predict_into()).

        Returns
        -------
        log_likelihood : array of shape (n_rows,)
        probabilities : array of shape (n_rows, K)
        """
        outputs = self._predicted(
            X, first_row=first_row, reducer=reducer, log_likelihood=True, probabilities=True
        )
        return outputs.log_likelihood, outputs.probabilities.T

    def score_samples(self, X: np.ndarray) -> np.ndarray:
        """Log-likelihood of every row (of an array, or of a table by feature names)."""
        return self._predicted(X, log_likelihood=True).log_likelihood

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Membership probabilities, shape (n_rows, K); each row sums to 1."""
        return self._predicted(X, probabilities=True).probabilities.T

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Most probable component of every row."""
        return self._predicted(X, labels=True).labels

    def predict_class_proba(self, X: np.ndarray) -> np.ndarray:
        """Each class's probability for every row, shape (n_rows, C): the sum of its
        components' (a model with classes)."""
        if self.classes is None:
            raise GMMError("the model has no classes: fit it with labels")
        return self.classes.probabilities(self.predict_proba(X))

    def predict_class(self, X: np.ndarray) -> np.ndarray:
        """The most probable class of every row, by name (a model with classes)."""
        probabilities = self.predict_class_proba(X)
        return np.asarray(self.classes.names)[probabilities.argmax(axis=1)]

    def impute(self, X) -> np.ndarray:
        """The rows of ``X`` (an array, or a table by feature names) with every missing
        value (NaN) replaced by its conditional mean under the mixture,
        Σₖ p(k | x_o) E[x_m | x_o, k]; observed values are kept as they are. A row with
        no value observed gets the mixture's mean (its components weighted by πₖ).

        Returns
        -------
        array of shape (n_rows, D)

        Examples
        --------
        >>> model = GaussianMixture([1.0], [[0.0, 0.0]], [[[1.0, 0.5], [0.5, 1.0]]])
        >>> model.impute(np.array([[2.0, np.nan]]))
        array([[2., 1.]])
        """
        return self._predicted(X, imputed=True).imputed

    def _total(self, X: np.ndarray, weights: np.ndarray | None) -> tuple[float, float]:
        ll = self.score_samples(X)
        if weights is None:
            return float(ll.sum()), float(len(ll))
        weights = np.asarray(weights, dtype=float)
        return float(weights @ ll), float(weights.sum())

    def score(self, X: np.ndarray, weights: np.ndarray | None = None) -> float:
        """Weighted mean log-likelihood per sample."""
        total, n = self._total(X, weights)
        return total / n

    def bic(self, X: np.ndarray, weights: np.ndarray | None = None) -> float:
        """-2 log L + p log n, n the total weight; lower is better."""
        total, n = self._total(X, weights)
        return bic(total, self.n_parameters, n)

    def aic(self, X: np.ndarray, weights: np.ndarray | None = None) -> float:
        """-2 log L + 2 p; lower is better."""
        total, _ = self._total(X, weights)
        return aic(total, self.n_parameters)

    def sample(
        self, n_samples: int, seed: int | np.random.Generator | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``n_samples`` rows drawn from the mixture, in random order, with their labels."""
        rng = np.random.default_rng(seed)
        labels = rng.choice(self.n_components, size=n_samples, p=self.weights)
        full = self.covariance.full_matrices(self.covariances, self.n_components, self.n_features)
        noise = rng.standard_normal((n_samples, self.n_features))
        X = np.empty((n_samples, self.n_features))
        for k in range(self.n_components):
            rows = labels == k
            X[rows] = self.means[k] + noise[rows] @ np.linalg.cholesky(full[k]).T
        return X, labels
