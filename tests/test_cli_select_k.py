"""select-k's long runs and what a person reads of them: starts, progress, the --table kept
as points finish and --resume from it, and the grid on stderr.

The core's selection and the command's criteria are tested in test_select.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
import typing
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from cli_helpers import error_line, gmm, ok, runner, snapshot, stopped_after

from gmmcli import cli, jobs
from gmmcli.cli import app
from gmmcli.console import Reporter
from gmmcli.core.init import INIT_CHOICES
from gmmcli.core.options import FitOptions, Grid
from gmmcli.core.select import GridPoint
from gmmcli.engines import local
from gmmcli.inputs import Quiet, Source
from gmmcli.io.gridtable import METADATA_KEY

pytestmark = [
    pytest.mark.usefixtures("in_tmp_path"),
    pytest.mark.filterwarnings("ignore::gmmcli.errors.GMMWarning"),
]

# A grid of six quick points on data.csv (40 rows, two clusters: the winner is K=2).
GRID = "--k-max 3 --covariance-types diag,full --n-init 1 --exclude true_component"
TERMINAL = {"COLUMNS": "80", "TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "0", "NO_COLOR": "1"}


def same_rows(first: Path, second: Path) -> None:
    """Two grid tables hold the same rows, to the last bit (seconds aside)."""
    a, b = (read(path).drop_columns(["seconds"]) for path in (first, second))
    assert a.to_pylist() == b.to_pylist()


def read(path: Path) -> pa.Table:
    return pq.read_table(path) if path.suffix == ".parquet" else pa_csv.read_csv(path)


def from_scratch(files, table: str = "scratch.csv", grid: str = GRID) -> Path:
    """The grid and winner of a run from scratch: scratch.csv (or ``table``), scratch.json."""
    ok(gmm(f"select-k data.csv {grid} --table {table} -o scratch.json -q"))
    return Path(table)


# --- starts ----------------------------------------------------------------------------


def init_choices(command) -> list[str]:
    return [method.value for method in typing.get_type_hints(command)["init"]]


def test_select_k_takes_every_start_that_fit_takes():
    assert init_choices(cli.select_k) == init_choices(cli.fit_command) == list(INIT_CHOICES)


@pytest.mark.parametrize("init", INIT_CHOICES)
def test_select_k_runs_from_each_start(files, init):
    result = ok(gmm(f"select-k data.csv --k-max 2 --covariance-types diag --n-init 1 "
                    f"--init {init} --table grid.csv -o best.json -q"))  # fmt: skip
    assert result.stderr == ""
    assert read(Path("grid.csv"))["status"].to_pylist() == ["ok", "ok"]


# --- progress --------------------------------------------------------------------------


def test_a_log_gets_a_line_per_grid_point(files):
    result = ok(gmm(f"select-k data.csv {GRID} -o best.json"))
    lines = [line for line in result.stderr.splitlines() if line.startswith("select-k ")]
    assert len(lines) == 6
    for i, line in enumerate(lines, 1):
        assert re.fullmatch(
            rf"select-k {i}/6: K=[1-3] (diag|full): ok, bic \d+\.\d, \d+\.\d s", line
        )
    assert "K=3 full" in lines[-1]


def test_quiet_prints_no_progress(files):
    assert ok(gmm(f"select-k data.csv {GRID} -o best.json -q")).stderr == ""


def test_a_terminal_gets_a_bar_with_the_time_left(files):
    env = {**TERMINAL, "TTY_INTERACTIVE": "1"}
    result = ok(
        runner.invoke(app, ["select-k", "data.csv", *GRID.split(), "-o", "b.json"], env=env)
    )
    bar = re.compile(r"select-k .*\d/6 \d:\d\d:\d\d elapsed (-:--:--|\d:\d\d:\d\d) left")
    assert bar.search(result.stderr), result.stderr
    assert "select-k 1/6:" not in result.stderr  # no log lines on a terminal


# --- the table, kept as points finish ---------------------------------------------------


class Watch(Quiet):
    """A report that reads the table each time a grid point is fitted."""

    def __init__(self, table: Path):
        self.table, self.rows = table, []

    @contextlib.contextmanager
    def grid_progress(self, total, criterion):
        yield lambda point: self.rows.append(read(self.table).num_rows)


def run_job(table: Path, watch: Watch):
    grid = Grid(range(1, 4), ("diag", "full"))
    options = FitOptions(init="auto", n_init=1, max_iter=1000, tol=1e-6, seed=0)
    source = Source("data.csv", exclude=["true_component"])
    return jobs.select_k(source, grid, options, report=watch, table=jobs.GridTable(str(table)))


@pytest.mark.parametrize("name", ["grid.csv", "grid.parquet"])
def test_the_table_holds_every_point_as_soon_as_it_is_fitted(files, name):
    files_before = os.listdir()
    watch = Watch(Path(name))
    run_job(Path(name), watch)
    assert watch.rows == [1, 2, 3, 4, 5, 6]
    final = read(Path(name)).to_pylist()
    assert [row["best"] for row in final].count(True) == 1  # ranked at the end
    beside = [f"{name}.meta.json"] if name.endswith(".csv") else []  # Parquet keeps it inside
    assert set(os.listdir()) - set(files_before) == {name, *beside}


def test_a_table_on_stdout_is_written_once_when_the_grid_is_done(files):
    result = ok(gmm(f"select-k data.csv {GRID} --table - -o best.json -q"))
    table = pa_csv.read_csv(pa.BufferReader(result.stdout_bytes))
    assert table.num_rows == 6 and table["best"].to_pylist().count(True) == 1


def test_a_stopped_run_keeps_its_rows_and_resumes_to_the_same_result(files, monkeypatch):
    scratch = from_scratch(files)
    stopped_after(monkeypatch, 4, f"select-k data.csv {GRID} --table grid.csv -o best.json")
    assert not Path("best.json").exists()
    kept = read(Path("grid.csv"))
    assert kept.num_rows == 4 and kept["best"].to_pylist() == [False] * 4
    assert not [name for name in os.listdir() if name.startswith(".")]  # no temporary file
    result = ok(gmm(f"select-k data.csv {GRID} --table grid.csv --resume -o best.json"))
    assert "reusing the grid points in 'grid.csv'" in result.stderr
    assert "select-k 2/2:" in result.stderr and "select-k 3/" not in result.stderr
    same_rows(Path("grid.csv"), scratch)
    assert Path("best.json").read_bytes() == Path("scratch.json").read_bytes()


@pytest.mark.parametrize(
    ("winner_kept", "jobs"), [(True, 2), (False, 1)], ids=["winner-reused", "winner-refitted"]
)
def test_resume_from_part_of_a_parquet_table_equals_a_run_from_scratch(files, winner_kept, jobs):
    """The winner's row reused (its model fitted again) or fitted anew, in --jobs processes."""
    scratch = from_scratch(files, "scratch.parquet")
    table = pq.read_table(scratch)
    rows = [i for i, best in enumerate(table["best"].to_pylist()) if best == winner_kept][:3]
    pq.write_table(table.take(rows), "grid.parquet")  # the fingerprint goes with the schema
    resume = f"--table grid.parquet --resume --jobs {jobs} -o best.json"
    result = ok(gmm(f"select-k data.csv {GRID} {resume}"))
    assert f"select-k {6 - len(rows)}/{6 - len(rows)}:" in result.stderr
    same_rows(Path("grid.parquet"), scratch)
    assert Path("best.json").read_bytes() == Path("scratch.json").read_bytes()


