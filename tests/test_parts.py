"""Rows split into parts (as a cluster holds them) give the fit of the rows in one part.

``SplitRows`` serves an array as several parts, each summed on its own, as the Dask
engine does with partitions. Every pass of the core, the random draws of initialisation
included, must come out as from one part up to the order of sums.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from gmmcli import fit
from gmmcli.core.em import InMemoryRows
from gmmcli.core.fit import fit_rows
from gmmcli.core.options import FitOptions

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")
INITS = ("kmeans", "kmeans++", "random", "random-from-data")


@dataclasses.dataclass
class SplitRows:
    """An array served as parts of the given lengths, each with its own blocks."""

    X: np.ndarray
    weights: np.ndarray
    lengths: list[int]
    centre: np.ndarray
    dtype: type = np.float64
    block_rows: int = 97

    n_parts = property(lambda self: len(self.lengths))
    n_features = property(lambda self: self.X.shape[1])

    def centred(self, centre, dtype=np.float64):
        return dataclasses.replace(self, centre=centre, dtype=dtype)

    def map_parts(self, function):
        bounds = np.concatenate([[0], np.cumsum(self.lengths)])
        results = []
        for index, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
            part = InMemoryRows(
                self.X[start:stop], self.weights[start:stop], self.centre, self.dtype, 97
            )
            results.append(function(part.blocks(), index, int(start)))
        return results


def split_fit(X, weights, lengths, n_components, **options):
    rows = SplitRows(X, weights, lengths, np.zeros(X.shape[1]))
    return fit_rows(rows, n_components, FitOptions(**options))


def assert_same_model(a, b, rtol=1e-10):
    np.testing.assert_allclose(a.weights, b.weights, rtol=rtol)
    np.testing.assert_allclose(a.means, b.means, rtol=rtol, atol=1e-12)
    np.testing.assert_allclose(a.covariances, b.covariances, rtol=rtol, atol=1e-12)
    np.testing.assert_allclose(a.fit_info.log_likelihood, b.fit_info.log_likelihood, rtol=rtol)
    assert a.fit_info.n_iter == b.fit_info.n_iter


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("init", INITS)
def test_parts_give_the_one_part_model(mixture, covariance_type, init):
    X, _ = mixture(3, n_samples=900, n_features=3, n_components=3, spread=10.0)
    weights = np.random.default_rng(0).integers(0, 4, len(X)).astype(float)
    options = dict(covariance_type=covariance_type, init=init, n_init=2, seed=7, tol=1e-6)
    whole = fit(X, 3, weights=weights, **options)
    split = split_fit(X, weights, [250, 1, 0, 349, 300], 3, **options)
    assert_same_model(whole, split)


@pytest.mark.parametrize("init", ["kmeans", "kmeans++"])
def test_parts_draw_the_same_seeding_sample(mixture, init):
    X, _ = mixture(6, n_samples=900, n_features=2, n_components=3, spread=10.0)
    weights = np.random.default_rng(3).integers(0, 4, len(X)).astype(float)
    options = dict(init=init, n_init=2, seed=8, init_sample=150, max_iter=1)
    whole = fit(X, 3, weights=weights, **options)
    split = split_fit(X, weights, [300, 0, 120, 480], 3, **options)
    assert_same_model(whole, split)


def test_a_part_of_zero_weight_rows_is_never_picked(mixture):
    X, _ = mixture(4, n_samples=600)
    weights = np.ones(len(X))
    weights[400:] = 0.0  # the last part holds no weight at all
    whole = fit(X, 3, weights=weights, init="kmeans++", seed=1)
    split = split_fit(X, weights, [200, 200, 200], 3, init="kmeans++", seed=1)
    assert_same_model(whole, split)


@pytest.mark.filterwarnings("ignore:degenerate fit")
def test_random_from_data_takes_each_values_smallest_key(mixture):
    """Duplicated rows in different parts: a value keeps the smallest key of its copies."""
    X, _ = mixture(5, n_samples=60)
    X = np.repeat(X, 5, axis=0)[np.random.default_rng(2).permutation(300)]
    weights = np.ones(len(X))
    for seed in range(5):
        whole = fit(X, 4, weights=weights, init="random-from-data", seed=seed, max_iter=1)
        split = split_fit(
            X, weights, [71, 99, 130], 4, init="random-from-data", seed=seed, max_iter=1
        )
        assert_same_model(whole, split)
