"""EM speed: gmmcli against scikit-learn and Intel's oneDAL, same data, same start.

Every tool runs in a subprocess of its own (so each peak RSS is its own) on arrays saved
once under benchmarks/data/, the way a Python user calls it: numpy's BLAS keeps its default
threads and scikit-learn is imported. gmmcli also runs with OPENBLAS_NUM_THREADS=1 (as its
command line sets), to show that the API does not depend on it. In a round every tool fits
1, 3 and 6 iterations from the same start; its time per iteration in that round is
(T(6) - T(1)) / 5, so set-up, initialisation and the final E-step cancel out, and its
whole-fit time is T(3). The tools take turns, round after round; the table gives each
tool's median over the rounds with the spread [min-max], and ratios of medians.
Parameters after 6 iterations are compared with scikit-learn's. Run through `make bench`
(which unsets OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE before Python starts, as OpenBLAS
reads them when it loads).

    python benchmarks/bench_em.py            # the issue's shapes
    python benchmarks/bench_em.py --quick    # small shapes, a smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
OLD_ONEDAL_PYTHON = HERE / ".venv-onedal2024" / "bin" / "python"

# (N, D, K, covariance type, dtype)
SHAPES = [
    (1_000_000, 10, 10, "full", "float64"),
    (200_000, 50, 20, "full", "float64"),
    (1_000_000, 10, 10, "tied", "float64"),
    (1_000_000, 10, 10, "diag", "float64"),
    (1_000_000, 10, 10, "spherical", "float64"),
    (100_000, 2, 3, "full", "float64"),
    (1_000_000, 10, 10, "full", "float32"),
]
QUICK_SHAPES = [(20_000, 5, 4, c, "float64") for c in ("full", "tied", "diag", "spherical")]
ITERATIONS = (1, 6)  # the same for every tool, so the parameters compared are comparable
WHOLE = 3  # iterations of the whole fit timed
ONEDAL_STORAGE = {"full": "full", "diag": "diagonal"}
BLAS_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
THREAD_VARIABLES = (*BLAS_VARIABLES, "GMMCLI_THREADS")  # none of them inherited


def shape_name(n, d, k, cov, dtype) -> str:
    return f"n{n}_d{d}_k{k}_{cov}"


def prepare(n, d, k, cov, dtype) -> Path:
    """Data and a shared start (weights, means, precisions), saved once."""
    path = DATA / f"{shape_name(n, d, k, cov, dtype)}.npz"
    if path.exists():
        return path
    import gmmcli
    from gmmcli.core.generate import random_mixture

    DATA.mkdir(exist_ok=True)
    rng = np.random.default_rng(n + d + k)
    mixture = random_mixture(k, d, covariance_type=cov, separation=4.0, rng=rng)
    X, _ = mixture.sample(n, seed=1)
    start = gmmcli.fit(X, k, covariance_type=cov, init="kmeans++", max_iter=1, tol=0, seed=0)
    np.savez(
        path,
        X=X,
        weights=start.weights,
        means=start.means,
        covariances=start.covariances,
        precisions=start.precisions,
    )
    return path


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM: unlike ru_maxrss it does not carry over from the
    parent that forked us)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_gmmcli(arrays, cov, dtype, iterations):
    import gmmcli

    model = gmmcli.fit(
        arrays["X"],
        len(arrays["weights"]),
        covariance_type=cov,
        tol=0,
        max_iter=iterations,
        weights_init=arrays["weights"],
        means_init=arrays["means"],
        precisions_init=arrays["precisions"],
        dtype=dtype,
    )
    return model.weights, model.means, model.covariances


def run_sklearn(arrays, cov, dtype, iterations):
    import warnings

    from sklearn.mixture import GaussianMixture

    model = GaussianMixture(
        len(arrays["weights"]),
        covariance_type=cov,
        tol=0,
        max_iter=iterations,
        init_params="random_from_data",
        weights_init=arrays["weights"],
        means_init=arrays["means"],
        precisions_init=arrays["precisions"],
        random_state=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(arrays["X"])
    return model.weights_, model.means_, model.covariances_


def run_onedal(arrays, cov, dtype, iterations):
    import daal4py

    covariances = arrays["covariances"]
    if cov == "diag":
        covariances = [c[None, :] for c in covariances]
    algorithm = daal4py.em_gmm(
        nComponents=len(arrays["weights"]),
        maxIterations=iterations,
        accuracyThreshold=0.0,
        covarianceStorage=ONEDAL_STORAGE[cov],
    )
    result = algorithm.compute(
        arrays["X"], arrays["weights"][None, :], arrays["means"], list(covariances)
    )
    found = np.array([np.asarray(c) for c in result.covariances])
    if cov == "diag":
        found = found[:, 0, :]
    return result.weights[0], result.means, found


RUNNERS = {"gmmcli": run_gmmcli, "sklearn": run_sklearn, "onedal": run_onedal}
ONE_BLAS_THREAD = "gmmcli, 1 BLAS thread"  # gmmcli with BLAS pinned before Python starts


def worker(tool, path, cov, dtype, out):
    """In a subprocess: time 1, WHOLE and 6 iterations, save the last parameters, report
    JSON."""
    if tool.startswith("gmmcli"):
        import sklearn.mixture  # noqa: F401 (a user's session: scikit-learn is loaded)
    arrays = dict(np.load(path))
    runner = RUNNERS[{"onedal-2024.7": "onedal", ONE_BLAS_THREAD: "gmmcli"}.get(tool, tool)]
    runner({**arrays, "X": arrays["X"][:2000]}, cov, dtype, 1)  # warm-up: lazy imports
    times = {}
    for iterations in sorted({*ITERATIONS, WHOLE}):
        started = time.perf_counter()
        params = runner(arrays, cov, dtype, iterations)
        times[iterations] = time.perf_counter() - started
    np.savez(out, weights=params[0], means=params[1], covariances=params[2])
    print(json.dumps({"seconds": times, "peak_rss_mb": peak_rss_mb()}))


def call_worker(python, tool, path, cov, dtype) -> dict | None:
    slug = tool.replace(",", "").replace(" ", "-")
    out = path.with_name(f"{path.stem}_{slug}_{dtype}_params.npz")
    command = [str(python), __file__, "worker", tool, str(path), cov, dtype, str(out)]
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    if tool == ONE_BLAS_THREAD:
        env.update(dict.fromkeys(BLAS_VARIABLES, "1"))
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["failed"])[-1]
        print(f"  {tool}: {last}", file=sys.stderr)
        return None
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["params"] = dict(np.load(out))
    seconds = {int(m): t for m, t in result.pop("seconds").items()}
    first, second = ITERATIONS
    result["per_iteration"] = (seconds[second] - seconds[first]) / (second - first)
    result["whole"] = seconds[WHOLE]
    return result


def max_relative_difference(a: dict, b: dict) -> float:
    return max(
        float(np.max(np.abs(a[k] - b[k])) / np.max(np.abs(b[k])))
        for k in ("weights", "means", "covariances")
    )


def gemm_gflops() -> float:
    """Achieved float64 GEMM rate on this machine, from a product it times itself."""
    a = np.random.default_rng(0).standard_normal((3000, 3000))
    a @ a
    started = time.perf_counter()
    for _ in range(3):
        a @ a
    return 3 * 2 * 3000**3 / (time.perf_counter() - started) / 1e9


def blas_kernel() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown (threadpoolctl not installed)"
    infos = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    return ", ".join(
        f"{i['internal_api']} {i.get('version')} {i.get('architecture')} x{i['num_threads']}"
        for i in infos
    )


def onedal_tools() -> list[tuple[str, str]]:
    tools = []
    try:
        import daal4py  # noqa: F401

        tools.append(("onedal", sys.executable))
    except ImportError:
        print("daal4py not installed: pip install -e '.[bench]'", file=sys.stderr)
    if OLD_ONEDAL_PYTHON.exists():
        tools.append(("onedal-2024.7", str(OLD_ONEDAL_PYTHON)))
    return tools


@dataclass
class Timing:
    """A tool's rounds on one shape: seconds per iteration and per WHOLE-iteration fit."""

    per_iteration: list[float]
    whole: list[float]
    peak_rss_mb: float
    params: dict

    @classmethod
    def of(cls, runs: list[dict | None]) -> Timing | None:
        done = [run for run in runs if run]
        if not done:
            return None
        return cls(
            [run["per_iteration"] for run in done],
            [run["whole"] for run in done],
            max(run["peak_rss_mb"] for run in done),
            done[-1]["params"],  # the same every round
        )

    def median(self, what: str = "per_iteration") -> float:
        return float(np.median(getattr(self, what)))

    def cell(self, unit: float, what: str = "per_iteration") -> str:
        """The median with its spread, in ``unit`` seconds."""
        values = np.array(getattr(self, what)) / unit
        digits = 0 if np.median(values) >= 100 else 1
        low, high = values.min(), values.max()
        return f"{np.median(values):.{digits}f} [{low:.{digits}f}-{high:.{digits}f}]"


