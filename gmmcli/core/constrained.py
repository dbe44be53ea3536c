"""The ten constrained structures of Celeux and Govaert (1995), by mclust's names.

Every covariance is Σₖ = λₖ Oₖ diag(Aₖ) Oₖᵀ: a volume λ > 0, a shape A (positive, its
product 1) and an orientation O (orthonormal columns). The three letters of a name say
whether each is Equal across components, Variable, or the Identity (shape and orientation
only). scikit-learn's four are VII, VVI, EEE and VVV (gmmcli.core.covariance); the ten
here keep their covariances in the shape of the nearest of those (spherical for EII,
diagonal for EEI, VEI and EVI, full for the rest) and use its E-step unchanged. Only the
M-step differs: it maximises the expected complete-data log-likelihood over the
structure's parameters, from the scatter matrices Wₖ = Σ w r (x - μₖ)(x - μₖ)ᵀ, i.e. it
minimises Σₖ nₖ log|Σₖ| + tr(Σₖ⁻¹ Wₖ), in closed form where one exists and otherwise by
updating volumes, shapes and orientations in turn, each step the best for the others held
fixed (a common orientation with varying shapes by Browne and McNicholas's (2014)
majorise-minimise step), so no step loses likelihood. The steps start from the previous
M-step's parameters, so EM stays monotone and the inner loop short.
"""

from __future__ import annotations

import functools
import threading
import warnings
from dataclasses import dataclass

import numpy as np

from gmmcli.core.covariance import Diag, Full, Spherical, empty_components, unpack
from gmmcli.errors import GMMWarning, SingularCovarianceError

# The parts of the covariances each thread's last M-step returned (threads may share the
# structure objects).
_last = threading.local()
# The inner loop stops when Σₖ nₖ log|Σₖ| + tr(Σₖ⁻¹ Wₖ) falls by at most INNER_TOL · n · D in a
# step (its trace term is n · D at the optimum; mclust measures its target the same way).
INNER_TOL = 1.5e-8
INNER_MAX_ITER = 1000
CONSTRAINT_TOLERANCE = 1e-8
UNIT_PRODUCT_TOLERANCE = 1e-9  # |log ∏ aᵢ|, relative to Σ |log aᵢ| (at least 1)
ORTHONORMAL_TOLERANCE = 1e-9  # the largest entry of |OᵀO - I|


@dataclass
class Parts:
    """Volumes (K,), shapes (K, D) and orientations (K, D, D), one entry per component
    even where the structure shares them."""

    volumes: np.ndarray
    shapes: np.ndarray
    orientations: np.ndarray

    def matrices(self) -> np.ndarray:
        """Σₖ = λₖ Oₖ diag(Aₖ) Oₖᵀ for every component."""
        scaled = self.orientations * (self.volumes[:, None] * self.shapes)[:, None, :]
        return scaled @ np.swapaxes(self.orientations, 1, 2)


def _geometric_mean(values: np.ndarray) -> np.ndarray:
    """Over the last axis, in log space (callers decide what a zero may warn)."""
    return np.exp(np.log(values).sum(axis=-1) / values.shape[-1])


def _unit_product(values: np.ndarray) -> np.ndarray:
    """Positive values scaled so that their product (over the last axis) is 1."""
    return values / _geometric_mean(values)[..., None]


def _rotated_diagonal(scatter: np.ndarray, orientations: np.ndarray) -> np.ndarray:
    """diag(Oₖᵀ Wₖ Oₖ) for every component, shape (K, D)."""
    return np.einsum("kij,kil,klj->kj", orientations, scatter, orientations)


