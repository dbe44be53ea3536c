"""Fuzzing every subcommand in process: odd tables and edited model files end in exit 0 or
exit 2 with one error line, never a traceback, and a failed run leaves an existing output
as it was.

hypothesis draws CSV bytes from a small grammar (header names, separators, quoting, line
ends, cells, ragged rows, encodings) and model files with a key deleted, a value of another
type or shape, NaN or non-JSON. Each subcommand runs twice: on well-formed input spelled in
many ways (line ends, quoting, a byte-order mark, spaces around names; a file, streamed or
stdin), where at least REACHED cases must get to the fit or the prediction, and on odd
input. Examples are derandomized, with no database; GMMCLI_FUZZ_EXAMPLES=N runs N per
subcommand and kind instead.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from cli_helpers import error_line, gmm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

EXAMPLES = {"well-formed": 30, "odd": 40}  # per subcommand
MORE = int(os.environ.get("GMMCLI_FUZZ_EXAMPLES", "0"))
REACHED = 20  # well-formed cases per subcommand that must get to the fit or prediction

ODD_NAMES = ["", " x0", "x1 ", "\ufeffx0", "X0", "x0", "x1", "p_0", "component", "w", "--", "é"]
QUOTED_NAMES = ['"x0"', '"x,1"', '"x""0"', '""', '"x\n0"', '"x0']  # the last one never closes
ODD_CELLS = [
    "", "NA", "nan", "NaN", "inf", "-inf", "--", "abc", '"1.5"', '" 2 "', "1e400", "1e-400",
    "0x10", '"1,5"', '"a""b"', "true", "2024-01-01", "é", " ", '"', "1.5.2", "+3", ".5",
]  # fmt: skip
SEPARATORS = {"csv": ",", "tsv": "\t"}


@dataclass(frozen=True)
class Table:
    """CSV or TSV bytes, and the extension their file gets."""

    data: bytes
    fmt: str


def number(draw) -> str:
    """A number as a CSV writer might spell it: whole, decimal or with an exponent."""
    value = draw(st.integers(-5000, 5000)) / 100
    style = draw(st.sampled_from(["repr", "repr", "int", "exp"]))
    return {"repr": repr(value), "int": str(round(value)), "exp": f"{value:.3e}"}[style]


def spelled(draw, name: str) -> str:
    """A well-formed name as a header may spell it: quoted, or with spaces around."""
    return draw(st.sampled_from([name, name, f'"{name}"', f" {name} "]))


@st.composite
def tables(draw, odd: bool) -> Table:
    """A well-formed table (x0, x1, ... and numbers), or (``odd``) one with odd names,
    cells, rows, separators or encoding."""
    fmt = draw(st.sampled_from(["csv", "csv", "tsv"]))
    n_columns = draw(st.integers(2 if not odd else 1, 4))
    names = [spelled(draw, f"x{i}") for i in range(n_columns)]
    rows = [[number(draw) for _ in names] for _ in range(draw(st.integers(4, 20)))]
    separator, line_end = SEPARATORS[fmt], draw(st.sampled_from(["\n", "\r\n", "\r"]))
    if odd:
        for _ in range(draw(st.integers(1, 3))):
            i = draw(st.integers(0, n_columns - 1))
            names[i] = draw(st.sampled_from(ODD_NAMES + QUOTED_NAMES))
        for _ in range(draw(st.integers(0, 4))):
            row = draw(st.integers(0, len(rows) - 1))
            rows[row][draw(st.integers(0, n_columns - 1))] = draw(st.sampled_from(ODD_CELLS))
        if draw(st.booleans()):
            row = rows[draw(st.integers(0, len(rows) - 1))]
            row.pop() if draw(st.booleans()) else row.append(number(draw))  # a ragged row
        separator = draw(st.sampled_from([separator, separator, ";", ",", "\t"]))
    if odd and draw(st.integers(0, 9)) == 0:
        rows = rows[: draw(st.integers(0, 1))]  # a header alone, or one row
    lines = [separator.join(names), *(separator.join(row) for row in rows)]
    text = line_end.join(lines) + (line_end if draw(st.booleans()) else "")
    bom = "\ufeff" if draw(st.booleans()) else ""
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "latin-1"])) if odd else "utf-8"
    return Table((bom + text).encode(encoding, errors="replace"), fmt)


@st.composite
def models(draw, base: dict, odd: bool) -> bytes:
    """The fitted model's JSON, or (``odd``) edited or cut short."""
    if not odd:
        return json.dumps(base).encode()
    model = json.loads(json.dumps(base))
    edit = draw(st.sampled_from(["delete", "replace", "negative", "shape", "cut"]))
    if edit == "cut":
        text = json.dumps(base).encode()
        return text[: draw(st.integers(0, len(text) - 1))]
    key = draw(st.sampled_from(sorted(model)))
    if edit == "delete":
        del model[key]
    elif edit == "replace":
        model[key] = draw(
            st.sampled_from(["x", None, 1, -1, 0, 2.5, float("nan"), [], {}, True, [[1]]])
        )
    elif edit == "negative":
        model["weights"] = [-0.5, 1.5]
    elif isinstance(model[key], list) and model[key]:
        model[key] = model[key][:-1] if draw(st.booleans()) else [*model[key], model[key][0]]
    else:
        model[key] = [model[key]]
    return json.dumps(model).encode()  # NaN written as NaN: not strict JSON