def test_resume_reuses_the_rows_of_a_smaller_grid(files):
    scratch = from_scratch(files)
    ok(gmm(f"select-k data.csv {GRID.replace('--k-max 3', '--k-max 2')} --table grid.csv -q"))
    result = ok(gmm(f"select-k data.csv {GRID} --table grid.csv --resume -o best.json"))
    assert "select-k 1/2: K=3 diag" in result.stderr and "select-k 2/2: K=3 full" in result.stderr
    same_rows(Path("grid.csv"), scratch)
    assert Path("best.json").read_bytes() == Path("scratch.json").read_bytes()


def test_resume_without_a_table_there_fits_every_point(files):
    result = ok(gmm(f"select-k data.csv {GRID} --table grid.csv --resume -o best.json"))
    assert "no grid in 'grid.csv' yet: fitting every point" in result.stderr
    same_rows(Path("grid.csv"), from_scratch(files))


def test_the_fingerprint_names_the_data_and_every_option_that_changes_a_fit(files):
    ok(gmm(f"select-k data.csv {GRID} --table grid.parquet --cv-folds 2 -q"))
    kept = json.loads(pq.read_schema("grid.parquet").metadata[METADATA_KEY])
    assert kept["data"]["size"] == Path("data.csv").stat().st_size
    assert kept["options"] == {
        "columns": None, "exclude": ["true_component"], "weight_column": None,
        "missing": "refuse", "format": "csv", "init": "auto", "init_sample": 100000,
        "hc_rows": 2000, "n_init": 1, "max_iter": 1000, "tol": 1e-06, "reg_covar": 1e-06,
        "seed": 0, "dtype": "float64", "cv_folds": 2, "labels": None,
        "shared_structure": None, "class_priors": None,
    }  # fmt: skip