class Constrained:
    """What the ten structures share; mixed into the form of covariance they are kept in.

    ``volume``, ``shape_kind`` and ``orientation`` are the letters of mclust's name.
    """

    volume: str
    shape_kind: str
    orientation: str

    def __init_subclass__(cls, **kwargs):
        """A structure class is named by mclust's three letters, which say the rest."""
        super().__init_subclass__(**kwargs)
        if not cls.__name__.startswith("_"):
            cls.name = cls.mclust_name = cls.__name__
            cls.volume, cls.shape_kind, cls.orientation = cls.__name__

    @property
    def iterative(self) -> bool:
        """Whether the M-step has no closed form (VEI, VEE, VEV, EVE, VVE)."""
        shared_shape = self.shape_kind == "E" and self.orientation == "E"
        return (self.volume == "V" and self.shape_kind == "E") or (
            self.orientation == "E" and not shared_shape
        )

    def own_rows(self, n_components, n_features):
        if self.orientation == "V":
            return n_features + 1, "D + 1"
        if "V" in (self.volume, self.shape_kind):
            return 2, "2"
        return 1, "1"

    def pooled_rows(self, n_components, n_features):
        if self.orientation == "E":
            return n_components + n_features, "K + D"
        return n_components + 1, "K + 1"

    def n_parameters(self, n_components, n_features):
        """Free covariance parameters as mclust counts them."""
        count = {"E": 1, "V": n_components}[self.volume]
        count += {"E": n_features - 1, "V": n_components * (n_features - 1), "I": 0}[
            self.shape_kind
        ]
        rotations = n_features * (n_features - 1) // 2
        count += {"E": rotations, "V": n_components * rotations, "I": 0}[self.orientation]
        return count

    def keep_previous(self, covariances, previous, mask):
        return covariances  # estimate() already kept an empty component's own parameters

    # Between the stored form and the parts.

    def stored(self, matrices: np.ndarray) -> np.ndarray:
        """Full (K, D, D) covariances in the shape this structure keeps them in."""
        return matrices

    def parts(self, covariances: np.ndarray, n_features: int) -> Parts:
        """The volumes, shapes and orientations of covariances with this structure (shared
        ones averaged over the components, which hold the same up to rounding)."""
        matrices = self.full_matrices(covariances, len(covariances), n_features)
        n_components = len(matrices)
        if self.orientation == "I":
            orientations = np.broadcast_to(np.eye(n_features), matrices.shape).copy()
            values = np.diagonal(matrices, axis1=1, axis2=2).copy()
        elif self.orientation == "V":
            values, orientations = np.linalg.eigh(matrices)
        else:
            orientations = np.broadcast_to(_common_axes(matrices), matrices.shape).copy()
            values = _rotated_diagonal(matrices, orientations)
        volumes = _geometric_mean(values)
        shapes = _unit_product(values)
        if self.volume == "E":
            volumes = np.full(n_components, volumes.mean())
        if self.shape_kind == "E":
            shapes = np.broadcast_to(_unit_product(shapes.mean(axis=0)), shapes.shape).copy()
        elif self.shape_kind == "I":
            shapes = np.ones_like(shapes)
        return Parts(volumes, shapes, orientations)

    def constraint_error(self, covariances: np.ndarray, n_features: int) -> str | None:
        """Why covariances (in the stored shape) do not have this structure, or None."""
        matrices = self.full_matrices(covariances, len(covariances), n_features)
        scale = np.abs(matrices).max(initial=0.0)
        with np.errstate(all="ignore"):
            rebuilt = self.parts(covariances, n_features).matrices()
        if not np.all(np.abs(rebuilt - matrices) <= CONSTRAINT_TOLERANCE * scale):
            return f"the covariances do not have the {self.name} structure ({self.describe()})"
        return None

    def parts_error(self, parts: Parts, n_components: int, n_features: int) -> str | None:
        """Why ``parts`` (one entry per component) are not parts of this structure, or
        None: their shapes, finite positive volumes and shapes, each shape's product 1
        (to UNIT_PRODUCT_TOLERANCE relative in log), orthonormal orientations (OᵀO within
        ORTHONORMAL_TOLERANCE of I), shared parts the same for every component and
        identity parts the identity."""
        expected = {
            "volumes": (n_components,),
            "shapes": (n_components, n_features),
            "orientations": (n_components, n_features, n_features),
        }
        for name, shape in expected.items():
            value = np.asarray(getattr(parts, name))
            if value.shape != shape:
                return f"{name} have shape {value.shape}, expected {shape}"
            if not np.all(np.isfinite(value)):
                return f"{name} contain a non-finite number"
        for letter, name, identity in (
            (self.volume, "volume", None),
            (self.shape_kind, "shape", np.ones(n_features)),
            (self.orientation, "orientation", np.eye(n_features)),
        ):
            values = np.asarray(getattr(parts, name + "s"))
            if letter == "E" and np.any(values != values[:1]):
                return f"the {name}s differ across components, but {self.name} shares one"
            if letter == "I" and np.any(values != identity):
                return f"the {name}s of {self.name} are the identity, but others were given"
        return (
            _volume_error(parts.volumes, self.volume)
            or _shape_error(parts.shapes, self.shape_kind)
            or _orientation_error(parts.orientations, self.orientation)
        )

    def describe(self) -> str:
        words = {"E": "equal", "V": "varying", "I": "identity"}
        return (
            f"{words[self.volume]} volume, {words[self.shape_kind]} shape, "
            f"{words[self.orientation]} orientation"
        )

    # The M-step.

    def unregularised(self, covariances, nk, means, second, reg_covar):
        """The estimate with no reg_covar from the statistics, started at ``covariances``
        (NaN where a scatter matrix is singular)."""
        plain, _, _ = self._estimated(nk, means, second, 0.0, covariances)
        return self.full_matrices(plain, *means.shape)

    def estimate(self, nk, means, second, reg_covar, previous=None):
        """The M-step's covariances; a SingularCovarianceError for a live component's
        scatter singular even with ``reg_covar`` (or overflowed: not finite)."""
        covariances, scatter, live = self._estimated(nk, means, second, reg_covar, previous)
        finite = np.isfinite(covariances.reshape(len(covariances), -1)).all(axis=1)
        broken = live & ~finite
        if broken.any():
            with np.errstate(over="ignore", invalid="ignore"):
                size = np.abs(scatter[live]).max()
            # a scatter within 1e-10 of float64's range (data near 1e149) leaves the inner
            # loop's sums and ratios no room: what broke is an overflow, not a singularity
            overflow = not size <= np.finfo(np.float64).max * 1e-10
            raise SingularCovarianceError(int(np.argmax(broken)), overflow=overflow)
        return covariances

    def _estimated(self, nk, means, second, reg_covar, previous):
        """The covariances (NaN where a scatter is singular), the scatter matrices (with
        ``reg_covar``) and which components are live."""
        scatter = self._scatter(nk, means, second)
        live = ~empty_components(nk)
        scatter[live] += reg_covar * nk[live, None, None] * np.eye(means.shape[1])
        with np.errstate(all="ignore"):  # a singular scatter gives NaN
            start = None if previous is None else self._parts_of(previous, means.shape[1])
            try:
                parts = self._maximise(scatter, nk, live, start)
            except np.linalg.LinAlgError:  # an SVD or eigendecomposition met that NaN
                return np.full(self.shape(*means.shape), np.nan), scatter, live
            covariances = self.stored(parts.matrices())
        _last.owner, _last.result, _last.parts = self, covariances, parts
        return covariances, scatter, live

    def _parts_of(self, covariances: np.ndarray, n_features: int) -> Parts:
        """parts(), or a copy of the parts this thread's last estimate() returned these
        covariances from (EM's next M-step starts there; no decomposition needed)."""
        if getattr(_last, "owner", None) is self and _last.result is covariances:
            kept = _last.parts
            return Parts(kept.volumes.copy(), kept.shapes.copy(), kept.orientations.copy())
        return self.parts(covariances, n_features)

    def _scatter(self, nk, means, second) -> np.ndarray:
        """Wₖ = Σ w r x xᵀ - nₖ μₖ μₖᵀ as (K, D, D) from the stored form's statistics."""
        raise NotImplementedError

    def _maximise(
        self, scatter: np.ndarray, nk: np.ndarray, live: np.ndarray, start: Parts | None
    ) -> Parts:
        """The parts that minimise Σₖ nₖ log|Σₖ| + tr(Σₖ⁻¹ Wₖ) over the live components;
        an empty component keeps its own parts from ``start``."""
        n_features = scatter.shape[-1]
        parts = start or _first_parts(scatter, nk, live)
        if self.shape_kind == "I":
            parts.shapes[:] = 1.0
        if self.orientation == "I":
            parts.orientations[:] = np.eye(n_features)
        if self.orientation == "V":
            values, axes = np.linalg.eigh(scatter[live])
            parts.orientations[live] = axes
        elif self.orientation == "I":
            values = np.diagonal(scatter[live], axis1=1, axis2=2)
        counts = nk[live]
        total = counts.sum() * n_features
        largest = None  # each scatter's largest eigenvalue, for the majorise-minimise step
        if self.orientation == "E" and self.shape_kind == "V":
            largest = np.linalg.eigvalsh(scatter[live])[:, -1]
        objective = np.inf
        for _ in range(INNER_MAX_ITER if self.iterative else 1):
            if self.orientation == "E":
                self._update_orientation(parts, scatter, live, largest)
                values = _rotated_diagonal(scatter[live], parts.orientations[live])
            self._update_shape(parts, values, live)
            ratios = (values / parts.shapes[live]).sum(axis=1)
            if self.volume == "V":
                parts.volumes[live] = ratios / (n_features * counts)
            else:
                parts.volumes[:] = ratios.sum() / total
            if not self.iterative or not np.all(parts.volumes[live] > 0):
                break  # closed form, or a singular scatter (the result is refused later)
            before = objective
            objective = _objective(parts.volumes[live], counts, ratios, n_features)
            if before - objective <= INNER_TOL * total:
                break
        else:
            if np.isfinite(objective):
                warnings.warn(
                    f"the {self.name} M-step stopped at its cap of {INNER_MAX_ITER} inner "
                    f"iterations before its objective settled to {INNER_TOL:g} per row and feature",
                    GMMWarning,
                    stacklevel=2,
                )
        return parts

    def _update_orientation(
        self, parts: Parts, scatter: np.ndarray, live: np.ndarray, largest: np.ndarray
    ) -> None:
        """A common orientation: with a common shape too, the eigenvectors of Σ Wₖ/λₖ
        (shape from its eigenvalues); with varying shapes, the two majorise-minimise steps
        and a sweep of plane rotations."""
        volumes = parts.volumes[live]
        if self.shape_kind == "E":
            values, axes = np.linalg.eigh((scatter[live] / volumes[:, None, None]).sum(axis=0))
            parts.shapes[:] = _unit_product(values)
        else:
            inverse = 1.0 / (volumes[:, None] * parts.shapes[live])
            axes = _majorised_axes(scatter[live], parts.orientations[0], inverse, largest)
            axes = _jacobi_sweep(scatter[live], axes, inverse)
        parts.orientations[:] = axes

    def _update_shape(self, parts: Parts, values: np.ndarray, live: np.ndarray) -> None:
        """Shapes for the orientations and volumes held: each component's own from its
        rotated scatter, or one common to all from the scatter over the volumes."""
        if self.shape_kind == "V":
            parts.shapes[live] = _unit_product(values)
        elif self.shape_kind == "E" and self.orientation != "E":
            weighted = (values / parts.volumes[live, None]).sum(axis=0)
            parts.shapes[:] = _unit_product(weighted)


