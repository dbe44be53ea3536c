"""Running the command line in process, shared by the CLI test modules."""

from __future__ import annotations

import shlex
from pathlib import Path

from typer.testing import CliRunner

from gmmcli.cli import app

runner = CliRunner()


def gmm(command: str | list, input: bytes | str | None = None):
    """Run ``gmmcli <command>`` in process; a string is split like a shell would."""
    args = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
    return runner.invoke(app, args, input=input)


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