def test_a_random_seed_is_recorded_so_that_the_run_can_be_resumed(files):
    ok(gmm(f"select-k data.csv {GRID} --seed random --table grid.csv -q"))
    seed = json.loads(Path("grid.csv.meta.json").read_text())["options"]["seed"]
    result = ok(gmm(f"select-k data.csv {GRID} --seed {seed} --table grid.csv --resume -q"))
    assert result.stderr == ""


# --- --resume refused: one line, the table left as it was -------------------------------


@pytest.fixture(scope="module")
def made(base, tmp_path_factory) -> Path:
    """A folder with data.csv and the grid.csv of its K=1 points, made once."""
    folder = tmp_path_factory.mktemp("made")
    (folder / "data.csv").write_text(base.csv)
    small = GRID.replace("--k-max 3", "--k-max 1")
    ok(gmm(f"select-k {folder / 'data.csv'} {small} --table {folder / 'grid.csv'} -q"))
    return folder


@pytest.fixture
def made_grid(made, in_tmp_path) -> dict:
    """data.csv and its grid.csv here (data.csv as it was: its time too); their snapshot."""
    for name in ("data.csv", "grid.csv", "grid.csv.meta.json"):
        shutil.copy2(made / name, name)
    return snapshot()


RESUME = f"select-k data.csv {GRID} --table grid.csv --resume -o best.json"


def test_resume_goes_on_with_a_table_made_alike(made_grid):
    result = ok(gmm(RESUME))
    assert "reusing the grid points in 'grid.csv'" in result.stderr
    assert "select-k 4/4: K=3 full" in result.stderr


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ("--tol 1e-4", ["--tol 1e-06, not 0.0001"]),
        ("--columns x0,x1", ["--columns none, not x0,x1"]),
        ("--n-init 2", ["--n-init 1, not 2"]),
        ("--drop-missing", ["--missing refuse, not drop"]),
        ("--missing marginal", ["--missing refuse, not marginal"]),
        ("--criterion cv", ["--cv-folds none, not 5"]),
        ("--seed random", ["--seed 0, not "]),
    ],
)
def test_resume_refuses_a_table_made_with_other_options(made_grid, change, words):
    error = error_line(gmm(f"{RESUME} {change}"))
    for word in [*words, "--table 'grid.csv' was made with", "run without --resume"]:
        assert word in error, error
    assert snapshot() == made_grid


def test_resume_refuses_a_table_made_from_other_data(made_grid):
    os.utime("data.csv")  # the same bytes, touched
    before = snapshot()
    error = error_line(gmm(RESUME))
    assert "was made from other data ('data.csv' changed: size, modification time" in error
    assert snapshot() == before


def test_resume_refuses_a_table_without_its_fingerprint(made_grid):
    Path("grid.csv.meta.json").unlink()
    before = snapshot()
    error = error_line(gmm(RESUME))
    assert "has no fingerprint of the data and options that made it" in error
    assert snapshot() == before


def test_resume_refuses_a_table_that_is_no_grid(made_grid):
    table = pa_csv.read_csv("grid.csv")
    pa_csv.write_csv(table.drop_columns(["status"]), "grid.csv")
    before = snapshot()
    error = error_line(gmm(RESUME))
    assert "'grid.csv' is no select-k table (it has no column 'status')" in error
    assert snapshot() == before


