"""EM speed: gmmcli against scikit-learn and Intel's oneDAL, same data, same start.

Every tool runs in a subprocess of its own (so each peak RSS is its own) on arrays saved
once under benchmarks/data/. Time per iteration is (T(m2) - T(m1)) / (m2 - m1): set-up,
initialisation and the final E-step cancel out; the tools take turns, a few rounds, and each
T is a tool's least over its rounds. Parameters after m2 iterations are compared with
scikit-learn's. Run through `make bench` (which unsets OPENBLAS_CORETYPE and
OPENBLAS_L2_SIZE before Python starts, as OpenBLAS reads them when it loads).

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
ONEDAL_STORAGE = {"full": "full", "diag": "diagonal"}


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


def worker(tool, path, cov, dtype, out):
    """In a subprocess: time m1 and m2 iterations, save the m2 parameters, report JSON."""
    arrays = dict(np.load(path))
    first, second = ITERATIONS
    runner = RUNNERS["onedal" if tool == "onedal-2024.7" else tool]
    runner({**arrays, "X": arrays["X"][:2000]}, cov, dtype, 1)  # warm-up: lazy imports
    times = []
    for iterations in (first, second):
        started = time.perf_counter()
        params = runner(arrays, cov, dtype, iterations)
        times.append(time.perf_counter() - started)
    np.savez(out, weights=params[0], means=params[1], covariances=params[2])
    print(json.dumps({"seconds": times, "peak_rss_mb": peak_rss_mb()}))


def call_worker(python, tool, path, cov, dtype) -> dict | None:
    out = path.with_name(f"{path.stem}_{tool}_{dtype}_params.npz")
    command = [str(python), __file__, "worker", tool, str(path), cov, dtype, str(out)]
    env = dict(os.environ)
    if tool == "gmmcli":  # as the command line runs it (gmmcli/threads.py)
        env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        env.setdefault("GMMCLI_THREADS", str(os.cpu_count() or 1))
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["failed"])[-1]
        print(f"  {tool}: {last}", file=sys.stderr)
        return None
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["params"] = dict(np.load(out))
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


def _cell(ms: dict, tool: str) -> str:
    return f"{ms[tool]:.0f}" if tool in ms else "-"


def _ratio(ms: dict, tool: str) -> str:
    return f"{ms[tool] / ms['gmmcli']:.1f}x" if tool in ms and "gmmcli" in ms else "-"


def best_of(runs: list[dict | None]) -> dict | None:
    """A tool's rounds in one: time per iteration from the least time of m1 and the least
    of m2 iterations over the rounds (the least of the differences would favour a round
    whose m1 was slow), the highest peak RSS, the parameters (the same every round)."""
    done = [run for run in runs if run]
    if not done:
        return None
    first, second = (min(run["seconds"][i] for run in done) for i in (0, 1))
    per_iter = (second - first) / (ITERATIONS[1] - ITERATIONS[0]) * 1000
    peak = max(run["peak_rss_mb"] for run in done)
    return {**done[-1], "ms_per_iter": per_iter, "peak_rss_mb": peak}


def measure(shape: tuple, rate: float, ours_float64: dict, rounds: int) -> tuple:
    """One table row: every tool on one shape, over ``rounds`` rounds in which the tools
    take turns (so that a slow spell of the machine falls on all of them), each tool's
    least times counting (best_of). A float32 row compares with our float64."""
    n, d, k, cov, dtype = shape
    print(f"{n}, {d}, {k} {cov} {dtype} ...", file=sys.stderr)
    path = prepare(*shape)
    tools = [("gmmcli", sys.executable)]
    if dtype == "float64":
        tools.append(("sklearn", sys.executable))
        if cov in ONEDAL_STORAGE:
            tools += onedal_tools()
    runs = {tool: [] for tool, _ in tools}
    for _ in range(rounds):
        for tool, python in tools:
            runs[tool].append(call_worker(python, tool, path, cov, dtype))
    results = {tool: best_of(tool_runs) for tool, tool_runs in runs.items()}
    ours = results["gmmcli"]
    if dtype == "float64":
        ours_float64[(n, d, k, cov)] = ours
        reference, limit = results["sklearn"], 1e-7
    else:
        reference, limit = ours_float64.get((n, d, k, cov)), 1e-4
    ms = {tool: r["ms_per_iter"] for tool, r in results.items() if r}
    agree = "-"
    if ours and reference:
        diff = max_relative_difference(ours["params"], reference["params"])
        agree = f"{diff:.1e} {'ok' if diff <= limit else 'MISMATCH'}"
    if dtype == "float32" and reference:
        ms["sklearn"] = reference["ms_per_iter"]  # the ratio column then reads f64 / f32
    bound = 4 * n * k * d * d / (rate * 1e9) * 1000
    rss = " / ".join(f"{t} {r['peak_rss_mb']:.0f}" for t, r in results.items() if r)
    return (
        f"{n:,}, {d}, {k}",
        cov,
        dtype,
        _cell(ms, "sklearn") if dtype == "float64" else f"(ours f64 {_cell(ms, 'sklearn')})",
        _cell(ms, "onedal"),
        _cell(ms, "onedal-2024.7"),
        _cell(ms, "gmmcli"),
        _ratio(ms, "sklearn"),
        _ratio(ms, "onedal"),
        _ratio(ms, "onedal-2024.7"),
        f"{bound:.0f}",
        agree,
        rss,
    )


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
    default GaussianMixture(10).fit on the same data (best of ``rounds`` turns each), and
    gmmcli's peak RSS (the highest)."""
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
    ours = min(seconds for (seconds, _), _ in turns)
    ours_rss = max(rss for (_, rss), _ in turns)
    theirs = min(seconds for _, (seconds, _) in turns)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes only")
    parser.add_argument("--no-end-to-end", action="store_true", help="skip the CLI run")
    parser.add_argument(
        "--rounds", type=positive_int, default=3, help="turns per tool; its least times count"
    )
    args = parser.parse_args()
    shapes = QUICK_SHAPES if args.quick else SHAPES
    rate = gemm_gflops()
    print(f"BLAS: {blas_kernel()}; float64 GEMM {rate:.1f} GFLOP/s; {os.cpu_count()} cores")
    header = (
        "shape (N, D, K)",
        "cov",
        "dtype",
        "sklearn",
        "oneDAL",
        "oneDAL 2024.7",
        "gmmcli",
        "vs sklearn",
        "vs oneDAL",
        "vs 2024.7",
        "GEMM bound",
        "agree",
        "peak RSS MB",
    )
    rows = []
    ours_float64 = {}
    for shape in shapes:
        rows.append(measure(shape, rate, ours_float64, args.rounds))
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print(" | ".join(str(c).rjust(w) for c, w in zip(row, widths, strict=True)))
    print(
        f"ms per EM iteration, least times of {args.rounds} rounds; ratios are the other tool's "
        "time over gmmcli's (float32 row: gmmcli float64 over float32)"
    )
    if not (args.quick or args.no_end_to_end):
        end_to_end(args.rounds)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        worker(*sys.argv[2:])
    else:
        main()
