"""Starting parameters: weighted k-means, k-means++ seeding, random, random rows, and
mclust's model-based hierarchical clustering (hc).

Every method works in passes over blocks of rows, so the same code serves arrays in memory
and files streamed in chunks, and gives the same start whatever the block size (up to
rounding of running sums). Rows are drawn by inverse CDF over their weights in row order,
so a row of weight 3 is exactly as likely as three copies of it. Every method ends with the
ordinary M-step: on the partition of the rows by their nearest centre (kmeans, kmeans++,
random-from-data) or by their hierarchical cluster (hc), or on random soft memberships
(random).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from gmmcli.core.covariance import Covariance
from gmmcli.core.em import (
    SERIAL,
    Block,
    InMemoryRows,
    Params,
    Prepared,
    Reducer,
    RowSource,
    Stats,
    T,
    accumulate,
    add_up,
    log_joint,
    m_step,
)
from gmmcli.core.hc import Tree, agglomerate, scaled_svd
from gmmcli.core.missing import observed_distances
from gmmcli.core.structures import get_covariance
from gmmcli.errors import InvalidParameter

if TYPE_CHECKING:
    from gmmcli.core.fit import DataSummary
    from gmmcli.core.options import FitOptions

INIT_METHODS = ("kmeans", "kmeans++", "random", "random-from-data", "hc")
INIT_CHOICES = (*INIT_METHODS, "auto")  # auto: hc for the first restart, kmeans after
INIT_SAMPLE = 100_000  # k-means++ seeds on a weighted sample of about this many rows
HC_ROWS = 2000  # hc clusters at most this many distinct rows (mclust's subset size)
SAMPLE_ROWS_PER_COMPONENT = 20  # and at least this many per component
LLOYD_MAX_ITER = 300
LLOYD_TOL = 1e-4


def squared_distances(X: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """|x - c|² for every row and centre, clipped at zero against rounding."""
    sq = np.einsum("ij,ij->i", X, X)[:, None] - 2.0 * (X @ centres.T)
    sq += np.einsum("ij,ij->i", centres, centres)
    return np.maximum(sq, 0.0, out=sq)


def nearest_labels(X: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Each row's nearest centre: argmin of |c|² - 2 x·c (|x|² is the same for every c)."""
    scores = X @ (-2.0 * centres.T)
    scores += np.einsum("ij,ij->i", centres, centres)
    return scores.argmin(axis=1)


def pick_rows(
    rows: RowSource,
    row_weight: Callable[[np.ndarray, np.ndarray], np.ndarray],
    targets: np.ndarray,
) -> np.ndarray:
    """The rows at which the running sum of ``row_weight`` first exceeds each target.

    Inverse CDF sampling in row order: one pass for rows in one part; with several parts,
    one pass for each part's total and one in which each part picks its own targets.
    A target at or beyond the total, which only rounding can produce, takes the last row
    of positive weight.
    """
    if rows.n_parts == 1:
        local = [targets]
    else:

        def part_total(blocks: Iterable[Block], index: int, first_row: int) -> float:
            return sum(float(np.sum(row_weight(X, weights))) for X, weights in blocks)

        ends = np.cumsum(rows.map_parts(part_total))
        filled = np.flatnonzero(np.diff(ends, prepend=0.0) > 0)
        part = np.minimum(np.searchsorted(ends, targets, side="right"), filled[-1])
        starts = np.concatenate([[0.0], ends[:-1]])
        local = [targets[part == p] - starts[p] for p in range(rows.n_parts)]

    n_features = rows.n_features  # (functions sent to a cluster must not hold the source)

    def part_picks(blocks: Iterable[Block], index: int, first_row: int) -> np.ndarray:
        return _pick_in_order(blocks, row_weight, local[index], n_features)

    picks = rows.map_parts(part_picks)
    if rows.n_parts == 1:
        return picks[0]
    found = np.empty((len(targets), n_features))
    for p, picked in enumerate(picks):
        found[part == p] = picked
    return found