def _ratio(theirs: Timing | None, ours: Timing | None, what: str = "per_iteration") -> str:
    if theirs is None or ours is None:
        return "-"
    return f"{theirs.median(what) / ours.median(what):.2f}x"


def measure(shape: tuple, rate: float, ours_float64: dict, rounds: int) -> tuple[tuple, tuple]:
    """One row of each table (per iteration; whole fits) for one shape: every tool, over
    ``rounds`` rounds in which the tools take turns (so that a slow spell of the machine
    falls on all of them). A float32 row compares with our float64."""
    n, d, k, cov, dtype = shape
    print(f"{n}, {d}, {k} {cov} {dtype} ...", file=sys.stderr)
    path = prepare(*shape)
    tools = [("gmmcli", sys.executable), (ONE_BLAS_THREAD, sys.executable)]
    if dtype == "float64":
        tools.append(("sklearn", sys.executable))
        if cov in ONEDAL_STORAGE:
            tools += onedal_tools()
    runs = {tool: [] for tool, _ in tools}
    for _ in range(rounds):
        for tool, python in tools:
            runs[tool].append(call_worker(python, tool, path, cov, dtype))
    timed = {tool: Timing.of(tool_runs) for tool, tool_runs in runs.items()}
    ours = timed["gmmcli"]
    if dtype == "float64":
        ours_float64[(n, d, k, cov)] = ours
        reference, limit = timed["sklearn"], 1e-7
    else:
        reference, limit = ours_float64.get((n, d, k, cov)), 1e-4
    agree = "-"
    if ours and reference:
        diff = max_relative_difference(ours.params, reference.params)
        agree = f"{diff:.1e} {'ok' if diff <= limit else 'MISMATCH'}"
    onedals = [timed[t] for t in ("onedal", "onedal-2024.7") if timed.get(t)]
    faster = min(onedals, key=Timing.median, default=None)
    unit = 1e-6 if ours and ours.median() < 1e-3 else 1e-3  # µs for the smallest shapes
    label = f"{n:,}, {d}, {k}"
    kind = cov if dtype == "float64" else f"{cov}, {dtype}"

    def cell(tool: str, what: str = "per_iteration", in_unit: float = unit) -> str:
        return timed[tool].cell(in_unit, what) if timed.get(tool) else "-"

    flops = n * k * d * d / (rate * 1e9) / unit
    per_iteration = (
        label,
        kind,
        "µs" if unit == 1e-6 else "ms",
        cell("sklearn") if dtype == "float64" else "-",
        cell("onedal"),
        cell("onedal-2024.7"),
        cell("gmmcli"),
        cell(ONE_BLAS_THREAD),
        _ratio(timed.get("sklearn") if dtype == "float64" else reference, ours),
        _ratio(faster, ours),
        _ratio(timed[ONE_BLAS_THREAD], ours),
        f"{3 * flops:.0f} / {4 * flops:.0f}",
        agree,
        " / ".join(f"{t} {r.peak_rss_mb:.0f}" for t, r in timed.items() if r),
    )
    whole = (
        label,
        kind,
        cell("sklearn", "whole", 1e-3) if dtype == "float64" else "-",
        cell("onedal", "whole", 1e-3),
        cell("onedal-2024.7", "whole", 1e-3),
        cell("gmmcli", "whole", 1e-3),
        _ratio(faster, ours, "whole"),
        f"{fixed_cost(ours):.0%}" if ours else "-",
    )
    return per_iteration, whole