def _which(letter: str, name: str, index: int) -> str:
    """How a message names one part: "the volume" when shared, else its component's."""
    return f"the {name}" if letter == "E" else f"the {name} of component {index}"


def _volume_error(volumes: np.ndarray, letter: str) -> str | None:
    bad = np.flatnonzero(volumes <= 0)
    if len(bad):
        return f"{_which(letter, 'volume', bad[0])} is {float(volumes[bad[0]])!r}, not positive"
    return None


def _shape_error(shapes: np.ndarray, letter: str) -> str | None:
    bad = np.flatnonzero(np.any(shapes <= 0, axis=1))
    if len(bad):
        return f"{_which(letter, 'shape', bad[0])} has an entry that is not positive"
    logs = np.log(shapes)
    slack = UNIT_PRODUCT_TOLERANCE * np.maximum(1.0, np.abs(logs).sum(axis=1))
    bad = np.flatnonzero(np.abs(logs.sum(axis=1)) > slack)
    if len(bad):
        product = float(np.exp(logs[bad[0]].sum()))
        return f"{_which(letter, 'shape', bad[0])} has product {product:.12g}, not 1"
    return None


def _orientation_error(orientations: np.ndarray, letter: str) -> str | None:
    gram = np.swapaxes(orientations, 1, 2) @ orientations
    off = np.abs(gram - np.eye(orientations.shape[-1])).max(axis=(1, 2), initial=0.0)
    bad = np.flatnonzero(off > ORTHONORMAL_TOLERANCE)
    if len(bad):
        return (
            f"{_which(letter, 'orientation', bad[0])} is not orthonormal "
            f"(an entry of OᵀO - I is {off[bad[0]]:.3g})"
        )
    return None