def _pick_in_order(
    blocks: Iterable[Block],
    row_weight: Callable[[np.ndarray, np.ndarray], np.ndarray],
    targets: np.ndarray,
    n_features: int,
) -> np.ndarray:
    """pick_rows() within one part: a single pass over its blocks."""
    order = np.argsort(targets)
    found = np.empty((len(targets), n_features))
    done, running, last = 0, 0.0, None
    for X, weights in blocks:
        if done == len(targets):
            break
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
    rows: RowSource,
    n_components: int,
    total_weight: float,
    rng: np.random.Generator,
    reducer: Reducer = SERIAL,
    distances: Callable[[np.ndarray, np.ndarray], np.ndarray] = squared_distances,
) -> np.ndarray:
    """Greedy k-means++ seeding on weighted rows: 2 + ln K candidates per centre.

    Two passes per centre: one draws the candidates, one measures each candidate's
    potential (Σ w · distance² to the nearest centre), whose minimum is the next total.
    ``distances`` measures; rows with gaps (observed_distances) become centres with their
    gaps at 0, the data's centre.
    """

    def nearest(X: np.ndarray, centres: np.ndarray) -> np.ndarray:
        return distances(X, centres).min(axis=1)

    def picked(row_weight: Callable, targets: np.ndarray) -> np.ndarray:
        return np.nan_to_num(pick_rows(rows, row_weight, targets), nan=0.0)

    n_trials = 2 + int(math.log(n_components))
    centres = picked(lambda X, w: w, rng.random(1) * total_weight)
    potential = reducer.sum(rows, lambda X, w: w @ nearest(X, centres))
    for _ in range(1, n_components):
        if potential > 0:
            targets = rng.random(n_trials) * potential
            candidates = picked(lambda X, w, c=centres: w * nearest(X, c), targets)
        else:  # every row sits on a centre already: fall back to the weights alone
            candidates = picked(lambda X, w: w, rng.random(n_trials) * total_weight)

        def potentials(X, w, candidates=candidates, centres=centres):
            closest = nearest(X, centres)[:, None]
            return w @ np.minimum(closest, distances(X, candidates))

        trial_potentials = reducer.sum(rows, potentials)
        best = int(np.argmin(trial_potentials))
        centres = np.vstack([centres, candidates[best]])
        potential = float(trial_potentials[best])
    return centres


def map_parts_drawing(
    rows: RowSource,
    rng: np.random.Generator,
    draws_per_row: int,
    function: Callable[[Iterable[Block], np.random.Generator], T],
) -> list[T]:
    """``function(blocks, part_rng)`` for every part, drawing as if in one pass in row order.

    Each part's generator continues ``rng`` where a single pass would be at the part's
    first row (every row drawing ``draws_per_row`` numbers: PCG64's ``advance``), so the
    draws do not depend on how the rows are split; ``rng`` then moves past all the rows.
    """

    def part(blocks: Iterable[Block], index: int, first_row: int) -> tuple[T, int]:
        generator = np.random.Generator(type(rng.bit_generator)())
        generator.bit_generator.state = rng.bit_generator.state
        generator.bit_generator.advance(first_row * draws_per_row)
        counted = [0]

        def counting() -> Iterator[Block]:
            for X, weights in blocks:
                counted[0] += len(X)
                yield X, weights

        return function(counting(), generator), counted[0]

    results = rows.map_parts(part)
    rng.bit_generator.advance(draws_per_row * sum(n_rows for _, n_rows in results))
    return [result for result, _ in results]


