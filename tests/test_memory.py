"""--memory-limit caps what a local command allocates: the anonymous memory of its process
tree above its import baseline, forked workers' shared pages counted once (measured by
memory_helpers from Linux's PSS). Chunk sizes and workers follow from the limit; a limit
too small to honour is one error line before anything is read, giving the smallest limit
that works.

The measured runs use that smallest limit, the tightest the command accepts, on a file
read in chunks of a few thousand rows.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cli_helpers import error_line, gmm, ok, runner, snapshot
from memory_helpers import peak_above_baseline, pss_unavailable

from gmmcli.cli import app
from gmmcli.engines.memory import shown_size
from gmmcli.engines.stream import parse_size

pytestmark = pytest.mark.usefixtures("in_tmp_path")
needs_pss = pytest.mark.skipif(pss_unavailable() is not None, reason=str(pss_unavailable()))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """big.csv: 60,000 rows of 2 features (and true_component); wide.parquet: 60,000
    rows of 10 features; small.parquet: 2,000 rows; model.json: a fit of small.parquet."""
    folder = tmp_path_factory.mktemp("memory")
    ok(gmm(f"generate -k 3 -n 60000 --seed 1 -q -o {folder / 'big.csv'}"))
    ok(gmm(f"generate -k 3 -d 10 -n 60000 --seed 1 --no-labels -q -o {folder / 'wide.parquet'}"))
    ok(gmm(f"generate -k 3 -n 2000 --seed 2 -q -o {folder / 'small.parquet'}"))
    ok(gmm(f"fit {folder / 'small.parquet'} -k 3 -q -o {folder / 'model.json'}"))
    return folder


def smallest_limit(command: str) -> str:
    """The smallest --memory-limit that ``command`` says works, from its error at 1KB."""
    error = error_line(gmm(f"{command} --memory-limit 1KB"))
    found = re.search(r"needs at least (\d+[KMG]B) .*; give --memory-limit \1 or more$", error)
    assert found, error
    return found.group(1)


@needs_pss
@pytest.mark.parametrize(
    "command",
    [
        "classify {big.csv} -m {model.json} -o out.parquet",
        "fit {big.csv} -k 3 --init random --max-iter 1 --tol 0 -o out.json",
        "select-k {small.parquet} --k-max 2 --covariance-types full,diag --init kmeans "
        "--max-iter 3 --tol 0 --jobs 2 -o out.json",
    ],
    ids=["streamed-classify", "streamed-fit", "select-k-jobs"],
)
def test_a_run_stays_within_the_smallest_limit_that_works(inputs, in_tmp_path, command):
    command = re.sub(r"\{(\S+?)\}", lambda m: str(inputs / m.group(1)), command)
    limit = smallest_limit(command)
    code, peak = peak_above_baseline([*command.split(), "--memory-limit", limit], in_tmp_path)
    assert code == 0, (in_tmp_path / "stderr.txt").read_text()
    assert 0 < peak < parse_size(limit), (peak, limit)


@needs_pss
def test_a_streamed_parquet_fit_in_chunks_the_limit_sizes_stays_within_it(inputs, in_tmp_path):
    """16 MB above the smallest limit, chunks (asked for whole: it streams) take what is
    left (the next one, read ahead while the core works on this one, counted): tens of
    thousands of rows."""
    fit = (
        f"fit {inputs / 'wide.parquet'} -k 3 --init random --max-iter 2 --tol 0 -o out.json "
        "--chunk-rows 60000"
    )
    limit = shown_size(parse_size(smallest_limit(fit)) + (16 << 20))
    code, peak = peak_above_baseline([*fit.split(), "--memory-limit", limit], in_tmp_path)
    stderr = (in_tmp_path / "stderr.txt").read_text()
    assert code == 0, stderr
    chunk_rows = int(re.search(r"streamed from .* in chunks of (\d+) rows", stderr).group(1))
    assert 10_000 < chunk_rows < 60_000, stderr
    assert 0 < peak < parse_size(limit), (peak, limit)


def test_the_limit_decides_whether_a_file_is_streamed(inputs, in_tmp_path):
    fit = f"fit {inputs / 'big.csv'} -k 3 --max-iter 1 --tol 0 -o out.json"
    limit = smallest_limit(fit)
    assert "streamed from" in ok(gmm(f"{fit} --memory-limit {limit}")).stderr
    assert "streamed from" not in ok(gmm(f"{fit} --memory-limit 1GB")).stderr


@pytest.mark.parametrize(
    "command",
    [
        "fit small.parquet -k 3 -o out.json",
        "select-k small.parquet --k-max 2 --covariance-types diag --init kmeans -o out.json",
        "classify small.parquet -m model.json -o out.csv",
        "score small.parquet -m model.json --per-sample out.csv",
    ],
)
def test_a_limit_too_small_is_one_line_giving_the_smallest_that_works(inputs, command):
    for name in ("small.parquet", "model.json"):
        Path(name).write_bytes((inputs / name).read_bytes())
    before = snapshot()
    limit = smallest_limit(command)
    assert snapshot() == before
    assert parse_size(limit) > 1 << 20
    ok(gmm(f"{command} -q --memory-limit {limit}"))


@pytest.mark.parametrize("command", ["fit", "select-k", "classify", "score"])
def test_the_help_says_what_the_limit_covers(command):
    result = ok(runner.invoke(app, [command, "--help"], env={"COLUMNS": "300"}))
    text = " ".join(result.stdout.replace("│", " ").split())
    assert "--memory-limit" in text
    assert "Cap on the memory the command's processes allocate" in text
    assert "a limit too small exits 2 naming the smallest that works" in text