def test_resume_refuses_stdin(files):
    error = error_line(gmm(f"select-k - {GRID} --table grid.csv --resume", input=files.csv))
    assert "--resume needs the data in a file: stdin cannot be compared" in error
    assert not Path("grid.csv").exists()


def test_resume_needs_a_table_it_can_read_back(files):
    error = error_line(gmm(f"select-k data.csv {GRID} --table - --resume -o best.json"))
    assert "--resume reads the grid in --table, which '-' cannot give back; give a file" in error
    assert not Path("best.json").exists()


def test_resume_needs_a_table(files):
    error = error_line(gmm(f"select-k data.csv {GRID} --resume"))
    assert "--resume goes on with the grid in --table; give --table" in error


# --- the grid on stderr ----------------------------------------------------------------


def wide_points() -> list[GridPoint]:
    """The widest grid a screen shows: a million rows' criteria, cv, 1000 iterations,
    statuses of every kind (the degenerate and failed reasons as long as they come)."""
    degenerate = ("degenerate: component 3 holds 1.8 effective rows, fewer than its "
                  "structure's estimate needs (D + 1 = 3)")  # fmt: skip
    failed = "failed: " + "the covariance of component 2 is singular (not positive definite); " * 2
    points = []
    for k in range(1, 11):
        for covariance in ("spherical", "EVE"):
            status = {7: degenerate, 9: failed}.get(k, "ok")
            points.append(GridPoint(k, covariance, "X", 1659, -6123456.789, 12345678.9,
                                    12345000.1, 12345999.5, -123.456789, k != 5, 1000,
                                    k == 7, status))  # fmt: skip
    points[-1].best = True
    return points


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def shown(text: str) -> list[str]:
    """The lines a person sees (escape codes and bars redrawn in place aside)."""
    return [ANSI.sub("", line.split("\r")[-1]) for line in text.splitlines()]


@pytest.mark.parametrize(("terminal", "width"), [(True, 80), (False, 100)])
def test_the_widest_grid_fits_a_terminal_and_a_log(monkeypatch, capsys, terminal, width):
    for name, value in {**TERMINAL, "TTY_COMPATIBLE": "1" if terminal else "0"}.items():
        monkeypatch.setenv(name, value)
    Reporter().grid(wide_points(), Grid(range(1, 11), ("spherical", "EVE"), "cv", 5))
    lines = shown(capsys.readouterr().err)
    assert max(len(line) for line in lines) <= width
    assert not any("…" in line for line in lines), "nothing cut"
    assert ("─" * 20 in lines[2]) is terminal  # a rule under the header on a terminal only
    rows = [line.split() for line in lines[3 if terminal else 2 :][:20]]
    assert [row[0] for row in rows[:2]] == ["1", "1"] and rows[-1][0] == "*10"
    assert {" ".join(row[9:]) for row in rows} == {"ok", "not conv.", "degenerate", "failed"}
    # Rounded to five significant digits, or to a unit (criteria), or to 1e-4 (cv).
    assert rows[0][2:] == ["1659", "-6123457", "12345679", "12345000", "12346000", "-123.46",
                           "1000", "ok"]  # fmt: skip
    reasons = " ".join(" ".join(lines[22 if terminal else 21 :]).split())
    assert "K=5 spherical: did not converge in 1000 iterations (raise --max-iter)" in reasons
    assert "K=7 EVE: degenerate: component 3 holds 1.8 effective rows, fewer than" in reasons
    assert "K=9 EVE: failed: the covariance of component 2 is singular" in reasons