def distinct_random_rows(
    rows: RowSource, n_components: int, rng: np.random.Generator
) -> np.ndarray:
    """K rows with distinct values, drawn without replacement in proportion to weight.

    Each row gets the key -log(u)/w (u uniform, drawn in row order; Efraimidis-Spirakis),
    each distinct value the smallest key of its rows, and the K values with the smallest
    keys win. With fewer distinct values than K, the distinct ones are repeated.
    """

    def part(blocks: Iterable[Block], part_rng: np.random.Generator) -> list[Keyed]:
        best: list[Keyed] = []
        for X, weights in blocks:
            u = part_rng.random(len(X))
            positive = np.flatnonzero(weights > 0)
            keys = -np.log1p(-u[positive]) / weights[positive]
            order = np.argsort(keys, kind="stable")
            block_best = _smallest_distinct(
                ((keys[i], X[positive[i]]) for i in order), n_components
            )
            best = _smallest_distinct(sorted(best + block_best, key=_key), n_components)
        return best

    parts = map_parts_drawing(rows, rng, 1, part)
    best = _smallest_distinct(sorted(sum(parts, []), key=_key), n_components)
    values = [value for _, value in best]
    return np.array([values[i % len(values)] for i in range(n_components)])


Keyed = tuple[float, np.ndarray]


def _key(entry: Keyed) -> float:
    return entry[0]


def _smallest_distinct(entries: Iterable[Keyed], count: int) -> list[Keyed]:
    """The first ``count`` distinct values of entries in ascending key order, each with
    its first (smallest) key."""
    chosen: dict[bytes, Keyed] = {}
    for key, value in entries:
        chosen.setdefault(value.tobytes(), (key, value))
        if len(chosen) == count:
            break
    return list(chosen.values())


def sample_rows(
    rows: RowSource, size: int, total_weight: float, rng: np.random.Generator
) -> InMemoryRows:
    """A seeded weighted sample of about ``size`` rows, drawn in one pass in row order.

    Poisson sampling: each row is kept with probability p = min(1, size · w / W) and then
    weighs w / p, so the sample's weighted sums estimate those of all rows.
    """
    scale = size / total_weight
    n_features = rows.n_features

    def part(blocks: Iterable[Block], part_rng: np.random.Generator) -> Block:
        kept = [(np.empty((0, n_features)), np.empty(0))]
        for X, weights in blocks:
            chance = np.minimum(1.0, scale * weights)
            keep = part_rng.random(len(X)) < chance
            kept.append((X[keep], weights[keep] / chance[keep]))
        return np.concatenate([X for X, _ in kept]), np.concatenate([w for _, w in kept])

    parts = map_parts_drawing(rows, rng, 1, part)
    X = np.concatenate([X for X, _ in parts]).astype(np.float64, copy=False)
    weights = np.concatenate([w for _, w in parts])
    return InMemoryRows(X, weights, np.zeros(n_features))


def _one_hot(labels: np.ndarray, n_components: int) -> np.ndarray:
    """Hard responsibilities, shape (K, rows)."""
    resp = np.zeros((n_components, len(labels)))
    resp[labels, np.arange(len(labels))] = 1.0
    return resp


def lloyd(
    rows: RowSource, centres: np.ndarray, data_variance: float, reducer: Reducer = SERIAL
) -> np.ndarray:
    """Weighted Lloyd iterations until the centres move less than 1e-4 of the variance."""
    n_components = len(centres)
    threshold = LLOYD_TOL * data_variance
    for _ in range(LLOYD_MAX_ITER):

        def block(X, weights, centres=centres):
            """Per centre: the summed weight, then the weighted sum of its rows."""
            labels = nearest_labels(X, centres)
            wresp = _one_hot(labels, n_components) * weights
            return np.hstack([wresp.sum(axis=1)[:, None], wresp @ X])

        sums = reducer.sum(rows, block)
        counts, sums = sums[:, 0], sums[:, 1:]
        moved = centres.copy()
        filled = counts > 0
        moved[filled] = sums[filled] / counts[filled, None]
        shift = float(((moved - centres) ** 2).sum())
        centres = moved
        if shift <= threshold:
            break
    return centres


def _partition_stats(
    rows: RowSource, centres: np.ndarray, cov: Covariance, reducer: Reducer
) -> Stats:
    """Statistics of the hard partition of the rows by their nearest centre."""

    def block(X: np.ndarray, weights: np.ndarray) -> Stats:
        labels = nearest_labels(X, centres)
        return accumulate(X, weights, _one_hot(labels, len(centres)), cov)

    return reducer.sum(rows, block)