def _jacobi_sweep(scatter: np.ndarray, axes: np.ndarray, inverse: np.ndarray) -> np.ndarray:
    """Axes O that lower f(O) = Σₖ tr(Wₖ O Bₖ Oᵀ) by one sweep of plane rotations: every
    pair of axes turned to the angle that minimises f in their plane (f there is
    c + P cos 2θ + Q sin 2θ), in rounds of disjoint pairs turned at once (a turn touches
    only its own pair's terms). Each turn is exact, so f never rises; where the
    majorise-minimise steps creep (hundreds of steps when shapes differ little), a
    sweep moves the axes much further."""
    rotated = np.swapaxes(axes, 0, 1) @ scatter @ axes  # Oᵀ Wₖ O, kept up to date
    for first, second in _rounds(len(axes)):
        spread = inverse[:, first] - inverse[:, second]
        cos_part = 0.5 * (spread * (rotated[:, first, first] - rotated[:, second, second])).sum(0)
        sin_part = (spread * rotated[:, first, second]).sum(0)
        flat = (cos_part == 0.0) & (sin_part == 0.0)
        angle = np.where(flat, 0.0, 0.5 * np.arctan2(-sin_part, -cos_part))
        turn = np.eye(len(axes))
        turn[first, first] = turn[second, second] = np.cos(angle)
        turn[first, second], turn[second, first] = -np.sin(angle), np.sin(angle)
        axes = axes @ turn
        rotated = turn.T @ rotated @ turn
    return axes