def test_a_degenerate_grid_on_an_80_column_terminal():
    """The issue's case: a "degenerate: ..." status wrapped into 20 one-word lines. Rounded
    values (13 distinct): at K=4 one spherical component collapses onto one of them."""
    rng = np.random.default_rng(0)
    first = rng.random(272) < 0.36
    x = np.round(np.where(first, rng.normal(20, 1, 272), rng.normal(26, 1.3, 272)))
    pa_csv.write_csv(pa.table({"x": x}), "rounded.csv")
    command = "select-k rounded.csv --k-min 3 --k-max 4 --n-init 1 --table grid.csv -o best.json"
    lines = shown(ok(runner.invoke(app, command.split(), env=TERMINAL)).stderr)
    assert max(len(line) for line in lines) <= 80
    table = read(Path("grid.csv")).to_pylist()
    (collapsed,) = [row for row in table if row["degenerate"]]
    name = f"{collapsed['n_components']} {collapsed['covariance_type']}"
    (row,) = [line.split() for line in lines if re.fullmatch(rf"\s*{name} .*", line)]
    assert row[-1] == "degenerate"  # one word in the grid, the reason below it
    text = " ".join(" ".join(lines).split())
    assert f"K={name}: {collapsed['status']}" in text
    # The table keeps every digit where the screen rounds to a tenth.
    assert len(str(collapsed["bic"]).split(".")[1]) > 5
    assert f"{collapsed['bic']:.1f}" in row


@pytest.mark.parametrize("jobs", [1, 2])
def test_resume_of_a_whole_grid_fits_no_point_in_any_number_of_processes(files, jobs):
    scratch = from_scratch(files)
    shutil.copy(scratch, "grid.csv")
    shutil.copy(f"{scratch}.meta.json", "grid.csv.meta.json")
    result = ok(gmm(f"select-k data.csv {GRID} --table grid.csv --resume --jobs {jobs} -o b.json"))
    assert "select-k 1/" not in result.stderr
    same_rows(Path("grid.csv"), scratch)
    assert Path("b.json").read_bytes() == Path("scratch.json").read_bytes()


def test_resume_names_the_rows_a_smaller_grid_leaves_out(files):
    from_scratch(files, "grid.csv")
    smaller = GRID.replace("--k-max 3", "--k-max 2")
    result = ok(gmm(f"select-k data.csv {smaller} --table grid.csv --resume -o b.json"))
    assert "2 rows of 'grid.csv' lie outside this grid: left out of it" in result.stderr
    assert read(Path("grid.csv")).num_rows == 4


def test_points_are_kept_in_the_order_they_finish(files, monkeypatch):
    """A point that finishes before an earlier one (in another process) reaches the table
    first; the table is ranked in grid order when the grid is done."""
    kept = []

    def reversed_map(function, tasks):
        return reversed(list(enumerate(map(function, tasks))))

    monkeypatch.setattr(jobs.local, "task_map", lambda _: reversed_map)
    monkeypatch.setattr(
        jobs.GridTable, "keep", lambda self, points: kept.append([p.n_components for p in points])
    )
    ok(gmm(f"select-k data.csv {GRID} --table grid.csv -q -o b.json"))
    assert kept[0] == [3] and kept[-1] == [3, 2, 1, 3, 2, 1]
    assert read(Path("grid.csv"))["n_components"].to_pylist() == [1, 2, 3, 1, 2, 3]


def _slow_first(index: int) -> int:
    time.sleep(1.0 if index == 0 else 0.0)
    return index


def test_task_map_yields_each_result_as_it_finishes():
    assert list(local.task_map(2)(_slow_first, [0, 1])) == [(1, 1), (0, 0)]
    assert list(local.task_map(1)(_slow_first, [1, 0])) == [(0, 1), (1, 0)]
    assert list(local.task_map(2)(_slow_first, [])) == []


def test_the_model_may_not_overwrite_the_tables_fingerprint(files):
    before = snapshot()
    error = error_line(gmm(f"select-k data.csv {GRID} --table grid.csv -o grid.csv.meta.json"))
    assert "--output 'grid.csv.meta.json' is where --table keeps its fingerprint" in error
    assert snapshot() == before


def test_resume_refuses_a_table_with_a_value_of_the_wrong_kind(made_grid):
    text = Path("grid.csv").read_text().splitlines()
    cells = text[1].split(",")
    cells[5] = '"abc"'  # bic
    Path("grid.csv").write_text("\n".join([text[0], ",".join(cells), *text[2:]]) + "\n")
    before = snapshot()
    error = error_line(gmm(RESUME))
    assert "'grid.csv' is no select-k table (column 'bic', row 1, holds 'abc', not float)" in error
    assert snapshot() == before