def _random_stats(
    rows: RowSource, n_components: int, cov: Covariance, rng: np.random.Generator
) -> Stats:
    """Statistics for memberships drawn uniformly on the simplex, row by row."""

    def part(blocks: Iterable[Block], part_rng: np.random.Generator) -> Stats | None:
        def block(X: np.ndarray, weights: np.ndarray) -> Stats:
            resp = part_rng.random((len(X), n_components)).T
            resp /= resp.sum(axis=0)
            return accumulate(X, weights, resp, cov)

        return add_up(block(X, weights) for X, weights in blocks)

    return add_up(map_parts_drawing(rows, rng, n_components, part))


def whole_data_start(
    rows: RowSource, n_components: int, cov: Covariance, reg_covar: float, reducer: Reducer
) -> Params:
    """Every component as the whole data (what uniform memberships give): what a component
    that comes out empty keeps. One component's statistics (one pass), repeated K times."""
    everything = reducer.sum(rows, lambda X, w: accumulate(X, w, np.ones((1, len(X))), cov))
    return _repeated(m_step(everything, cov, reg_covar, previous=None), n_components, cov)


def observed_whole_start(
    data: DataSummary, n_components: int, cov: Covariance, reg_covar: float
) -> Params:
    """whole_data_start() for rows with gaps, from their summary: every component at the
    data's centre (the origin of centred rows) with the data's variances."""
    n_features = len(data.centre)
    second = data.total_weight * np.diag(np.diag(data.covariance))[None]
    stats = Stats(
        np.array([data.total_weight]), np.zeros((1, n_features)), cov.second_from_matrices(second)
    )
    return _repeated(m_step(stats, cov, reg_covar, previous=None), n_components, cov)


def observed_start(
    rows: RowSource,
    n_components: int,
    cov: Covariance,
    reg_covar: float,
    *,
    data: DataSummary,
    fallback: Params,
    rng: np.random.Generator,
    reducer: Reducer = SERIAL,
) -> Params:
    """A start for rows with gaps, too few of them complete to start from: k-means++ and
    Lloyd's iterations with distances over each row's observed features (observed_
    distances), centres from observed values; then the M-step of each cluster's weight and
    mean with the clusters' pooled variance of each feature as its covariance."""
    centres = kmeans_plusplus(
        rows, n_components, data.total_weight, rng, reducer, observed_distances
    )
    weights, centres, variances = _observed_lloyd(rows, centres, data.variance, reducer)
    products = np.diag(variances)[None] + centres[:, :, None] * centres[:, None, :]
    stats = Stats(
        weights,
        weights[:, None] * centres,
        cov.second_from_matrices(weights[:, None, None] * products),
    )
    return m_step(stats, cov, reg_covar, previous=dataclasses.replace(fallback, means=centres))


