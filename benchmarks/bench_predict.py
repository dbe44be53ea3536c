"""Prediction speed: gmmcli's predictions against scikit-learn's, and where the time of
`gmmcli classify` goes.

1. The Python API, in this process as a user runs it (numpy's default BLAS threads,
   scikit-learn imported), on the same model and 1M x 10 rows (K = 10, full): each round
   times scikit-learn's predict_proba(X) plus score_samples(X), gmmcli's the same two
   calls, and gmmcli's row_predictions(X), which gives both from one pass (its runs of
   tiles shared out by the local engine's reducer for this process); the tools take
   turns, the first alternating. Printed: each median over rounds with its spread
   (min-max), and the median (min-max) of the rounds' ratios scikit-learn / gmmcli.
   The values are checked against scikit-learn's first, to the oracle tests' tolerances.
2. `gmmcli classify` of a 1M x 10 Parquet file to Parquet (`gmmcli generate`'s file, its
   true mixture as the model). Each round runs the command as it is, and once more under
   a harness that times its phases: start-up and exit (the interpreter, imports, parsing
   the command line, teardown: the wall time outside the job, gmmcli.jobs.classify), read
   (the file into an Arrow table), convert (the model's columns into float rows), compute
   (the predictions), write (Parquet, closed and renamed into place) and other (the rest
   of the job).

Timings on a machine other jobs share are noisy: the load average is printed before and
after. Run through `make bench-predict`:

    python benchmarks/bench_predict.py              # 1M rows, 7 rounds
    python benchmarks/bench_predict.py --quick      # 100k rows, 2 rounds, a smoke test
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

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
N_FEATURES, N_COMPONENTS = 10, 10
PHASES = ("start-up and exit", "read", "convert", "compute", "write", "other")
INSIDE = ("read", "compute", "write")  # the target: the other phases ≤ 25% of the wall


def spread(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    """'median (min-max)' of ``values`` times ``scale``."""
    low, mid, high = (scale * v for v in (min(values), statistics.median(values), max(values)))
    return f"{mid:.{digits}f} ({low:.{digits}f}-{high:.{digits}f})"


def api_models(n_rows: int):
    """Rows drawn from a random mixture, and scikit-learn's model after one EM step from
    that mixture, with gmmcli's model of the same parameters."""
    import warnings

    import numpy as np
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture as SkMixture

    import gmmcli
    from gmmcli.core.generate import random_mixture

    truth = random_mixture(N_COMPONENTS, N_FEATURES, separation=4.0, rng=np.random.default_rng(0))
    X, _ = truth.sample(n_rows, seed=1)
    sk = SkMixture(
        N_COMPONENTS,
        covariance_type="full",
        max_iter=1,
        weights_init=truth.weights,
        means_init=truth.means,
        precisions_init=truth.precisions,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sk.fit(X[:100_000])
    ours = gmmcli.GaussianMixture(sk.weights_, sk.means_, sk.covariances_, "full")
    return X, sk, ours


def bench_api(n_rows: int, rounds: int) -> None:
    import numpy as np
    from numpy.testing import assert_allclose

    from gmmcli.engines import local

    X, sk, ours = api_models(n_rows)
    reducer = local.reducer()
    tools = {
        "scikit-learn predict_proba + score_samples": lambda: (
            sk.predict_proba(X),
            sk.score_samples(X),
        ),
        "gmmcli predict_proba + score_samples": lambda: (
            ours.predict_proba(X),
            ours.score_samples(X),
        ),
        "gmmcli row_predictions (both, one pass)": lambda: reversed(
            ours.row_predictions(X, reducer=reducer)
        ),
    }
    expected = tools["scikit-learn predict_proba + score_samples"]()
    for name, run in tools.items():
        proba, log_likelihood = run()
        # as tests/test_oracle.py: log-likelihoods of O(10) to 1e-10, probabilities 1e-12
        assert_allclose(log_likelihood, expected[1], rtol=1e-10, err_msg=name)
        assert_allclose(proba, expected[0], rtol=0, atol=1e-12, err_msg=name)
    del expected
    times: dict[str, list[float]] = {name: [] for name in tools}
    names = list(tools)
    for round_ in range(rounds):
        order = names if round_ % 2 == 0 else names[::-1]
        for name in order:
            started = time.perf_counter()
            tools[name]()
            times[name].append(time.perf_counter() - started)
    threads = getattr(reducer, "threads", 1)
    print(
        f"\nPython API, {n_rows:,} x {N_FEATURES} rows, K={N_COMPONENTS} full, {rounds} rounds "
        f"(numpy {np.__version__}, default BLAS threads; row_predictions' reducer: "
        f"{threads} thread{'s' if threads > 1 else ''})"
    )
    print(f"{'':<46} {'seconds, median (min-max)':>28} {'scikit-learn / this':>22}")
    baseline = times[names[0]]
    for name in names:
        ratios = [b / t for b, t in zip(baseline, times[name], strict=True)]
        ratio = "" if name == names[0] else spread(ratios, digits=1)
        print(f"{name:<46} {spread(times[name], digits=3):>28} {ratio:>22}")


def classify_files(n_rows: int) -> tuple[Path, Path]:
    """A Parquet file of ``n_rows`` rows drawn by `gmmcli generate`, and its mixture."""
    data = DATA / f"predict_{n_rows}.parquet"
    model = DATA / f"predict_{n_rows}_truth.json"
    if not (data.exists() and model.exists()):
        DATA.mkdir(exist_ok=True)
        subprocess.run(
            [
                *gmmcli_command(),
                "generate",
                *("-k", str(N_COMPONENTS), "-d", str(N_FEATURES), "-n", str(n_rows)),
                *("--seed", "17", "-q", "-o", str(data), "--truth", str(model)),
            ],
            check=True,
        )
    return data, model


def gmmcli_command() -> list[str]:
    return [str(Path(sys.executable).with_name("gmmcli"))]


def bench_classify(n_rows: int, rounds: int) -> None:
    data, model = classify_files(n_rows)
    with tempfile.TemporaryDirectory(dir=DATA) as folder:
        output = str(Path(folder) / "classified.parquet")
        arguments = ["classify", str(data), "--model", str(model), "-o", output, "-q"]
        walls, split_walls = [], []
        phases: dict[str, list[float]] = {phase: [] for phase in PHASES}
        for round_ in range(rounds):
            for timed in (False, True) if round_ % 2 == 0 else (True, False):
                if not timed:
                    started = time.perf_counter()
                    subprocess.run([*gmmcli_command(), *arguments], check=True)
                    walls.append(time.perf_counter() - started)
                    continue
                split_walls.append(timed_phases(arguments, phases))
    print(
        f"\ngmmcli classify, {n_rows:,} x {N_FEATURES} Parquet -> Parquet (K={N_COMPONENTS} "
        f"full), {rounds} rounds"
    )
    print(f"the command: {spread(walls)} s wall; under the harness: {spread(split_walls)} s")
    print(f"{'phase':<20} {'seconds, median (min-max)':>28} {'share of wall':>14}")
    wall = statistics.median(split_walls)
    for phase in PHASES:
        share = statistics.median(phases[phase]) / wall
        print(f"{phase:<20} {spread(phases[phase]):>28} {share:>13.0%}")
    outside = [
        sum(phases[p][r] for p in PHASES if p not in INSIDE) / split_walls[r] for r in range(rounds)
    ]
    print(f"outside reading, computing and writing: {spread(outside, 100, 0)} % of the wall")


def timed_phases(arguments: list[str], phases: dict[str, list[float]]) -> float:
    """Run the command under the harness (this file, --phases-of); add its phases to
    ``phases`` and return its wall time."""
    with tempfile.NamedTemporaryFile(suffix=".json") as report:
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, __file__, "--phases-of", report.name, "--", *arguments], check=True
        )
        wall = time.perf_counter() - started
        measured = json.loads(Path(report.name).read_text())
    job = measured.pop("job")
    for phase, seconds in measured.items():
        phases[phase].append(seconds)
    phases["start-up and exit"].append(wall - job)
    phases["other"].append(job - sum(measured.values()))
    return wall


