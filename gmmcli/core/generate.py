"""Random mixtures to draw test data from (`gmmcli generate`)."""

from __future__ import annotations

import numpy as np

from gmmcli.core.constrained import Constrained, Parts
from gmmcli.core.model import GaussianMixture
from gmmcli.core.structures import get_covariance

WEIGHT_CONCENTRATION = 5.0
VARIANCE_RANGE = (0.3, 1.5)
MAX_TRIES = 100


def _rotation(n_features: int, rng: np.random.Generator) -> np.ndarray:
    """A random orthonormal matrix: Q of the QR decomposition of a standard normal one."""
    rotation, _ = np.linalg.qr(rng.standard_normal((n_features, n_features)))
    return rotation


def _full(n_features: int, rng: np.random.Generator) -> np.ndarray:
    """One covariance matrix: variances in VARIANCE_RANGE along random axes."""
    rotation = _rotation(n_features, rng)
    return (rotation * rng.uniform(*VARIANCE_RANGE, n_features)) @ rotation.T


# scikit-learn's four, each drawn its own way (as since 0.1.0: a seed gives the same mixture).
_SKLEARN_DRAWS = {
    "full": lambda k, d, rng: np.stack([_full(d, rng) for _ in range(k)]),
    "tied": lambda k, d, rng: _full(d, rng),
    "diag": lambda k, d, rng: rng.uniform(*VARIANCE_RANGE, (k, d)),
    "spherical": lambda k, d, rng: rng.uniform(*VARIANCE_RANGE, k),
}


def random_parts(
    structure: Constrained, n_components: int, n_features: int, rng: np.random.Generator
) -> Parts:
    """Random volumes, shapes and orientations with the sharing of one of mclust's ten
    structures: a shared part drawn once, a varying one for every component, an identity
    one not drawn. Orientations are random rotations (_rotation), shapes uniform in
    VARIANCE_RANGE scaled to product 1 and volumes uniform in VARIANCE_RANGE, drawn in
    that order."""

    def draw(letter: str, one, identity: np.ndarray | None) -> np.ndarray:
        if letter == "I":
            return np.stack([identity] * n_components)
        if letter == "E":
            return np.stack([one()] * n_components)
        return np.stack([one() for _ in range(n_components)])

    def shape() -> np.ndarray:
        values = rng.uniform(*VARIANCE_RANGE, n_features)
        return values / np.exp(np.log(values).mean())

    orientations = draw(
        structure.orientation, lambda: _rotation(n_features, rng), np.eye(n_features)
    )
    shapes = draw(structure.shape_kind, shape, np.ones(n_features))
    volumes = draw(structure.volume, lambda: rng.uniform(*VARIANCE_RANGE), None)
    return Parts(volumes, shapes, orientations)


def random_covariances(
    covariance_type: str, n_components: int, n_features: int, rng: np.random.Generator
) -> np.ndarray:
    """Covariances of roughly unit scale, in the structure's stored shape: variances in
    VARIANCE_RANGE along random axes for scikit-learn's four, random_parts() for mclust's
    ten."""
    structure = get_covariance(covariance_type)
    if isinstance(structure, Constrained):
        parts = random_parts(structure, n_components, n_features, rng)
        return structure.stored(parts.matrices())
    return _SKLEARN_DRAWS[structure.name](n_components, n_features, rng)


def spread_means(
    n_components: int, n_features: int, separation: float, rng: np.random.Generator
) -> np.ndarray:
    """Means uniform in a cube, each at least ``separation`` from the others.

    A candidate that lands too close is drawn again; the cube grows by 10% whenever
    MAX_TRIES candidates in a row fail, so the loop always ends.
    """
    side = 2.0 * separation * n_components ** (1.0 / n_features)
    means: list[np.ndarray] = []
    failures = 0
    while len(means) < n_components:
        candidate = rng.uniform(-side / 2, side / 2, n_features)
        if all(np.linalg.norm(candidate - m) >= separation for m in means):
            means.append(candidate)
            failures = 0
        else:
            failures += 1
            if failures == MAX_TRIES:
                side, failures = side * 1.1, 0
    return np.array(means)


def random_mixture(
    n_components: int,
    n_features: int,
    *,
    covariance_type: str = "full",
    separation: float = 3.0,
    rng: np.random.Generator,
) -> GaussianMixture:
    """A random mixture whose means lie at least ``separation`` apart, its covariances
    drawn by random_covariances() (random_parts() for mclust's ten structures).

    Variances are of order 1, so ``separation`` is roughly in standard deviations; mixing
    weights are Dirichlet(5), so no component is tiny.
    """
    means = spread_means(n_components, n_features, separation, rng)
    weights = rng.dirichlet(np.full(n_components, WEIGHT_CONCENTRATION))
    structure = get_covariance(covariance_type)
    if isinstance(structure, Constrained):  # keeps the parts drawn, for its model file
        parts = random_parts(structure, n_components, n_features, rng)
        return GaussianMixture.from_parts(weights, means, parts, structure.name)
    covariances = random_covariances(covariance_type, n_components, n_features, rng)
    return GaussianMixture(weights, means, covariances, covariance_type)
