"""EM through missing values against EM on complete data (`make bench-missing`).

The same 1M x 10 rows and start as bench_em.py's full 1M x 10 x 10 shape, once complete
and once with 10% of cells removed at random; gmmcli.fit through the API in this process
(numpy's default BLAS threads, scikit-learn imported), from the same start, with and
without gaps, taking turns. A round's time per iteration is (T(6) - T(1)) / 5, so the
start, the summary and the final E-step cancel out. Printed: each median over the rounds
with its spread (min-max) and the median of the rounds' ratios (the target is at most 3).

    python benchmarks/bench_missing.py [--rounds 5] [--share 0.1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import sklearn.mixture  # noqa: F401 (a user's session: scikit-learn is loaded)
from bench_em import prepare

import gmmcli

SHAPE = (1_000_000, 10, 10, "full", "float64")
ITERATIONS = (1, 6)


def per_iteration(X: np.ndarray, start) -> float:
    """(T(6) - T(1)) / 5 of gmmcli.fit from ``start``."""
    times = []
    for iterations in ITERATIONS:
        began = time.perf_counter()
        gmmcli.fit(
            X,
            len(start["weights"]),
            tol=0,
            max_iter=iterations,
            weights_init=start["weights"],
            means_init=start["means"],
            precisions_init=start["precisions"],
            missing="marginal",
        )
        times.append(time.perf_counter() - began)
    return (times[1] - times[0]) / (ITERATIONS[1] - ITERATIONS[0])


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.4g} ({min(values):.4g}-{max(values):.4g})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--share", type=float, default=0.1, help="cells removed at random")
    args = parser.parse_args()
    arrays = np.load(prepare(*SHAPE))
    complete = arrays["X"]
    gapped = complete.copy()
    gapped[np.random.default_rng(0).random(gapped.shape) < args.share] = np.nan
    print(
        f"{len(complete):,} x {complete.shape[1]}, K = 10, full: {args.share:.0%} of cells "
        f"missing at random ({np.isnan(gapped).any(axis=1).mean():.0%} of rows)"
    )
    per_iteration(complete[:20_000], arrays)  # warm-up: lazy imports, worker pools
    timed = {"complete": [], "gaps": []}
    for round_ in range(args.rounds):
        order = ["complete", "gaps"] if round_ % 2 == 0 else ["gaps", "complete"]
        for name in order:
            timed[name].append(per_iteration(complete if name == "complete" else gapped, arrays))
    ratios = [g / c for g, c in zip(timed["gaps"], timed["complete"], strict=True)]
    print(f"  complete data   {spread([t * 1e3 for t in timed['complete']])} ms per iteration")
    print(f"  with gaps       {spread([t * 1e3 for t in timed['gaps']])} ms per iteration")
    print(f"  gaps / complete {spread(ratios)} (target <= 3), median (min-max) of {args.rounds}")


if __name__ == "__main__":
    main()
