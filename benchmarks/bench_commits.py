"""EM time per iteration of two commits of gmmcli, taking turns: did a change cost speed?

Each commit is checked out into a temporary worktree; in every round each shape runs once
per commit, in a fresh subprocess of the Python API (an ordinary session: numpy's default
BLAS threads), the commits' order swapped every round. Time per iteration is
(T(1 + ITERATIONS) - T(1)) / ITERATIONS from the same start (bench_em.py's data), after a
first fit that warms everything up. Printed: per shape, each commit's median over the
rounds with its spread, and the ratio of the medians.

    python benchmarks/bench_commits.py OLD NEW [--rounds 5] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bench_em
import numpy as np

REPO = Path(__file__).resolve().parent.parent
ITERATIONS = 20  # enough that the small shapes' iterations outweigh the timer's noise


def worker(path: str, cov: str, dtype: str) -> None:
    """In a subprocess: ms per EM iteration of the gmmcli on PYTHONPATH, as JSON."""
    arrays = dict(np.load(path))
    bench_em.run_gmmcli(arrays, cov, dtype, 1)  # warm-up: imports, scratch arrays
    times = []
    for iterations in (1, 1 + ITERATIONS):
        started = time.perf_counter()
        bench_em.run_gmmcli(arrays, cov, dtype, iterations)
        times.append(time.perf_counter() - started)
    print(json.dumps((times[1] - times[0]) / ITERATIONS * 1000))


def per_iteration_ms(tree: Path, path: Path, cov: str, dtype: str) -> float:
    """One worker run on the gmmcli of ``tree``."""
    command = [sys.executable, __file__, "worker", str(path), cov, dtype]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(done.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    if sys.argv[1:2] == ["worker"]:
        worker(*sys.argv[2:])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="small shapes only")
    args = parser.parse_args()
    shapes = bench_em.QUICK_SHAPES if args.quick else bench_em.SHAPES
    paths = [bench_em.prepare(*shape) for shape in shapes]
    with tempfile.TemporaryDirectory() as folder:
        trees = {}
        for label, rev in (("old", args.old), ("new", args.new)):
            trees[label] = Path(folder) / label
            git = ["git", "-C", str(REPO), "worktree", "add", "--detach", "-q"]
            subprocess.run([*git, str(trees[label]), rev], check=True)
        try:
            times = {(i, label): [] for i in range(len(shapes)) for label in trees}
            for round_ in range(args.rounds):
                order = ["old", "new"] if round_ % 2 == 0 else ["new", "old"]
                for i, (shape, path) in enumerate(zip(shapes, paths, strict=True)):
                    for label in order:
                        ms = per_iteration_ms(trees[label], path, shape[3], shape[4])
                        times[i, label].append(ms)
                print(f"round {round_ + 1} of {args.rounds} done", file=sys.stderr)
        finally:
            for tree in trees.values():
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", tree])
    print(f"old {args.old}, new {args.new}; ms per EM iteration, median [min-max] of "
          f"{args.rounds} rounds")  # fmt: skip
    print(f"{'shape (N, D, K, type, dtype)':<40} {'old':>22} {'new':>22} {'new/old':>8}")
    for i, shape in enumerate(shapes):
        cells = []
        for label in ("old", "new"):
            runs = times[i, label]
            cells.append(f"{statistics.median(runs):.1f} [{min(runs):.1f}-{max(runs):.1f}]")
        ratio = statistics.median(times[i, "new"]) / statistics.median(times[i, "old"])
        print(f"{str(shape):<40} {cells[0]:>22} {cells[1]:>22} {ratio:>8.3f}")


if __name__ == "__main__":
    main()