def fixed_cost(timing: Timing) -> float:
    """What a WHOLE-iteration fit costs beyond its iterations and the start's E-step, as a
    share of one iteration t (medians): T(WHOLE) - (WHOLE + 1)·t, the E-step counted as a
    whole iteration (it is most of one), so this slightly understates the cost."""
    return (timing.median("whole") - (WHOLE + 1) * timing.median()) / timing.median()


PEAK_RSS_AT_EXIT = (
    "import atexit, pathlib, sys\n"
    "def report():\n"
    "    for line in pathlib.Path('/proc/self/status').read_text().splitlines():\n"
    "        if line.startswith('VmHWM:'):\n"
    "            print('PEAK_RSS_KB', line.split()[1], file=sys.stderr)\n"
    "atexit.register(report)\n"
)


def timed_python(code: str, env: dict | None = None) -> tuple[float, float]:
    """Run Python code in a fresh process: (seconds, peak RSS in MB)."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", PEAK_RSS_AT_EXIT + code], capture_output=True, text=True, env=env
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    peak = [line for line in done.stderr.splitlines() if line.startswith("PEAK_RSS_KB")]
    return seconds, int(peak[-1].split()[1]) / 1024


def end_to_end(rounds: int) -> None:
    """`gmmcli fit -k 10 --n-init 1` on a 1M x 10 Parquet file against scikit-learn's
    default GaussianMixture(10).fit on the same data (medians of ``rounds`` turns each),
    and gmmcli's peak RSS (the highest)."""
    path = DATA / "e2e_1000000x10.parquet"
    if not path.exists():
        DATA.mkdir(exist_ok=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "gmmcli",
                "generate",
                "-k",
                "10",
                "-d",
                "10",
                "-n",
                "1000000",
                "--seed",
                "5",
                "--no-labels",
                "-q",
                "-o",
                str(path),
            ],
            check=True,
        )
    baseline = timed_python("import numpy, scipy, pyarrow")[1]
    fit_code = (
        "import sys\nfrom gmmcli.cli import main\n"
        f"sys.argv = ['gmmcli', 'fit', {str(path)!r}, '-k', '10', '--n-init', '1', '-q',"
        " '-o', '/dev/null']\n"
        "try:\n    main()\nexcept SystemExit as done:\n    assert not done.code, done.code\n"
    )
    sklearn_code = (
        "import warnings, numpy as np, pyarrow.parquet as pq\n"
        "from sklearn.mixture import GaussianMixture\n"
        f"table = pq.read_table({str(path)!r})\n"
        "X = np.column_stack([c.to_numpy() for c in table.columns])\n"
        "warnings.simplefilter('ignore')\n"
        "GaussianMixture(n_components=10, random_state=0).fit(X)\n"
    )
    turns = [(timed_python(fit_code), timed_python(sklearn_code)) for _ in range(rounds)]
    ours = float(np.median([seconds for (seconds, _), _ in turns]))
    ours_rss = max(rss for (_, rss), _ in turns)
    theirs = float(np.median([seconds for _, (seconds, _) in turns]))
    data_mb = 1_000_000 * 10 * 8 / 2**20
    print(
        f"end to end, 1M x 10 Parquet, K=10: gmmcli fit {ours:.1f} s, scikit-learn "
        f"{theirs:.1f} s ({theirs / ours:.1f}x); gmmcli peak RSS {ours_rss:.0f} MB, "
        f"{ours_rss - baseline:.0f} MB above a numpy+scipy+pyarrow process ({baseline:.0f} MB) "
        f"= {(ours_rss - baseline) / data_mb:.2f}x the data's float64 size"
    )


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def print_table(header: tuple, rows: list[tuple]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print(" | ".join(str(c).rjust(w) for c, w in zip(row, widths, strict=True)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes only")
    parser.add_argument("--no-end-to-end", action="store_true", help="skip the CLI run")
    parser.add_argument("--rounds", type=positive_int, default=5, help="turns per tool")
    parser.add_argument(
        "--shapes", help="only these of the shapes, by position from 0 (e.g. 0,1,3)"
    )
    args = parser.parse_args()
    shapes = QUICK_SHAPES if args.quick else SHAPES
    if args.shapes:
        shapes = [shapes[int(i)] for i in args.shapes.split(",")]
    rate = gemm_gflops()
    print(f"BLAS: {blas_kernel()}; float64 GEMM {rate:.1f} GFLOP/s; {os.cpu_count()} cores")
    ours_float64 = {}
    rows = []
    for shape in shapes:
        rows.append(measure(shape, rate, ours_float64, args.rounds))
        print(" | ".join(map(str, rows[-1][0] + rows[-1][1])), file=sys.stderr)  # as it comes
    print_table(
        (
            "shape (N, D, K)",
            "cov",
            "unit",
            "sklearn",
            "oneDAL",
            "oneDAL 2024.7",
            "gmmcli",
            "gmmcli 1 BLAS thr.",
            "vs sklearn",
            "vs faster oneDAL",
            "1 BLAS thr. / default",
            "GEMM bound 3NKD² / 4NKD²",
            "agree",
            "peak RSS MB",
        ),
        [per_iteration for per_iteration, _ in rows],
    )
    print(
        f"time per EM iteration, median [min-max] of {args.rounds} rounds of (T(6) - T(1)) / 5; "
        "ratios are the other's median over gmmcli's (float32 rows: gmmcli float64 over "
        "float32); gmmcli with numpy's default BLAS threads unless marked"
    )
    print_table(
        (
            "shape (N, D, K)",
            "cov",
            "sklearn",
            "oneDAL",
            "oneDAL 2024.7",
            "gmmcli",
            "vs faster oneDAL",
            "gmmcli fixed cost",
        ),
        [whole for _, whole in rows],
    )
    print(
        f"ms per {WHOLE}-iteration fit from the start, median [min-max] of {args.rounds} "
        f"rounds; fixed cost: T({WHOLE}) - {WHOLE + 1} iterations, as a share of one"
    )
    if not (args.quick or args.no_end_to_end):
        end_to_end(args.rounds)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        worker(*sys.argv[2:])
    else:
        main()
