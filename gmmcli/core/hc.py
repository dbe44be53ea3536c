"""Model-based agglomerative hierarchical clustering: mclust's start for EM (``hc``).

Every row of the data, counted with its weight, starts as a cluster of its own; at each
stage the two clusters whose merger costs the least are merged, until one is left. The
cost is that of the unconstrained (VVV) Gaussian classification likelihood (Fraley 1998,
as R's mclust computes it): a cluster of total weight n, scatter matrix W about its mean
and trace T contributes

    n · log(|W / n| + β (T + α) / n),

and a merger costs the contribution of the merged cluster less those of its two parts
(lower is better). |W / n| is taken as 0 while the cluster holds at most p distinct rows
(p features: W is singular then), so small clusters are compared by their trace, smoothed by
α = tr(scatter of all rows) / (n p) and β = 1: mclust's defaults. Without α and β the
criterion Σ n log |W / n| would be undefined until clusters outgrow the dimension.

A row of weight w counts as w identical rows, which is what mclust does with duplicated
rows (it starts them in one cluster): a cluster's weight, mean and scatter are the same
sums either way, and so is every cost. The clustering runs on mclust's scaled SVD
transform of the rows (its ``hcUse = "SVD"``, the default since mclust 5.4): each
feature centred and scaled to unit variance, then rotated to its principal axes, each
axis divided by the square root of its singular value. Features of zero variance, and
directions the rows do not span, are left out.

The costs of merging every pair are kept in an n × n matrix with each row's minimum, so
a stage only computes the costs of the merged cluster with the others and rescans the rows
whose minimum it changed. A pair whose merger holds more than p distinct rows needs a
determinant: a rank-one update of the merged cluster's Cholesky factor when the other is
a single row, else one of a batch. Memory is O(n²): 32 MB at n = 2,000.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BETA = 1.0  # mclust's default beta
ALPHA = 1.0  # mclust's default alpha, a multiple of the rows' mean variance per feature


@dataclass(frozen=True)
class Tree:
    """The merges of a hierarchical clustering of ``leaves`` rows.

    Attributes
    ----------
    merges : array of shape (n_leaves - 1, 2)
        Stage s merged the clusters represented by leaves ``merges[s, 0] < merges[s, 1]``
        (a cluster is represented by its smallest leaf index, as in mclust).
    costs : array of shape (n_leaves - 1,)
        What each merger cost (the change in the criterion, lower is better).
    """

    n_leaves: int
    merges: np.ndarray
    costs: np.ndarray

    def labels(self, n_clusters: int) -> np.ndarray:
        """Each leaf's cluster when the tree is cut at ``n_clusters`` clusters (all the
        leaves' clusters when there are fewer), numbered in order of their first leaf."""
        parent = np.arange(self.n_leaves)
        done = self.merges[: max(0, self.n_leaves - n_clusters)]
        parent[done[:, 1]] = done[:, 0]
        while True:  # point every leaf at its root (pointer jumping)
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped
        return np.unique(parent, return_inverse=True)[1]


