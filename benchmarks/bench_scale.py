"""Streaming at scale: fit a ~4 GB Parquet file in bounded memory (`make bench-scale`).

Generates benchmarks/data/scale.parquet with `gmmcli generate` (50 million rows x 10
features, float64: 4 GB of values; not committed), fits it streamed with
`--memory-limit 1GB`, and reports peak RSS and rows per second per EM iteration, next to
the in-memory and streamed paths on a 2-million-row file that fits in memory.

    python benchmarks/bench_scale.py                # the 4 GB file
    python benchmarks/bench_scale.py --rows 5000000 # a smaller run
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench_em import DATA, timed_python  # run as a script: this folder is on sys.path


def gmmcli(*args: str) -> tuple[float, float]:
    """Run the command line in a fresh process: (seconds, peak RSS in MB from VmHWM)."""
    return timed_python(
        "import sys\nfrom gmmcli.cli import main\n"
        f"sys.argv = ['gmmcli', *{list(args)!r}]\n"
        "try:\n    main()\nexcept SystemExit as done:\n    assert not done.code, done.code\n"
    )


def make(path: Path, rows: int) -> None:
    if path.exists():
        return
    DATA.mkdir(exist_ok=True)
    print(f"generating {path.name} ({rows:,} rows x 10) ...", file=sys.stderr)
    gmmcli("generate", "-k", "10", "-d", "10", "-n", str(rows), "--seed", "3",
           "--no-labels", "-q", "-o", str(path))  # fmt: skip


def per_iteration(path: Path, rows: int, *extra: str) -> tuple[float, float]:
    """Rows per second per EM iteration (from 1 and 11 iterations: reading and
    initialisation cancel out) and the peak RSS."""
    common = ["fit", str(path), "-k", "10", "--n-init", "1", "--init", "random",
              "--tol", "0", "-q", "-o", "/dev/null", *extra]  # fmt: skip
    one, _ = gmmcli(*common, "--max-iter", "1")
    eleven, peak = gmmcli(*common, "--max-iter", "11")
    return rows * 10 / (eleven - one), peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000_000, help="rows of the big file")
    args = parser.parse_args()
    small, small_rows = DATA / "scale_small.parquet", 2_000_000
    big = DATA / f"scale_{args.rows}.parquet"
    make(small, small_rows)
    make(big, args.rows)
    chunks = ("--chunk-rows", "200000")
    memory_rate, memory_peak = per_iteration(small, small_rows)
    small_rate, small_peak = per_iteration(small, small_rows, *chunks)  # a chunk size streams
    big_rate, big_peak = per_iteration(big, args.rows, "--memory-limit", "1GB", *chunks)
    size_gb = big.stat().st_size / 1e9
    print(f"{small_rows:,} rows in memory: {memory_rate:,.0f} rows/s per iteration, "
          f"peak RSS {memory_peak:.0f} MB")  # fmt: skip
    print(f"{small_rows:,} rows streamed: {small_rate:,.0f} rows/s per iteration, "
          f"peak RSS {small_peak:.0f} MB")  # fmt: skip
    print(f"{args.rows:,} rows streamed ({size_gb:.1f} GB file): {big_rate:,.0f} rows/s per "
          f"iteration, peak RSS {big_peak:.0f} MB ({'below' if big_peak < 1024 else 'ABOVE'} "
          "1 GB)")  # fmt: skip


if __name__ == "__main__":
    main()
