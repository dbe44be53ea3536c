"""Running the command line in process, and its CSV tables: shared by the CLI test modules."""

from __future__ import annotations

import io
import shlex
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
from typer.testing import CliRunner

from gmmcli.cli import app
from gmmcli.core import select as selection

runner = CliRunner()
SCORE_KEYS = {  # what score's summary JSON holds
    "n_samples",
    "n_samples_missing_features",
    "total_weight",
    "log_likelihood",
    "mean_log_likelihood",
    "bic",
    "aic",
}


def gmm(command: str | list, input: bytes | str | None = None):
    """Run ``gmmcli <command>`` in process; a string is split like a shell would."""
    args = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
    return runner.invoke(app, args, input=input)


def stopped_after(monkeypatch, n_points: int, command: str):
    """``command`` (select-k) run with Ctrl-C as it starts to fit its point n_points + 1;
    checks that it stopped saying where its points are kept for --resume."""
    fitted, evaluate = [], selection.evaluate

    def evaluate_until_ctrl_c(point):
        if len(fitted) == n_points:
            raise KeyboardInterrupt
        fitted.append(point)
        return evaluate(point)

    with monkeypatch.context() as patch:
        patch.setattr(selection, "evaluate", evaluate_until_ctrl_c)
        stopped = gmm(command)
    assert stopped.exit_code == 130
    assert stopped.stderr.splitlines()[-1] == (
        "error: interrupted; the grid points fitted so far are in 'grid.csv', which --resume "
        "goes on with"
    )
    return stopped


def ok(result):
    """The result of a command that must succeed."""
    assert result.exit_code == 0, (result.exit_code, result.stderr, result.exception)
    return result


def error_line(result, code: int = 2) -> str:
    """The one error line of a failed command; checks the exit code and the shape."""
    assert result.exit_code == code, (result.exit_code, result.stderr, result.exception)
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert result.stderr.rstrip("\n").endswith(errors[0]), "the error must be the last line"
    return errors[0]


def snapshot(folder: Path = Path(".")) -> dict[str, bytes | None]:
    """Every path under ``folder`` with its bytes (None for folders)."""
    return {
        str(path.relative_to(folder)): None if path.is_dir() else path.read_bytes()
        for path in sorted(folder.rglob("*"))
    }


def read_csv(path: str | Path) -> pa.Table:
    return pa_csv.read_csv(path)


def read_stdout_csv(result) -> pa.Table:
    return pa_csv.read_csv(io.BytesIO(result.stdout_bytes))


def set_cell(csv_text: str, row: int, column: str, value: str) -> str:
    """``csv_text`` with data row ``row`` (1-based, header not counted) of ``column`` set."""
    lines = csv_text.splitlines()
    header = [name.strip('"') for name in lines[0].split(",")]
    cells = lines[row].split(",")
    cells[header.index(column)] = value
    lines[row] = ",".join(cells)
    return "\n".join(lines) + "\n"


def add_column(csv_text: str, name: str, values) -> str:
    lines = csv_text.splitlines()
    rows = [f"{lines[0]},{name}"]
    rows += [f"{line},{value}" for line, value in zip(lines[1:], values, strict=True)]
    return "\n".join(rows) + "\n"


def missing_rows_csv(base) -> str:
    """blobs with x0 empty in row 3, x1 = inf in row 6 and x1 = NaN in row 10."""
    text = set_cell(base.blobs, 3, "x0", "")
    text = set_cell(text, 6, "x1", "inf")
    return set_cell(text, 10, "x1", "NaN")
