"""Starting parameters: weighted k-means, k-means++ seeding, random, random rows.

Every method works in passes over blocks of rows, so the same code serves arrays in memory
and files streamed in chunks, and gives the same start whatever the block size (up to
rounding of running sums). Rows are drawn by inverse CDF over their weights in row order,
so a row of weight 3 is exactly as likely as three copies of it. Every method ends with the
ordinary M-step: on the partition of the rows by their nearest centre (kmeans, kmeans++,
random-from-data), or on random soft memberships (random).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from gmmcli.core.covariance import Covariance
from gmmcli.core.em import (
    Params,
    RowSource,
    Stats,
    accumulate,
    default_threads,
    m_step,
    sum_blocks,
)

INIT_METHODS = ("kmeans", "kmeans++", "random", "random-from-data")
LLOYD_MAX_ITER = 300
LLOYD_TOL = 1e-4


def squared_distances(X: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """|x - c|² for every row and centre, clipped at zero against rounding."""
    sq = np.einsum("ij,ij->i", X, X)[:, None] - 2.0 * (X @ centres.T)
    sq += np.einsum("ij,ij->i", centres, centres)
    return np.maximum(sq, 0.0, out=sq)


def _nearest(X: np.ndarray, centres: np.ndarray) -> np.ndarray:
    return squared_distances(X, centres).min(axis=1)


def pick_rows(
    rows: RowSource,
    row_weight: Callable[[np.ndarray, np.ndarray], np.ndarray],
    targets: np.ndarray,
) -> np.ndarray:
    """The rows at which the running sum of ``row_weight`` first exceeds each target.

    One pass in row order (inverse CDF sampling); a target at or beyond the total, which
    only rounding can produce, takes the last row of positive weight.
    """
    order = np.argsort(targets)
    found = np.empty((len(targets), rows.n_features))
    done, running, last = 0, 0.0, None
    for X, weights in rows.blocks():
        cumulative = running + np.cumsum(row_weight(X, weights))
        inside = np.searchsorted(targets[order][done:], cumulative[-1], side="left")
        for i in order[done : done + inside]:
            found[i] = X[np.searchsorted(cumulative, targets[i], side="right")]
        done += inside
        positive = np.flatnonzero(weights > 0)
        if len(positive):
            last = X[positive[-1]]
        running = cumulative[-1]
    found[order[done:]] = last
    return found


def kmeans_plusplus(
    rows: RowSource, n_components: int, total_weight: float, rng: np.random.Generator
) -> np.ndarray:
    """Greedy k-means++ seeding on weighted rows: 2 + ln K candidates per centre.

    Two passes per centre: one draws the candidates, one measures each candidate's
    potential (Σ w · distance² to the nearest centre), whose minimum is the next total.
    """
    n_trials = 2 + int(math.log(n_components))
    centres = pick_rows(rows, lambda X, w: w, rng.random(1) * total_weight)
    potential = sum_blocks(rows, lambda X, w: w @ _nearest(X, centres))
    for _ in range(1, n_components):
        if potential > 0:
            targets = rng.random(n_trials) * potential
            candidates = pick_rows(rows, lambda X, w, c=centres: w * _nearest(X, c), targets)
        else:  # every row sits on a centre already: fall back to the weights alone
            candidates = pick_rows(rows, lambda X, w: w, rng.random(n_trials) * total_weight)

        def potentials(X, w, candidates=candidates, centres=centres):
            closest = _nearest(X, centres)[:, None]
            return w @ np.minimum(closest, squared_distances(X, candidates))

        trial_potentials = sum_blocks(rows, potentials, default_threads())
        best = int(np.argmin(trial_potentials))
        centres = np.vstack([centres, candidates[best]])
        potential = float(trial_potentials[best])
    return centres


def distinct_random_rows(
    rows: RowSource, n_components: int, rng: np.random.Generator
) -> np.ndarray:
    """K rows with distinct values, drawn without replacement in proportion to weight.

    Each row gets the key -log(u)/w (u uniform, drawn in row order; Efraimidis-Spirakis),
    and the K distinct values with the smallest keys win. With fewer distinct values than
    K, the distinct ones are repeated.
    """
    best: list[tuple[float, bytes, np.ndarray]] = []
    for X, weights in rows.blocks():
        u = rng.random(len(X))
        positive = np.flatnonzero(weights > 0)
        keys = -np.log1p(-u[positive]) / weights[positive]
        candidates = list(best)
        seen = {entry[1] for entry in best}
        for i in np.argsort(keys, kind="stable"):  # this block's smallest new distinct values
            value = X[positive[i]]
            if value.tobytes() not in seen:
                seen.add(value.tobytes())
                candidates.append((keys[i], value.tobytes(), value))
                if len(candidates) - len(best) == n_components:
                    break
        chosen: dict[bytes, tuple[float, bytes, np.ndarray]] = {}
        for entry in sorted(candidates, key=lambda e: e[0]):
            chosen.setdefault(entry[1], entry)
        best = sorted(chosen.values(), key=lambda e: e[0])[:n_components]
    values = [entry[2] for entry in best]
    return np.array([values[i % len(values)] for i in range(n_components)])


def _one_hot(labels: np.ndarray, n_components: int) -> np.ndarray:
    """Hard responsibilities, shape (K, rows)."""
    resp = np.zeros((n_components, len(labels)))
    resp[labels, np.arange(len(labels))] = 1.0
    return resp


def lloyd(rows: RowSource, centres: np.ndarray, data_variance: float) -> np.ndarray:
    """Weighted Lloyd iterations until the centres move less than 1e-4 of the variance."""
    n_components = len(centres)
    threshold = LLOYD_TOL * data_variance
    threads = default_threads()
    for _ in range(LLOYD_MAX_ITER):

        def block(X, weights, centres=centres):
            """Per centre: the summed weight, then the weighted sum of its rows."""
            labels = np.argmin(squared_distances(X, centres), axis=1)
            wresp = _one_hot(labels, n_components) * weights
            return np.hstack([wresp.sum(axis=1)[:, None], wresp @ X])

        sums = sum_blocks(rows, block, threads)
        counts, sums = sums[:, 0], sums[:, 1:]
        moved = centres.copy()
        filled = counts > 0
        moved[filled] = sums[filled] / counts[filled, None]
        shift = float(((moved - centres) ** 2).sum())
        centres = moved
        if shift <= threshold:
            break
    return centres


def _partition_stats(rows: RowSource, centres: np.ndarray, cov: Covariance) -> Stats:
    """Statistics of the hard partition of the rows by their nearest centre."""

    def block(X: np.ndarray, weights: np.ndarray) -> Stats:
        labels = np.argmin(squared_distances(X, centres), axis=1)
        return accumulate(X, weights, _one_hot(labels, len(centres)), cov)

    return sum_blocks(rows, block)


def _random_stats(
    rows: RowSource, n_components: int, cov: Covariance, rng: np.random.Generator
) -> Stats:
    def block(X: np.ndarray, weights: np.ndarray) -> Stats:
        resp = rng.random((len(X), n_components)).T
        resp /= resp.sum(axis=0)
        return accumulate(X, weights, resp, cov)

    return sum_blocks(rows, block)


def initial_params(
    rows: RowSource,
    n_components: int,
    cov: Covariance,
    *,
    method: str,
    reg_covar: float,
    total_weight: float,
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
        centres = kmeans_plusplus(rows, n_components, total_weight, rng)
        if method == "kmeans":
            centres = lloyd(rows, centres, data_variance)
    fallback.means = centres
    return m_step(_partition_stats(rows, centres, cov), cov, reg_covar, fallback)
