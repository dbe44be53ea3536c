"""Starting parameters: weighted k-means, k-means++ seeding, random, random rows.

Every method ends the same way: a partition of the rows (hard or soft responsibilities)
summed into statistics and turned into parameters by the ordinary M-step. Rows are drawn
by inverse CDF over their weights in row order, so a row of weight 3 is exactly as likely
as three copies of it.
"""

from __future__ import annotations

import math

import numpy as np

from gmmcli.core.covariance import Covariance
from gmmcli.core.em import InMemoryRows, Params, Stats, accumulate, m_step, sum_blocks

INIT_METHODS = ("kmeans", "kmeans++", "random", "random-from-data")
LLOYD_MAX_ITER = 300
LLOYD_TOL = 1e-4


def squared_distances(X: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """|x - c|² for every row and centre, clipped at zero against rounding."""
    sq = np.einsum("ij,ij->i", X, X)[:, None] - 2.0 * (X @ centres.T)
    sq += np.einsum("ij,ij->i", centres, centres)
    return np.maximum(sq, 0.0, out=sq)


def _pick(cumulative: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Rows whose cumulative weight first exceeds each target (inverse CDF)."""
    return np.minimum(np.searchsorted(cumulative, targets, side="right"), len(cumulative) - 1)


def _closest(rows: InMemoryRows, centres: np.ndarray) -> np.ndarray:
    """Squared distance from every row to each centre, shape (n_rows, n_centres)."""
    return np.concatenate([squared_distances(X, centres) for X, _ in rows.blocks()])


def _row(rows: InMemoryRows, index: int) -> np.ndarray:
    return rows.X[index] - rows.centre


def kmeans_plusplus(rows: InMemoryRows, n_components: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy k-means++ seeding on weighted rows: 2 + ln K candidates per centre."""
    weights = rows.weights
    n_trials = 2 + int(math.log(n_components))
    cum_weights = np.cumsum(weights)
    first = _pick(cum_weights, rng.random(1) * cum_weights[-1])[0]
    centres = [_row(rows, first)]
    closest = _closest(rows, centres[0][None, :])[:, 0]
    for _ in range(1, n_components):
        cumulative = np.cumsum(weights * closest)
        if cumulative[-1] > 0:
            candidates = _pick(cumulative, rng.random(n_trials) * cumulative[-1])
        else:  # every row sits on a centre already: fall back to the weights alone
            candidates = _pick(cum_weights, rng.random(n_trials) * cum_weights[-1])
        cand_dist = np.minimum(closest[:, None], _closest(rows, rows.X[candidates] - rows.centre))
        best = int(np.argmin(weights @ cand_dist))
        centres.append(_row(rows, candidates[best]))
        closest = cand_dist[:, best]
    return np.array(centres)


def distinct_random_rows(
    rows: InMemoryRows, n_components: int, rng: np.random.Generator
) -> np.ndarray:
    """K rows with distinct values, drawn without replacement in proportion to weight."""
    keys = np.full(len(rows.X), np.inf)
    positive = rows.weights > 0
    keys[positive] = -np.log1p(-rng.random(int(positive.sum()))) / rows.weights[positive]
    chosen, seen = [], set()
    order = np.argsort(keys, kind="stable")[: int(positive.sum())]
    for index in order:
        value = rows.X[index].tobytes()
        if value not in seen:
            seen.add(value)
            chosen.append(index)
            if len(chosen) == n_components:
                break
    for index in order:  # fewer distinct values than K: repeat rows, deterministically
        if len(chosen) == n_components:
            break
        if index not in chosen:
            chosen.append(index)
    return rows.X[np.array(chosen)] - rows.centre


def _one_hot(labels: np.ndarray, n_components: int) -> np.ndarray:
    """Hard responsibilities, shape (K, rows)."""
    resp = np.zeros((n_components, len(labels)))
    resp[labels, np.arange(len(labels))] = 1.0
    return resp


def lloyd(rows: InMemoryRows, centres: np.ndarray, data_variance: float) -> np.ndarray:
    """Weighted Lloyd iterations until the centres move less than 1e-4 of the variance."""
    n_components = len(centres)
    threshold = LLOYD_TOL * data_variance
    for _ in range(LLOYD_MAX_ITER):
        counts = np.zeros(n_components)
        sums = np.zeros_like(centres)
        for X, weights in rows.blocks():
            labels = np.argmin(squared_distances(X, centres), axis=1)
            counts += np.bincount(labels, weights, minlength=n_components)
            sums += (_one_hot(labels, n_components) * weights) @ X
        moved = centres.copy()
        filled = counts > 0
        moved[filled] = sums[filled] / counts[filled, None]
        shift = float(((moved - centres) ** 2).sum())
        centres = moved
        if shift <= threshold:
            break
    return centres


def _partition_stats(rows: InMemoryRows, centres: np.ndarray, cov: Covariance) -> Stats:
    """Statistics of the hard partition of the rows by their nearest centre."""

    def block(X: np.ndarray, weights: np.ndarray) -> Stats:
        labels = np.argmin(squared_distances(X, centres), axis=1)
        return accumulate(X, weights, _one_hot(labels, len(centres)), cov)

    return sum_blocks(rows, block)


def _random_stats(
    rows: InMemoryRows, n_components: int, cov: Covariance, rng: np.random.Generator
) -> Stats:
    def block(X: np.ndarray, weights: np.ndarray) -> Stats:
        resp = rng.random((len(X), n_components)).T
        resp /= resp.sum(axis=0)
        return accumulate(X, weights, resp, cov)

    return sum_blocks(rows, block)


def initial_params(
    rows: InMemoryRows,
    n_components: int,
    cov: Covariance,
    *,
    method: str,
    reg_covar: float,
    data_variance: float,
    rng: np.random.Generator,
) -> Params:
    """First parameters by ``method`` (one of INIT_METHODS), in centred coordinates."""
    uniform = np.full((n_components, 1), 1.0 / n_components)
    everything = sum_blocks(
        rows, lambda X, w: accumulate(X, w, np.broadcast_to(uniform, (n_components, len(X))), cov)
    )
    fallback = m_step(everything, cov, reg_covar, previous=None)
    if method == "random":
        return m_step(_random_stats(rows, n_components, cov, rng), cov, reg_covar, fallback)
    if method == "random-from-data":
        centres = distinct_random_rows(rows, n_components, rng)
    else:
        centres = kmeans_plusplus(rows, n_components, rng)
        if method == "kmeans":
            centres = lloyd(rows, centres, data_variance)
    fallback.means = centres
    return m_step(_partition_stats(rows, centres, cov), cov, reg_covar, fallback)
