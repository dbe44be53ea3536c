"""The hc start, measured: seconds to build mclust's hierarchical tree (gmmcli.core.hc) on
2,000 rows, the default --hc-rows, at D = 10 and D = 50, one BLAS thread.

Each case draws rows from a random mixture of 5 full-covariance components and times
init.hc_tree: the pass that draws the leaves, the scaled SVD transform and the
agglomeration, which dominates. "whole" clusters 2,000 distinct rows; "sampled" draws
2,000 of 100,000 rows by weight (one more pass sums their weights). The figure is the
median over rounds, with the spread (min-max) beside it. Run through `make bench-hc`:

    python benchmarks/bench_hc.py              # D = 10 and 50, 5 rounds
    python benchmarks/bench_hc.py --quick      # smaller, 1 round, a smoke test
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

# isort: split
import argparse
import statistics
import time

import numpy as np

from gmmcli.core.em import InMemoryRows
from gmmcli.core.generate import random_mixture
from gmmcli.core.init import HC_ROWS, hc_tree


def rows(n_rows: int, n_features: int, seed: int) -> InMemoryRows:
    rng = np.random.default_rng(seed)
    mixture = random_mixture(5, n_features, covariance_type="full", rng=rng)
    X, _ = mixture.sample(n_rows, rng)
    return InMemoryRows(X, rng.integers(1, 4, n_rows).astype(float), np.zeros(n_features))


def seconds(source: InMemoryRows, size: int, rounds: int) -> list[float]:
    times = []
    for round_ in range(rounds):
        started = time.perf_counter()
        tree = hc_tree(source, size, np.random.default_rng(round_))
        times.append(time.perf_counter() - started)
    assert len(tree.leaves) == min(size, len(source.X))
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    size = 300 if args.quick else HC_ROWS
    rounds = 1 if args.quick else args.rounds
    print(f"hc_tree, {size} leaves, median [min-max] of {rounds} rounds, seconds")
    print("| D | rows | leaves | seconds |")
    print("|---|---|---|---|")
    for n_features in (10, 50):
        for n_rows, label in ((size, "whole"), (50 * size, "sampled")):
            times = seconds(rows(n_rows, n_features, n_features), size, rounds)
            spread = f"{statistics.median(times):.2f} [{min(times):.2f}-{max(times):.2f}]"
            print(f"| {n_features} | {n_rows:,} ({label}) | {size:,} | {spread} |")


if __name__ == "__main__":
    main()