@dataclass(frozen=True)
class Case:
    """A command line to run in a fresh folder: its arguments, stdin, files and outputs."""

    args: list[str]
    stdin: bytes | None
    files: dict[str, bytes]
    outputs: tuple[str, ...]


@st.composite
def inputs(draw, odd: bool, options: bool = True) -> tuple[list[str], bytes | None, dict]:
    """A table as a file, a file streamed in small chunks, or stdin: (arguments naming
    it, stdin, files); without ``options`` (plot), neither streamed nor --format."""
    table = draw(tables(odd))
    how = draw(st.sampled_from(["file", "streamed", "stdin"] if options else ["file", "stdin"]))
    chunks = ["--chunk-rows", str(draw(st.integers(1, 7)))] if options else []
    if how == "stdin":
        fmt = [] if table.fmt == "csv" or not options else ["--format", "tsv"]
        return ["-", *fmt, *chunks], table.data, {}  # classify and score: chunk by chunk
    name = f"data.{table.fmt}"
    streamed = chunks if how == "streamed" else []
    return [name, *streamed], None, {name: table.data}


def options(draw, *choices: list[str]) -> list[str]:
    """Some of ``choices``, each in or out."""
    return [word for choice in choices if draw(st.booleans()) for word in choice]


@st.composite
def cases(draw, command: str, model: dict, odd: bool) -> Case:
    """A run of ``command`` with tiny options on well-formed or (``odd``) odd input."""
    if command == "generate":
        files = {"model.json": draw(models(model, odd))}
        output = f"out.{draw(st.sampled_from(['csv', 'tsv', 'parquet']))}"
        rows, seed = str(draw(st.integers(1, 30))), str(draw(st.integers(0, 99)))
        some = options(draw, ["--no-labels"], ["--weight-column", "w"])
        args = ["generate", "-m", "model.json", "-n", rows, "--seed", seed, *some, "-o", output]
        return Case(args, None, files, (output,))
    source, stdin, files = draw(inputs(odd, options=command != "plot"))
    some = options(draw, ["--drop-missing"])
    if odd and command != "classify":
        some += options(draw, ["--weight-column", "x1"])  # negative weights, often
    if command == "fit":
        some += options(draw, ["--columns", "x0,x1"], ["--exclude", "x2"])
        k = draw(st.sampled_from(["1", "2"]))
        args = ["fit", *source, "-k", k, "--n-init", "1", "--max-iter", "5", *some]
        return Case([*args, "-o", "out.json"], stdin, files, ("out.json",))
    if command == "select-k":
        grid = ["--k-max", "2", "--covariance-types", "diag", "--n-init", "1", "--max-iter", "5"]
        args = ["select-k", *source, *grid, *some, "--table", "grid.csv", "-o", "out.json"]
        return Case(args, stdin, files, ("out.json", "grid.csv"))
    files["model.json"] = draw(models(model, odd))
    if command == "plot":
        drawn = draw(st.sampled_from(["model", "data", "grid"] if odd else ["model", "data"]))
        what = {"model": [*source, "-m", "model.json"], "data": source}.get(drawn)
        if what is None:  # the table as a select-k grid
            what = ["--table", source[0]]
        args = ["plot", *what, "--size", "4x3", "--dpi", "20", "-o", "out.png"]
        return Case(args, stdin, files, ("out.png",))
    output = f"out.{draw(st.sampled_from(['csv', 'parquet']))}"
    if command == "classify":
        some += options(draw, ["--only-new-columns"])
        return Case(
            [command, *source, "-m", "model.json", *some, "-o", output], stdin, files, (output,)
        )
    args = ["score", *source, "-m", "model.json", *some, "--per-sample", output]
    return Case(args, stdin, files, (output,))


def run(case: Case, folder: Path) -> str:
    """Run ``case`` in ``folder``; check the outcome; "" if it succeeded, else its error."""
    for name, data in case.files.items():
        (folder / name).write_bytes(data)
    old = {name: f"an earlier {name}\n".encode() for name in case.outputs}
    for name, data in old.items():
        (folder / name).write_bytes(data)
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        result = gmm(case.args, input=case.stdin)
    finally:
        os.chdir(cwd)
    detail = (case, result.exit_code, result.stderr, result.exception)
    assert result.exit_code in (0, 2), detail
    assert "Traceback" not in result.stderr, detail
    if result.exit_code == 0:
        return ""
    assert {name: (folder / name).read_bytes() for name in case.outputs} == old, detail
    return error_line(result)


COMMANDS = ["generate", "fit", "select-k", "classify", "score", "plot"]


@pytest.mark.parametrize("kind", ["well-formed", "odd"])
@pytest.mark.parametrize("command", COMMANDS)
def test_fuzz(command, kind, base, tmp_path):
    if command == "plot":
        pytest.importorskip("matplotlib")
    model = json.loads(base.model)
    errors = []

    @settings(
        max_examples=MORE or EXAMPLES[kind],
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases(command, model, odd=kind == "odd"))
    def fuzz(case):
        errors.append(run(case, Path(tempfile.mkdtemp(dir=tmp_path))))

    fuzz()
    if kind == "well-formed":
        reached = errors.count("")
        assert reached >= REACHED, Counter(error[:80] for error in errors).most_common()