def _observed_lloyd(
    rows: RowSource, centres: np.ndarray, data_variance: float, reducer: Reducer
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """lloyd() over observed features: each centre's coordinate is the weighted mean of
    its rows' observed values there. Returns the clusters' weights, the centres, and the
    pooled variance of each feature about the centres the last pass measured from (before
    their last move)."""
    n_components, n_features = centres.shape
    threshold = LLOYD_TOL * data_variance
    for _ in range(LLOYD_MAX_ITER):

        def block(X, weights, centres=centres):
            gaps = np.isnan(X)
            labels = observed_distances(X, centres).argmin(axis=1)
            wresp = _one_hot(labels, n_components) * weights
            values = np.where(gaps, 0.0, X)
            spread = np.where(gaps, 0.0, X - centres[labels]) ** 2
            return np.hstack(
                [wresp.sum(axis=1)[:, None], wresp @ ~gaps, wresp @ values, wresp @ spread]
            )

        sums = reducer.sum(rows, block)
        weights, counts, values, spread = np.split(
            sums, [1, 1 + n_features, 1 + 2 * n_features], axis=1
        )
        moved = np.where(counts > 0, values / np.where(counts > 0, counts, 1.0), centres)
        shift = float(((moved - centres) ** 2).sum())
        centres = moved
        if shift <= threshold:
            break
    variances = spread.sum(axis=0) / np.maximum(counts.sum(axis=0), np.finfo(float).tiny)
    return weights[:, 0], centres, variances


def _repeated(whole: Params, n_components: int, cov: Covariance) -> Params:
    """A one-component Params as K equal components."""
    repeat = np.zeros(n_components, dtype=int)
    return Params(
        np.full(n_components, 1.0 / n_components),
        whole.means[repeat],
        cov.select(whole.covariances, repeat),
        cov.select(whole.prec_chol, repeat),
    )


@dataclass(frozen=True)
class HcTree:
    """The hierarchical clustering of the rows that the hc start cuts, built by hc_tree().

    Attributes
    ----------
    leaves : array of shape (n_leaves, n_features)
        Distinct rows, about ``centre`` and in the order of their bytes.
    weights : array of shape (n_leaves,)
        What each leaf weighs in the clustering: its rows' summed weight, or, for a
        sample, as hc_tree() says.
    centre : array of shape (n_features,)
        The origin of the leaves' coordinates (the rows' centre).
    tree : Tree
        The merges of the leaves.
    sampled : bool
        Whether the leaves are a sample (there were more distinct rows than wanted);
        if not, the tree does not depend on the random generator.
    """

    leaves: np.ndarray
    weights: np.ndarray
    centre: np.ndarray
    tree: Tree
    sampled: bool


def hc_tree(
    rows: RowSource, size: int, rng: np.random.Generator, reducer: Reducer = SERIAL
) -> HcTree:
    """mclust's hierarchical clustering (gmmcli.core.hc) of at most ``size`` distinct rows.

    Equal rows are one leaf with their summed weight (mclust starts duplicated rows in
    one cluster; a row of weight w is w such rows). With more distinct rows than
    ``size``, ``size`` of them are drawn without replacement, each with probability in
    proportion to its summed weight: one pass in which every row draws one uniform u and
    the key -log(1 - u) / w, each distinct row keeps the smallest key of its rows (so its
    key follows the law of one row of their summed weight) and the ``size`` smallest
    keys win (Efraimidis and Spirakis). A leaf then weighs its summed weight w divided by
    its chance of being drawn, 1 - exp(-w τ) (τ the next smallest key), scaled so that
    the leaves weigh ``size`` in all: rows of equal weight weigh 1 each, as the rows of
    mclust's unweighted subset do, and a row so heavy that it would be drawn several
    times weighs that many. Once the drawing pass has passed rows over it no longer knows
    every drawn row's summed weight, and a second pass sums them. Without a sample, a row
    of weight w and w copies of it give the same leaves and tree; with one, the same law
    of draws (not the same draws).
    """
    leaves, weights, key_bound, exact = _draw_leaves(rows, size, rng)
    sampled = key_bound is not None
    if sampled and not exact:
        weights = _summed_weights(rows, leaves, reducer)
    if sampled:
        chance = -np.expm1(-weights * key_bound)
        weights = weights / chance
        weights *= len(weights) / weights.sum()
    tree = agglomerate(scaled_svd(leaves, weights), weights)
    return HcTree(leaves, weights, rows.centre, tree, sampled)


def _row_bytes(X: np.ndarray) -> np.ndarray:
    """Each row as one opaque value (its bytes, -0.0 read as 0.0), to find equal rows."""
    X = np.ascontiguousarray(X + 0.0, dtype=np.float64)
    return X.view(np.dtype((np.void, 8 * X.shape[1]))).ravel()


@dataclass
class _Drawn:
    """The distinct rows of smallest key met so far, in the order of their bytes: each
    with its smallest key and its summed weight; ``exact`` while no row was passed over
    (then the weights are the sums over all the rows)."""

    keys: np.ndarray
    rows: np.ndarray
    weights: np.ndarray
    exact: bool = True

    def joined(self, other: _Drawn, count: int) -> _Drawn:
        """The ``count`` distinct rows of smallest key of both."""
        keys = np.concatenate([self.keys, other.keys])
        rows = np.concatenate([self.rows, other.rows])
        weights = np.concatenate([self.weights, other.weights])
        exact = self.exact and other.exact
        # weights summed in row order (so that their rounding does not hang on the keys)
        _, inverse = np.unique(_row_bytes(rows), return_inverse=True)
        inverse = inverse.ravel()
        summed = np.bincount(inverse, weights=weights)
        by_value = np.lexsort((keys, inverse))  # each distinct row's smallest key first
        firsts = np.flatnonzero(np.diff(inverse[by_value], prepend=-1))
        chosen = by_value[firsts]  # in the order of the rows' bytes
        if len(chosen) > count:
            kept = np.sort(np.argpartition(keys[chosen], count - 1)[:count])
            chosen, summed, exact = chosen[kept], summed[kept], False
        return _Drawn(keys[chosen], rows[chosen], summed, exact)


def _draw_leaves(
    rows: RowSource, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, float | None, bool]:
    """One pass: the distinct rows of positive weight with their summed weights, or, when
    there are more than ``size``, the ``size`` of smallest key (hc_tree()) with their
    weights so far, the next smallest key, and whether those weights are the sums."""
    n_features = rows.n_features
    keep = size + 1  # one more tells whether there are more than size

    def part(blocks: Iterable[Block], part_rng: np.random.Generator) -> _Drawn:
        drawn = _Drawn(np.empty(0), np.empty((0, n_features)), np.empty(0))
        for X, weights in blocks:
            u = part_rng.random(len(X))
            positive = weights > 0
            keys = -np.log1p(-u[positive]) / weights[positive]
            block = _Drawn(keys, X[positive], weights[positive])
            if len(drawn.keys) == keep:  # only keys below the largest kept can get in
                below = keys < drawn.keys.max()
                if not below.all():
                    block = _Drawn(keys[below], block.rows[below], block.weights[below], False)
            drawn = drawn.joined(block, keep)
        return drawn

    parts = map_parts_drawing(rows, rng, 1, part)
    drawn = parts[0]
    for other in parts[1:]:
        drawn = drawn.joined(other, keep)
    if len(drawn.keys) <= size:
        return drawn.rows, drawn.weights, None, True
    key_bound = float(drawn.keys.max())
    kept = np.sort(np.argpartition(drawn.keys, size - 1)[:size])
    return drawn.rows[kept], drawn.weights[kept], key_bound, drawn.exact


def _leaf_index(leaf_bytes: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Which leaf each row of ``X`` equals (-1: none); ``leaf_bytes`` sorted."""
    found = _row_bytes(X)
    index = np.minimum(np.searchsorted(leaf_bytes, found), len(leaf_bytes) - 1)
    return np.where(leaf_bytes[index] == found, index, -1)


def _summed_weights(rows: RowSource, leaves: np.ndarray, reducer: Reducer) -> np.ndarray:
    """The summed weight of the rows equal to each leaf (one pass)."""
    leaf_bytes = _row_bytes(leaves)

    def block(X: np.ndarray, weights: np.ndarray) -> np.ndarray:
        index = _leaf_index(leaf_bytes, X)
        found = index >= 0
        return np.bincount(index[found], weights=weights[found], minlength=len(leaves))

    return reducer.sum(rows, block)


def hc_params(
    rows: RowSource,
    n_components: int,
    hc: HcTree,
    cov: Covariance,
    reg_covar: float,
    fallback: Params,
    reducer: Reducer = SERIAL,
) -> Params:
    """The M-step of the partition given by cutting ``hc`` at ``n_components`` clusters.

    When the leaves are all the distinct rows, that is their own partition (no pass:
    the leaves carry the summed weights). When they are a sample, the rows that are
    leaves keep their leaf's cluster and every other row joins the cluster of highest
    posterior probability under the M-step of the leaves' partition (what mclust's
    E-step after its subset does, made hard), in one pass that also sums the partition's
    statistics. Clusters beyond the leaves' count, and empty ones, keep ``fallback``.
    """
    labels = hc.tree.labels(n_components)
    shift = hc.centre - rows.centre  # leaves' coordinates = the rows' minus shift
    previous = dataclasses.replace(fallback, means=fallback.means - shift)
    leaf_stats = accumulate(hc.leaves, hc.weights, _one_hot(labels, n_components), cov)
    params = m_step(leaf_stats, cov, reg_covar, previous)
    if hc.sampled:
        prepared = Prepared.of(params, cov)
        leaf_bytes = _row_bytes(hc.leaves)

        def block(X: np.ndarray, weights: np.ndarray) -> Stats:
            index = _leaf_index(leaf_bytes, X)
            cluster = np.where(index >= 0, labels[index], -1)
            others = np.flatnonzero(index < 0)
            if len(others):
                cluster[others] = log_joint(X[others], prepared)[1].argmax(axis=0)
            return accumulate(X, weights, _one_hot(cluster, n_components), cov)

        stats = reducer.sum(rows.centred(hc.centre), block)
        params = m_step(stats, cov, reg_covar, previous)
    return dataclasses.replace(params, means=params.means + shift)


def check_hc_rows(hc_rows: int, n_components: int) -> None:
    """The hc start needs at least as many leaves as components."""
    if hc_rows < n_components:
        raise InvalidParameter("hc_rows", hc_rows, f"at least K ({n_components}) for the hc start")


def initial_params(
    rows: RowSource,
    n_components: int,
    options: FitOptions,
    *,
    data: DataSummary,
    fallback: Params,
    rng: np.random.Generator,
    reducer: Reducer = SERIAL,
    hc: HcTree | None = None,
) -> Params:
    """First parameters by ``options.init`` (one of INIT_METHODS: a restart's method,
    FitOptions.init_for()), in centred coordinates.

    k-means++ seeds on all rows when at most ``init_sample`` have a positive weight (or
    ``init_sample`` is 0), else on a weighted sample of about that many, at least 20 per
    component (sample_rows); Lloyd's iterations and the final partition use every row.
    hc cuts ``hc`` if given, else the tree of hc_tree() on at most ``hc_rows`` rows.
    Components that come out empty keep ``fallback`` (whole_data_start()).
    """
    cov, method, reg_covar = (
        get_covariance(options.covariance_type),
        options.init,
        options.reg_covar,
    )
    if method == "hc":
        check_hc_rows(options.hc_rows, n_components)
        hc = hc or hc_tree(rows, options.hc_rows, rng, reducer)
        return hc_params(rows, n_components, hc, cov, reg_covar, fallback, reducer)
    if method == "random":
        return m_step(_random_stats(rows, n_components, cov, rng), cov, reg_covar, fallback)
    if method == "random-from-data":
        centres = distinct_random_rows(rows, n_components, rng)
    else:
        seeding, seeding_weight = rows, data.total_weight
        size = max(options.init_sample, SAMPLE_ROWS_PER_COMPONENT * n_components)
        if options.init_sample > 0 and size < data.n_samples:
            sample = sample_rows(rows, size, data.total_weight, rng)
            if len(sample.X) >= n_components:  # else (rare) seed on every row after all
                seeding, seeding_weight = sample, float(sample.weights.sum())
        centres = kmeans_plusplus(seeding, n_components, seeding_weight, rng, reducer)
        if method == "kmeans":
            centres = lloyd(rows, centres, data.variance, reducer)
    previous = dataclasses.replace(fallback, means=centres)
    return m_step(_partition_stats(rows, centres, cov, reducer), cov, reg_covar, previous)
