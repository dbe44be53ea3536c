"""The command line as real processes: shell pipes, broken pipes, Ctrl-C, exit codes.

Commands run through bash with ``set -o pipefail`` (so every stage's exit status counts),
with ``gmmcli`` the console script installed next to this Python (``python -m gmmcli`` if
there is none). Small inputs are prepared in process, which is much faster than a process.
"""

from __future__ import annotations

import builtins
import io
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from cli_helpers import SCORE_KEYS
from typer.testing import CliRunner

from gmmcli.cli import app
from gmmcli.io import tables

SCRIPT = Path(sys.executable).with_name("gmmcli")
GMMCLI = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "gmmcli"]
TIMEOUT = 120  # seconds; far above what any command here needs


def run(script: str, cwd: Path, env: dict[str, str] | None = None, input: bytes | None = None):
    """Run a bash script in which ``gmmcli`` is the command line under test."""
    prelude = f'set -o pipefail\ngmmcli() {{ {shlex.join(GMMCLI)} "$@"; }}\n'
    return subprocess.run(
        ["bash", "-c", prelude + script],
        cwd=cwd,
        env=env,
        input=input,
        capture_output=True,
        timeout=TIMEOUT,
    )


def ok(result) -> subprocess.CompletedProcess:
    assert result.returncode == 0, (result.returncode, result.stderr.decode())
    return result


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """data.csv (300 rows, 3 components) and its 3-component model.json, made in process."""
    folder = tmp_path_factory.mktemp("shared")
    data, model = str(folder / "data.csv"), str(folder / "model.json")
    runner = CliRunner()
    for args in (
        ["generate", "-k", "3", "-n", "300", "--seed", "1", "-q", "-o", data],
        ["fit", data, "-k", "3", "-q", "-o", model],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.stderr
    return folder


@pytest.fixture
def work(tmp_path, shared):
    """A fresh folder holding copies of data.csv and model.json."""
    for name in ("data.csv", "model.json"):
        (tmp_path / name).write_bytes((shared / name).read_bytes())
    return tmp_path


def test_every_subcommand_in_a_pipe_quietly(work):
    script = """
    gmmcli generate -k 3 -n 300 --seed 1 -q | gmmcli fit - -k 3 -q -o m.json
    cat data.csv | gmmcli classify - --model m.json -q > labelled.csv
    cat data.csv | gmmcli score - --model m.json -q > score.json
    """
    result = ok(run(script, work))
    assert result.stderr == b""
    # The piped data are data.csv, so the piped fit is the model fitted from the file.
    assert (work / "m.json").read_bytes() == (work / "model.json").read_bytes()
    labelled = pa_csv.read_csv(work / "labelled.csv")
    assert labelled.num_rows == 300
    assert labelled.column_names[-4:] == ["component", "p_0", "p_1", "p_2"]
    scores = json.loads((work / "score.json").read_text())
    assert set(scores) == SCORE_KEYS
    assert scores["n_samples"] == 300


def test_stdout_carries_only_data(work):
    model = ok(run("gmmcli fit data.csv -k 3 -o -", work))
    assert json.loads(model.stdout)["format"] == "gmmcli-model"
    assert model.stdout == (work / "model.json").read_bytes()
    assert b"log-likelihood" in model.stderr
    assert b"features: x0, x1 (300 rows)" in model.stderr

    score = ok(run("gmmcli score data.csv --model model.json", work))
    assert set(json.loads(score.stdout)) == SCORE_KEYS
    assert b"features: x0, x1" in score.stderr

    labelled = ok(run("gmmcli classify - --model model.json < data.csv", work))
    assert pa_csv.read_csv(io.BytesIO(labelled.stdout)).num_rows == 300
    assert b"features: x0, x1" in labelled.stderr


def test_a_reader_that_stops_early_ends_the_pipe_quietly(work):
    """| head -1: exit 0 on a broken pipe, without a word on stderr."""
    # Far more than a pipe buffer (64 KiB) of output, so the writer meets a closed pipe.
    result = CliRunner().invoke(app, ["generate", "-n", "5000", "-q", "-o", str(work / "big.csv")])
    assert result.exit_code == 0, result.stderr
    script = """
    gmmcli classify big.csv --model model.json -q | head -1
    gmmcli generate -k 3 -n 5000 --seed 2 -q | head -1
    """
    result = ok(run(script, work))
    assert result.stderr == b""
    lines = result.stdout.decode().splitlines()
    assert lines[0] == '"x0","x1","true_component","component","p_0","p_1","p_2"'
    assert lines[1] == '"x0","x1","true_component"'


def test_parquet_through_a_pipe(work):
    script = """
    gmmcli generate -k 3 -n 300 --seed 1 -q --output-format parquet \
        | gmmcli fit - --format parquet -k 3 -q -o m.json
    gmmcli classify data.csv --model m.json -q --output-format parquet > labelled.parquet
    """
    ok(run(script, work))
    assert (work / "m.json").read_bytes() == (work / "model.json").read_bytes()
    assert pq.read_table(work / "labelled.parquet").num_rows == 300


def test_the_same_fit_in_two_processes_gives_the_same_bytes(work):
    ok(run("gmmcli fit data.csv -k 3 --n-init 3 --init kmeans++ -q -o a.json", work))
    ok(run("gmmcli fit data.csv -k 3 --n-init 3 --init kmeans++ -q -o b.json", work))
    assert (work / "a.json").read_bytes() == (work / "b.json").read_bytes()


def test_python_dash_m_runs_the_same_command_line(work):
    result = ok(run(f"{shlex.quote(sys.executable)} -m gmmcli --version", work))
    assert result.stdout.decode().startswith("gmmcli ")


@pytest.mark.parametrize(
    ("command", "word"),
    [
        ("gmmcli fit nope.csv -k 2 -o out.json", b"'nope.csv'"),
        ("gmmcli classify data.csv --model nomodel.json -o out.csv", b"'nomodel.json'"),
        ("echo 'x0,x1' | gmmcli score - --model model.json", b"stdin"),
    ],
)
def test_user_error_is_one_line_and_exit_2(work, command, word):
    (work / "out.json").write_text("old\n")
    result = run(command, work)
    assert result.returncode == 2
    assert result.stdout == b""
    assert result.stderr.startswith(b"error: ")
    assert result.stderr.count(b"\n") == 1
    assert word in result.stderr
    assert (work / "out.json").read_text() == "old\n"


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a running process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("read", [[], ["--chunk-rows", "30000"]], ids=["in-memory", "streamed"])
def test_ctrl_c_during_a_fit_exits_130_and_leaves_nothing(tmp_path, read):
    runner = CliRunner()
    data = tmp_path / "big.parquet"
    result = runner.invoke(app, ["generate", "-k", "3", "-n", "200000", "-q", "-o", str(data)])
    assert result.exit_code == 0, result.stderr
    out = tmp_path / "out"
    out.mkdir()
    stderr_path = tmp_path / "stderr.txt"
    command = [*GMMCLI, "fit", str(data), "-k", "3", "--tol", "0", "--max-iter", "1000", *read]
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            [*command, "-o", str(out / "model.json")],
            stdout=subprocess.PIPE,
            stderr=stderr,
            # Python only turns SIGINT into KeyboardInterrupt if it is not ignored at start.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        try:
            # Interrupt EM, not start-up: wait until the data are read ("features: ..." on
            # stderr) and the process has used a second of CPU.
            deadline = time.monotonic() + 60
            while process.poll() is None and time.monotonic() < deadline:
                if b"features:" in stderr_path.read_bytes() and _cpu_seconds(process.pid) > 1:
                    break
                time.sleep(0.05)
            assert process.poll() is None, stderr_path.read_text()
            process.send_signal(signal.SIGINT)
            stdout, _ = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    message = stderr_path.read_text()
    assert process.returncode == 130, message
    assert "interrupted" in message
    assert "Traceback" not in message
    assert stdout == b""
    assert list(out.iterdir()) == []  # no model, no temporary file


# --- abort at interpreter exit ---------------------------------------------------------
#
# When pyarrow's reader threads held Python file objects, a thread could release the last
# reference while the interpreter shut down; the process then aborted ("terminate called
# without an active exception", exit 134) after all output was written. read_table now lets
# pyarrow open files by path and copies stdin into Arrow memory; this test guards that.


def test_read_leaves_no_python_object_to_arrow_threads(work, monkeypatch):
    """Right after read_table returns, pyarrow holds no reference to a Python file object.

    This is the root cause of the exit-time abort, checked in process: over 150 reads per
    source, the race shows in several percent of reads (CSV) to about a third (Parquet).
    It watches Python file objects only: a fix that hands pyarrow Python bytes instead
    (pa.py_buffer, pa.BufferReader(bytes)) still aborts; copy into Arrow memory or let
    pyarrow open the path.
    """
    opened = []

    def tracking_open(*args, **kwargs):
        handle = builtins.open(*args, **kwargs)  # noqa: SIM115 (read_table closes it)
        opened.append(handle)
        return handle

    monkeypatch.setattr(tables, "open", tracking_open, raising=False)
    pq.write_table(pa_csv.read_csv(work / "data.csv"), work / "data.parquet")
    data = (work / "data.csv").read_bytes()
    held = {}
    for source in ("data.csv", "data.parquet", "-"):
        held[source] = 0
        for _ in range(150):
            if source == "-":
                handle = io.BufferedReader(io.BytesIO(data))
                tables.read_table("-", stdin=handle)
            else:
                tables.read_table(str(work / source))
                if not opened:
                    continue  # the file was not opened in Python: nothing to hold
                handle = opened.pop()
            # Our reference and getrefcount's argument: anything more is pyarrow's.
            held[source] += sys.getrefcount(handle) > 2
            del handle
    assert held == {"data.csv": 0, "data.parquet": 0, "-": 0}