def scaled_svd(X: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """mclust's scaled SVD transform of weighted rows (a row of weight w as w rows).

    Columns are centred and divided by their standard deviation (denominator Σw − 1,
    or Σw when that is at most 1); with Xs = U D Vᵀ the singular value decomposition of
    the rows so scaled (each counted w times), the result is Xs V D^(-1/2) = U D^(1/2).
    Columns of zero variance and directions of (relatively) zero singular value are
    dropped, so the result has as many columns as the rows span.
    """
    total = float(weights.sum())
    centred = X - (weights @ X) / total
    variance = weights @ np.square(centred) / (total - 1.0 if total > 1.0 else total)
    spread = variance > 0
    scaled = centred[:, spread] / np.sqrt(variance[spread])
    squared, axes = np.linalg.eigh((scaled * weights[:, None]).T @ scaled)  # D², V
    spanned = squared > np.finfo(float).eps * len(squared) * max(squared.max(initial=0.0), 0.0)
    return scaled @ (axes[:, spanned] / squared[spanned] ** 0.25)


def agglomerate(
    Z: np.ndarray, weights: np.ndarray, alpha: float = ALPHA, beta: float = BETA
) -> Tree:
    """The VVV hierarchical clustering of rows ``Z`` (already transformed) with weights.

    ``alpha`` scales the smoothing α (mclust's ``alpha``, times the rows' mean variance
    per feature); ``beta`` is mclust's ``beta``.
    """
    n_leaves, p = Z.shape
    total = float(weights.sum())
    spread = float(weights @ np.square(Z - (weights @ Z) / total).sum(axis=1))
    smoothing = max(alpha * spread / (total * max(p, 1)), np.finfo(float).eps)
    if n_leaves < 2:
        return Tree(n_leaves, np.empty((0, 2), dtype=np.intp), np.empty(0))
    return _Agglomeration(Z, weights, smoothing, beta).run()


class _Agglomeration:
    """The state of agglomerate(): the clusters' sums and the costs of merging every pair,
    at positions 0 .. size - 1. A merger keeps the pair's lower position; the cluster at
    the last position moves into the other (as mclust does), so every operation reads a
    compact block. ``leaf[i]`` is the smallest leaf of the cluster at position i."""

    def __init__(self, Z: np.ndarray, weights: np.ndarray, alpha: float, beta: float):
        n_leaves, p = Z.shape
        self.p, self.alpha, self.beta = p, alpha, beta
        self.size = n_leaves
        self.leaf = np.arange(n_leaves)
        self.weight = weights.astype(float, copy=True)
        self.distinct = np.ones(n_leaves, dtype=np.intp)  # leaves per cluster
        self.mean = Z.astype(float, copy=True)
        self.scatter = np.zeros((n_leaves, p, p))
        self.trace = np.zeros(n_leaves)
        self.term = self._terms(self.weight, self.trace)
        # Every pair of single leaves at once: their scatter is c δδᵀ, its trace c |δ|².
        squared = np.einsum("ij,ij->i", Z, Z)
        distance = squared[:, None] + squared[None, :] - 2.0 * (Z @ Z.T)
        np.maximum(distance, 0.0, out=distance)
        pair_weight = self.weight[:, None] + self.weight[None, :]
        pair_trace = distance * (self.weight[:, None] * self.weight[None, :] / pair_weight)
        pair_logdet = None
        if p == 1:  # two distinct rows already outnumber one dimension
            with np.errstate(divide="ignore"):
                pair_logdet = np.log(pair_trace / pair_weight)
        cost = self._terms(pair_weight, pair_trace, pair_logdet)
        cost -= self.term[:, None]
        cost -= self.term[None, :]
        np.fill_diagonal(cost, np.inf)
        self.cost = cost
        self.best = cost.min(axis=1)
        self.nearest = cost.argmin(axis=1)

    def _terms(
        self, weight: np.ndarray, trace: np.ndarray, logdet: np.ndarray | None = None
    ) -> np.ndarray:
        """n · log(|W/n| + β (T + α)/n), with log |W/n| = ``logdet`` (None or -inf: |W| is
        taken as zero)."""
        terms = np.log(self.beta * (trace + self.alpha) / weight)
        if logdet is not None:
            finite = np.isfinite(logdet)
            terms[finite] = np.logaddexp(logdet[finite], terms[finite])
        terms *= weight
        return terms

    def _merged_terms(self, a: int, others: slice | np.ndarray) -> np.ndarray:
        """The term of the cluster at ``a`` merged with each of those at ``others``."""
        weight = self.weight[a] + self.weight[others]
        factor = self.weight[a] * self.weight[others] / weight
        delta = self.mean[others] - self.mean[a]
        trace = self.trace[a] + self.trace[others] + factor * np.einsum("ij,ij->i", delta, delta)
        logdet = np.full(len(weight), -np.inf)
        full_rank = self.distinct[a] + self.distinct[others] > self.p
        if self.p == 1:
            with np.errstate(divide="ignore"):
                logdet[full_rank] = np.log(trace[full_rank] / weight[full_rank])
        elif full_rank.any():
            general = full_rank
            factor_a = self._cholesky(a)
            if factor_a is not None:
                # A single row adds c δδᵀ: |W + c δδᵀ| = |W| (1 + c |L⁻¹δ|²), W = L Lᵀ.
                single = full_rank & (self.distinct[others] == 1)
                solved = delta[single] @ np.linalg.inv(factor_a).T
                log_w = 2.0 * np.log(np.diag(factor_a)).sum()
                lifted = np.log1p(factor[single] * np.einsum("ij,ij->i", solved, solved))
                logdet[single] = log_w + lifted
                general = full_rank & ~single
            if general.any():
                d = delta[general]
                scatter = self.scatter[others][general] + self.scatter[a]
                scatter += factor[general, None, None] * (d[:, :, None] * d[:, None, :])
                sign, value = np.linalg.slogdet(scatter)
                logdet[general] = np.where(sign > 0, value, -np.inf)
            logdet[full_rank] -= self.p * np.log(weight[full_rank])
        return self._terms(weight, trace, logdet)

    def _cholesky(self, a: int) -> np.ndarray | None:
        """The Cholesky factor of the scatter of the cluster at ``a``, if it has full rank."""
        if self.distinct[a] <= self.p:
            return None
        try:
            return np.linalg.cholesky(self.scatter[a])
        except np.linalg.LinAlgError:
            return None

    def run(self) -> Tree:
        n_leaves = self.size
        merges = np.empty((n_leaves - 1, 2), dtype=np.intp)
        costs = np.empty(n_leaves - 1)
        for stage in range(n_leaves - 1):
            first = int(np.argmin(self.best[: self.size]))
            a, b = sorted((first, int(self.nearest[first])))
            merges[stage] = sorted((self.leaf[a], self.leaf[b]))
            costs[stage] = self.cost[a, b]
            self._merge(a, b)
        return Tree(n_leaves, merges, costs)

    def _merge(self, a: int, b: int) -> None:
        """The cluster at ``b`` joins the one at ``a``, the last moves into ``b``, and the
        costs of ``a`` with every other are renewed."""
        self.term[a] = self._merged_terms(a, np.array([b]))[0]
        weight = self.weight[a] + self.weight[b]
        factor = self.weight[a] * self.weight[b] / weight
        delta = self.mean[b] - self.mean[a]
        self.scatter[a] += self.scatter[b] + factor * np.outer(delta, delta)
        self.trace[a] += self.trace[b] + factor * (delta @ delta)
        self.mean[a] += (self.weight[b] / weight) * delta
        self.weight[a] = weight
        self.distinct[a] += self.distinct[b]
        self.leaf[a] = min(self.leaf[a], self.leaf[b])
        cost, best, nearest = self.cost, self.best, self.nearest
        last = self.size - 1
        # rows whose minimum was a pair with a or b: renewed below, or scanned again
        lost = (nearest[: last + 1] == a) | (nearest[: last + 1] == b)
        if b != last:
            for values in (self.leaf, self.weight, self.distinct, self.mean, self.scatter):
                values[b] = values[last]
            for values in (self.trace, self.term, best, nearest, lost):
                values[b] = values[last]
            cost[b, :last] = cost[last, :last]
            cost[:last, b] = cost[:last, last]
            cost[b, b] = np.inf
            nearest[: last + 1][nearest[: last + 1] == last] = b
        self.size = size = last
        lost = lost[:size]
        if size == 1:
            best[0] = np.inf
            return
        renewed = self._merged_terms(a, slice(0, size))
        renewed -= self.term[:size]
        renewed -= self.term[a]
        renewed[a] = np.inf
        cost[a, :size] = renewed
        cost[:size, a] = renewed
        closer = renewed <= best[:size]
        best[:size][closer] = renewed[closer]
        nearest[:size][closer] = a
        best[a] = renewed.min()
        nearest[a] = renewed.argmin()
        rescan = np.flatnonzero(lost & ~closer)
        rescan = rescan[rescan != a]
        if len(rescan):
            rows = cost[rescan, :size]
            best[rescan] = rows.min(axis=1)
            nearest[rescan] = rows.argmin(axis=1)