@functools.cache
def _rounds(n_axes: int) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """Every pair (i < j) of n axes once, in rounds of disjoint pairs (a round-robin)."""
    seats = list(range(n_axes)) + ([-1] if n_axes % 2 else [])
    rounds = []
    for _ in range(len(seats) - 1):
        pairs = sorted(
            (min(a, b), max(a, b))
            for a, b in zip(seats[: len(seats) // 2], seats[::-1], strict=False)
            if a >= 0 and b >= 0
        )
        pairs = np.array(pairs, dtype=int).reshape(-1, 2)
        rounds.append((pairs[:, 0], pairs[:, 1]))
        seats = [seats[0], seats[-1], *seats[1:-1]]
    return tuple(rounds)


def _objective(volumes, counts, ratios, n_features) -> float:
    """Σₖ nₖ log|Σₖ| + tr(Σₖ⁻¹ Wₖ) from the volumes λₖ (|Σₖ| = λₖᴰ, as |Aₖ| = 1) and the
    ratios Σ_d (Oₖᵀ Wₖ Oₖ)_dd / A_kd."""
    return float(n_features * (counts * np.log(volumes)).sum() + (ratios / volumes).sum())


def _majorised_axes(
    scatter: np.ndarray, axes: np.ndarray, inverse: np.ndarray, largest: np.ndarray
) -> np.ndarray:
    """Axes O that lower f(O) = Σₖ tr(Wₖ O Bₖ Oᵀ), Bₖ = diag(``inverse``ₖ), from ``axes``:
    two majorise-minimise steps (Browne and McNicholas 2014). Shifted by the largest
    eigenvalue of Wₖ, and then of Bₖ, f is concave in O plus a constant; its tangent plane
    at the current axes bounds it from above and is least at the polar factor of the
    shifted gradient."""
    shifted = largest[:, None, None] * axes - scatter @ axes
    axes = _polar((shifted * inverse[:, None, :]).sum(axis=0))
    top = inverse.max(axis=1)
    axes = _polar(((scatter @ axes) * (top[:, None] - inverse)[:, None, :]).sum(axis=0))
    return axes


def _polar(matrix: np.ndarray) -> np.ndarray:
    """The orthogonal factor of ``matrix`` (the orthogonal Q nearest to it, maximising
    tr(matrixᵀ Q))."""
    left, _, right = np.linalg.svd(matrix)
    return left @ right


def _first_parts(scatter: np.ndarray, nk: np.ndarray, live: np.ndarray) -> Parts:
    """Where the inner loop starts without previous parameters: every component with the
    pooled covariance (its volume, shape and axes)."""
    n_components = len(scatter)
    pooled = scatter[live].sum(axis=0) / nk[live].sum()
    values, axes = np.linalg.eigh(pooled)
    return Parts(
        np.full(n_components, _geometric_mean(values)),
        np.tile(_unit_product(values), (n_components, 1)),
        np.tile(axes, (n_components, 1, 1)),
    )


def _common_axes(matrices: np.ndarray) -> np.ndarray:
    """Axes that diagonalise every one of commuting symmetric matrices: the eigenvectors of
    a combination of them with unequal weights, so that no two axes share an eigenvalue
    unless every matrix treats them alike."""
    volumes = _geometric_mean(np.linalg.eigvalsh(matrices))
    weights = 1.0 + (np.arange(len(matrices)) * 0.6180339887498949) % 1.0
    return np.linalg.eigh(np.einsum("k,kij->ij", weights / volumes, matrices))[1]


class _FullForm(Constrained, Full):
    def _scatter(self, nk, means, second):
        return unpack(second, means.shape[1]) - nk[:, None, None] * (
            means[:, :, None] * means[:, None, :]
        )


class _DiagForm(Constrained, Diag):
    def _scatter(self, nk, means, second):
        return np.einsum("kd,de->kde", second - nk[:, None] * means**2, np.eye(means.shape[1]))

    def stored(self, matrices):
        return np.diagonal(matrices, axis1=1, axis2=2).copy()


class _SphericalForm(Constrained, Spherical):
    def _scatter(self, nk, means, second):
        n_features = means.shape[1]
        spread = (second - nk * np.einsum("ki,ki->k", means, means)) / n_features
        return spread[:, None, None] * np.eye(n_features)

    def stored(self, matrices):
        return matrices[:, 0, 0].copy()


class EII(_SphericalForm):
    """Spherical, equal volume."""


class EEI(_DiagForm):
    """Diagonal, equal volume and shape."""


class VEI(_DiagForm):
    """Diagonal, equal shape."""


class EVI(_DiagForm):
    """Diagonal, equal volume."""


class VEE(_FullForm):
    """Equal shape and orientation."""


class EVE(_FullForm):
    """Equal volume and orientation."""


class VVE(_FullForm):
    """Equal orientation."""


class EEV(_FullForm):
    """Equal volume and shape."""


class VEV(_FullForm):
    """Equal shape."""


class EVV(_FullForm):
    """Equal volume."""


CONSTRAINED: tuple[Constrained, ...] = (
    *(EII(), EEI(), VEI(), EVI(), VEE()),
    *(EVE(), VVE(), EEV(), VEV(), EVV()),
)
