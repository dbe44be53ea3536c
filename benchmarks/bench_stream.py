"""Streamed Parquet against in memory: rows per second per EM iteration (`make bench-stream`).

Generates benchmarks/data/stream_2000000x10.parquet with `gmmcli generate` (its codec and
row groups; not committed) and the true mixture it was drawn from, then times
`gmmcli fit FILE -k 10 --init-model TRUTH --tol 0 --max-iter m` (full covariances, the
same start every time) in fresh processes, in memory and streamed (`--chunk-rows`
forces streaming), for m = M1 and M2 iterations; the two modes take turns, their order
swapped every round. A round's rate is rows / ((T(M2) - T(M1)) / (M2 - M1)): reading
the file once, start-up and the final E-step cancel out. Printed: each mode's median
rate over the rounds with its spread, and the median of the rounds' streamed/in-memory
ratios (the target is at least 0.6); beside them the CPU seconds per iteration (workers
included), which say what each costs when the machine is shared. The streamed and
in-memory models must be the same bytes.

    python benchmarks/bench_stream.py [--rounds 5] [--rows 2000000] [--iterations 1 6]

To measure another checkout, put it first on PYTHONPATH: the gmmcli timed is printed.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
CHUNK_ROWS = 200_000
MODES = {"in memory": (), "streamed": ("--chunk-rows", str(CHUNK_ROWS))}


def gmmcli(*args: str) -> tuple[float, float]:
    """(wall, CPU) seconds taken by ``gmmcli args`` in a fresh process, its workers'
    CPU included (run outside the repository, so that PYTHONPATH decides which gmmcli)."""
    before, started = _children_cpu(), time.perf_counter()
    subprocess.run([sys.executable, "-m", "gmmcli", *args], check=True, cwd=DATA)
    return time.perf_counter() - started, _children_cpu() - before


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def make(rows: int) -> tuple[Path, Path]:
    """The data file and its true mixture, generated once."""
    path, truth = DATA / f"stream_{rows}x10.parquet", DATA / f"stream_{rows}x10_truth.json"
    if not (path.exists() and truth.exists()):
        DATA.mkdir(exist_ok=True)
        print(f"generating {path.name} ...", file=sys.stderr)
        gmmcli("generate", "-k", "10", "-d", "10", "-n", str(rows), "--seed", "3",
               "--no-labels", "-q", "-o", str(path), "--truth", str(truth))  # fmt: skip
    return path, truth


def per_iteration(
    path: Path, truth: Path, rows: int, iterations: tuple[int, int], mode: str
) -> tuple[float, float]:
    """One round in ``mode``: (rows per second per iteration, CPU seconds per iteration);
    the model of the longer fit is left in DATA/stream_model_<mode>.json."""
    out = DATA / f"stream_model_{mode.replace(' ', '_')}.json"
    common = ["fit", str(path), "-k", "10", "--init-model", str(truth), "--tol", "0", "-q"]
    (wall1, cpu1), (wall2, cpu2) = (
        gmmcli(*common, "--max-iter", str(m), "-o", str(out), *MODES[mode]) for m in iterations
    )
    added = iterations[1] - iterations[0]
    return rows * added / (wall2 - wall1), (cpu2 - cpu1) / added


def spread(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    return (
        f"{statistics.median(values) / scale:.{digits}f} "
        f"({min(values) / scale:.{digits}f}-{max(values) / scale:.{digits}f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--iterations", type=int, nargs=2, default=(1, 6), metavar=("M1", "M2"))
    args = parser.parse_args()
    path, truth = make(args.rows)
    where = subprocess.run(
        [sys.executable, "-c", "import gmmcli; print(gmmcli.__file__)"],
        cwd=DATA, capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    print(f"gmmcli from {where}; {os.cpu_count()} cores", file=sys.stderr)
    rates: dict[str, list[float]] = {mode: [] for mode in MODES}
    cpu: dict[str, list[float]] = {mode: [] for mode in MODES}
    for round_ in range(args.rounds):
        order = list(MODES) if round_ % 2 == 0 else list(reversed(MODES))
        for mode in order:
            rate, seconds = per_iteration(path, truth, args.rows, args.iterations, mode)
            rates[mode].append(rate)
            cpu[mode].append(seconds)
        print(f"round {round_ + 1} of {args.rounds} done", file=sys.stderr)
    models = [(DATA / f"stream_model_{m.replace(' ', '_')}.json").read_bytes() for m in MODES]
    same = "the same bytes" if models[0] == models[1] else "DIFFERENT"
    ratios = [s / m for s, m in zip(rates["streamed"], rates["in memory"], strict=True)]
    cpu_ratios = [m / s for s, m in zip(cpu["streamed"], cpu["in memory"], strict=True)]
    m1, m2 = args.iterations
    print(f"{args.rows:,} x 10 Parquet, K=10 full, {args.rounds} rounds, iterations {m1} and "
          f"{m2}; median (min-max)")  # fmt: skip
    print("               million rows/s per iteration   CPU s per iteration")
    for mode in MODES:
        print(f"  {mode:9s}    {spread(rates[mode], 1e6):28s}   {spread(cpu[mode])}")
    print(f"  streamed / in memory: rate {spread(ratios)} (target >= 0.60), CPU per row "
          f"{spread(cpu_ratios)} (in memory's over streamed's); models {same}")  # fmt: skip


if __name__ == "__main__":
    main()
