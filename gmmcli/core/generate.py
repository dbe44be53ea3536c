"""Random mixtures to draw test data from (`gmmcli generate`)."""

from __future__ import annotations

import numpy as np

from gmmcli.core.model import GaussianMixture
from gmmcli.core.structures import get_covariance

WEIGHT_CONCENTRATION = 5.0
VARIANCE_RANGE = (0.3, 1.5)
MAX_TRIES = 100


def random_covariances(
    covariance_type: str, n_components: int, n_features: int, rng: np.random.Generator
) -> np.ndarray:
    """Covariances of roughly unit scale: variances in VARIANCE_RANGE, random correlations."""
    low, high = VARIANCE_RANGE

    def full() -> np.ndarray:
        rotation, _ = np.linalg.qr(rng.standard_normal((n_features, n_features)))
        return (rotation * rng.uniform(low, high, n_features)) @ rotation.T

    if covariance_type == "full":
        return np.stack([full() for _ in range(n_components)])
    if covariance_type == "tied":
        return full()
    if covariance_type == "diag":
        return rng.uniform(low, high, (n_components, n_features))
    get_covariance(covariance_type)  # rejects unknown names
    return rng.uniform(low, high, n_components)


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
    """A random mixture whose means lie at least ``separation`` apart.

    Variances are of order 1, so ``separation`` is roughly in standard deviations; mixing
    weights are Dirichlet(5), so no component is tiny.
    """
    means = spread_means(n_components, n_features, separation, rng)
    weights = rng.dirichlet(np.full(n_components, WEIGHT_CONCENTRATION))
    covariances = random_covariances(covariance_type, n_components, n_features, rng)
    return GaussianMixture(weights, means, covariances, covariance_type)