def run_with_phases(report: str, arguments: list[str]) -> None:
    """The command line on ``arguments``, its phases timed by wrapping the functions that
    do them; the seconds of each, and of the whole job, to ``report``."""
    import gmmcli.cli  # first: the command line sets its threads before numpy loads
    from gmmcli import jobs
    from gmmcli.core.model import GaussianMixture
    from gmmcli.io import tables

    seconds = dict.fromkeys(("job", "read", "convert", "compute", "write"), 0.0)

    def timed(owner, name: str, phase: str) -> None:
        function = getattr(owner, name)

        def wrapper(*args, **kwargs):
            began = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                seconds[phase] += time.perf_counter() - began

        setattr(owner, name, wrapper)

    timed(jobs, "classify", "job")
    timed(tables, "read_table", "read")
    timed(tables, "select_features", "convert")
    timed(GaussianMixture, "predict_into", "compute")
    timed(tables.TableWriter, "write", "write")
    timed(tables.TableWriter, "__exit__", "write")
    sys.argv = ["gmmcli", *arguments]
    try:
        gmmcli.cli.main()
    except SystemExit as stop:
        if stop.code:
            raise
    Path(report).write_text(json.dumps(seconds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100k rows, 2 rounds")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--phases-of", help=argparse.SUPPRESS)
    parser.add_argument("arguments", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phases_of:
        run_with_phases(args.phases_of, args.arguments)
        return
    n_rows = 100_000 if args.quick else 1_000_000
    rounds = 2 if args.quick else max(2, args.rounds)
    print("load average before: {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))
    bench_api(n_rows, rounds)
    bench_classify(n_rows, rounds)
    print("load average after: {:.1f} {:.1f} {:.1f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
