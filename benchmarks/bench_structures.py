"""mclust's structures against the nearest of scikit-learn's four, through the Python API.

For each structure, an EM run of fixed length on the same data: the time per iteration
(from one M-step's start to the next's) and the M-step's share of it, medians over the
iterations after the fifth, then medians over rounds in which the structures take turns.
A structure's E-step is its nearest kernel's (EEI's is diag's, VEV's and VVE's full's), so
its iteration should cost what that one's does; an iterative M-step (VEI, VEE, VEV, EVE,
VVE) should stay under a tenth of an iteration.

    python benchmarks/bench_structures.py             # 1,000,000 rows, D = 10, K = 10
    python benchmarks/bench_structures.py --quick     # 100,000 rows, a smoke test
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np

import gmmcli
from gmmcli.core import em
from gmmcli.core.generate import random_mixture

# (structure, its nearest of the four)
PAIRS = [("EEI", "diag"), ("VEI", "diag"), ("VEV", "full"), ("VVE", "full"), ("EVE", "full")]
SKIP = 5  # iterations left out at the start: the inner loops start cold there


def timed_fit(X: np.ndarray, k: int, covariance_type: str, iterations: int) -> tuple[float, float]:
    """(median ms per iteration, median ms per M-step) after the first SKIP iterations."""
    starts, lengths = [], []
    m_step = em.m_step

    def timed_m_step(*args, **kwargs):
        starts.append(time.perf_counter())
        result = m_step(*args, **kwargs)
        lengths.append(time.perf_counter() - starts[-1])
        return result

    em.m_step = timed_m_step
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gmmcli.fit(X, k, covariance_type=covariance_type, tol=0, max_iter=iterations, seed=0)
    finally:
        em.m_step = m_step
    # only EM's M-steps are timed: the start's call m_step by the name init.py imported
    per_iteration = np.diff(starts)[SKIP:]
    return 1e3 * float(np.median(per_iteration)), 1e3 * float(np.median(lengths[SKIP + 1 :]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=20)
    args = parser.parse_args()
    n, d, k = (100_000, 5, 4) if args.quick else (1_000_000, 10, 10)
    rng = np.random.default_rng(0)
    X, _ = random_mixture(k, d, covariance_type="full", separation=4.0, rng=rng).sample(n, seed=1)
    names = list(dict.fromkeys(name for pair in PAIRS for name in pair))
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    for _ in range(args.rounds):
        for name in names:
            runs[name].append(timed_fit(X, k, name, args.iterations))

    def cell(name: str, column: int) -> tuple[float, str]:
        values = [run[column] for run in runs[name]]
        middle = statistics.median(values)
        return middle, f"{middle:.1f} [{min(values):.1f}–{max(values):.1f}]"

    print(f"{n:,} rows, D = {d}, K = {k}; medians [min–max] over {args.rounds} rounds\n")
    print("| structure | ms per iteration | M-step ms | M-step share | nearest | its ms | ratio |")
    print("|---|---|---|---|---|---|---|")
    for name, nearest in PAIRS:
        iteration, iteration_cell = cell(name, 0)
        m_step, m_step_cell = cell(name, 1)
        theirs, theirs_cell = cell(nearest, 0)
        print(
            f"| {name} | {iteration_cell} | {m_step_cell} | {m_step / iteration:.1%} | "
            f"{nearest} | {theirs_cell} | {iteration / theirs:.2f} |"
        )


if __name__ == "__main__":
    main()
