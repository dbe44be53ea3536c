"""The E-step's choices, measured: µs per row, one thread, for the tile sizes and kernel
forms that gmmcli.core chooses between (em.tile_rows, Covariance.kernel).

Each case runs the E-step over the same rows in tiles of a given size, in a given form;
the figure is the median over rounds, with the spread (min-max) beside it. Run through
`make bench-kernels` (one BLAS thread, OpenBLAS's own kernel choice):

    python benchmarks/bench_kernels.py              # every case, 7 rounds
    python benchmarks/bench_kernels.py --quick      # fewer rows and rounds, a smoke test
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

# isort: split
import argparse
import statistics
import time

import numpy as np

from gmmcli.core import em
from gmmcli.core.covariance import STACKED_FULL, STACKED_TIED
from gmmcli.core.structures import COVARIANCE_TYPES

# (covariance type, D, K, dtype, form, tile rows): tiles around OpenBLAS's small-matrix
# bound (10^6 multiply-adds per coef @ phi) and the forms on either side of the rules.
FULL, TIED, DIAG = COVARIANCE_TYPES["full"], COVARIANCE_TYPES["tied"], COVARIANCE_TYPES["diag"]
TILES = (
    [
        ("full", 10, 10, np.float64, FULL, rows)
        for rows in (1515, 1516, 1024)  # 660 multiply-adds per row: 1,515 rows stay within
    ]
    + [("full", 10, 10, np.float32, FULL, rows) for rows in (1515, 1516, 1024)]
    + [("diag", 10, 10, np.float64, DIAG, rows) for rows in (4761, 4762)]
)
FORMS = [
    ("full", d, k, np.float64, form, None)
    for d, k in ((16, 1), (24, 2), (40, 2), (50, 20), (64, 8), (100, 10), (200, 10))
    for form in (FULL, STACKED_FULL)
] + [
    ("tied", d, k, np.float64, form, None)
    for d, k in ((2, 3), (5, 5), (10, 10), (50, 20))
    for form in (TIED, STACKED_TIED)
]


def prepared(name: str, d: int, k: int, dtype, form, rng) -> em.Prepared:
    """A random mixture's parameters in exactly ``form``."""
    cov = COVARIANCE_TYPES[name]
    a = rng.normal(size=(k, d, d))
    full = a @ np.swapaxes(a, 1, 2) / d + np.eye(d)
    covariances = {"full": full, "tied": full[0], "diag": full[:, range(d), range(d)]}[name]
    prec_chol = cov.precision_cholesky(covariances)
    coef = form.coefficients(rng.normal(size=(k, d)), prec_chol, np.full(k, -np.log(k)))
    return em.Prepared(coef.astype(dtype), form)


def microseconds_per_row(case, n_rows: int, rounds: int) -> list[float]:
    name, d, k, dtype, form, tile = case
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n_rows, d)).astype(dtype)
    weights = np.ones(n_rows)
    prep = prepared(name, d, k, dtype, form, rng)
    tile = tile or em.tile_rows(prep, d)
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        for start in range(0, n_rows, tile):
            em._e_tile(X[start : start + tile], weights[start : start + tile], prep)
        times.append((time.perf_counter() - started) / n_rows * 1e6)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rows and rounds")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    rounds = 2 if args.quick else max(1, args.rounds)
    print(f"{'case':<44} {'tile':>6} {'µs/row median':>14} {'spread':>16}")
    for case in TILES + FORMS:
        name, d, k, dtype, form, tile = case
        n_rows = max(20_000, 4_000_000 // (d * d)) // (8 if args.quick else 1)
        times = microseconds_per_row(case, n_rows, rounds)
        label = f"{name} D={d} K={k} {np.dtype(dtype).name} {type(form).__name__}"
        shown_tile = tile or "auto"
        spread = f"{min(times):.3f}-{max(times):.3f}"
        print(f"{label:<44} {shown_tile:>6} {statistics.median(times):>14.3f} {spread:>16}")


if __name__ == "__main__":
    main()
