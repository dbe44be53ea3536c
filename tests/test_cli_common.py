"""End-to-end tests of the command line as a whole, in process through Typer's CliRunner.

Tests of one subcommand are in test_cli_<command>.py; here are --version and --help, the
conventions every command keeps (stdout carries data only, -q, the same bytes for the same
command, input formats, bad input: exit 2 and one error line, nothing written) and tests that
chain several commands. Every test runs in its own empty folder (tmp_path is the current
directory), so messages show the short relative paths a user would type. Real processes and
shell pipes are in test_cli_pipes.py.
"""

from __future__ import annotations

import io
import json
import os
import shlex
import typing
from enum import EnumMeta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
import typer
from cli_helpers import (
    add_column,
    error_line,
    gmm,
    missing_rows_csv,
    ok,
    read_csv,
    read_stdout_csv,
    runner,
    set_cell,
    snapshot,
)

import gmmcli
from gmmcli.cli import app

# Every test runs in its own empty folder (the in_tmp_path fixture of conftest.py).
pytestmark = pytest.mark.usefixtures("in_tmp_path")


# --- --version, --help ------------------------------------------------------------------


def test_version():
    result = ok(gmm("--version"))
    assert result.stdout.startswith("gmmcli ")
    assert result.stdout.split()[1][0].isdigit()


COMMANDS = sorted(typer.main.get_command(app).commands)


@pytest.mark.parametrize("command", COMMANDS)
def test_help_ends_with_an_example(command):
    result = ok(gmm([command, "--help"]))
    last = [line.strip() for line in result.stdout.splitlines() if line.strip()][-1]
    assert last.startswith(f"Example: gmmcli {command} "), last


def test_help_shows_defaults_written_in_brackets():
    """Rich reads [text] in help as markup; the defaults written in help must survive it."""
    result = ok(runner.invoke(app, ["fit", "--help"], env={"COLUMNS": "300"}))
    help_text = " ".join(result.stdout.split())
    assert "by either name, in any case. [default: full]" in help_text
    assert "for this run [default: local]" in help_text


def test_help_examples_run_in_order():
    """generate -> fit -> classify -> score, each exactly as its --help shows it."""
    commands = typer.main.get_command(app).commands
    for name, output in [
        ("generate", "data.csv"),
        ("fit", "model.json"),
        ("classify", "labelled.csv"),
        ("score", "scores.csv"),
    ]:
        example = commands[name].epilog.removeprefix("Example: ")
        argv = shlex.split(example)
        assert argv[:2] == ["gmmcli", name]
        ok(gmm(argv[1:]))
        assert Path(output).is_file(), example


def test_seed_help_and_the_api_say_their_defaults_differ():
    """The command line's --seed defaults to 0, the Python API's fit to fresh entropy."""
    result = ok(runner.invoke(app, ["fit", "--help"], env={"COLUMNS": "300"}))
    seed_row = next(line for line in result.stdout.splitlines() if "--seed" in line)
    assert "The Python API's fit defaults to fresh entropy (seed=None)" in seed_row
    assert "[default: 0]" in seed_row
    api_doc = " ".join(gmmcli.fit.__doc__.split())
    assert "``seed`` defaults to None: fresh entropy, recorded in ``fit_info.seed``" in api_doc
    assert "the command line's ``--seed`` defaults to 0" in api_doc


def test_make_demo_reads_every_file_that_generate_writes():
    makefile = (Path(__file__).parent.parent / "Makefile").read_text()
    recipe = makefile.split("\ndemo:")[1].split("\n\n")[0].splitlines()
    commands = [shlex.split(line.rstrip("\\")) for line in recipe[1:]]
    generate = next(i for i, words in enumerate(commands) if "generate" in words)
    words = commands[generate]
    written = {words[words.index(flag) + 1] for flag in ("-o", "--truth")}
    read = {
        word
        for words in commands[generate + 1 :]
        for before, word in zip(["", *words], words, strict=False)
        if before not in ("-o", "--per-sample", ">")
    }
    assert written <= read, written - read


# --- stdout carries data, stderr the rest -----------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        "generate -k 2 -n 50 -q",
        "generate -k 2 -n 50 -q -o out.parquet --truth truth.json",
        "fit blobs.csv -k 3 -q -o out.json",
        "fit blobs.csv -k 3 -q",
        "classify blobs.csv --model blobs.json -q",
        "classify blobs.csv --model blobs.json -q -o out.csv",
        "score blobs.csv --model blobs.json -q --per-sample scores.csv",
    ],
)
def test_quiet_leaves_stderr_empty(files, command):
    result = ok(gmm(command))
    assert result.stderr == ""


# --- determinism ------------------------------------------------------------------------


def test_same_commands_give_the_same_bytes(files):
    for name in ("a", "b"):
        ok(gmm(f"generate -k 3 -n 200 --seed 5 -q -o {name}.csv --truth {name}-truth.json"))
        ok(gmm(f"generate -k 3 -n 200 --seed 5 -q -o {name}.parquet"))
        ok(gmm(f"fit a.csv -k 3 --n-init 2 --init kmeans++ -q -o {name}.json"))
    for suffix in (".csv", "-truth.json", ".parquet", ".json"):
        assert Path(f"a{suffix}").read_bytes() == Path(f"b{suffix}").read_bytes(), suffix
    ok(gmm("generate -k 3 -n 200 --seed 6 -q -o c.csv"))
    assert Path("c.csv").read_bytes() != Path("a.csv").read_bytes()


# --- formats ----------------------------------------------------------------------------


def test_every_input_format_gives_the_same_model(files):
    """CSV floats are written with round-trip precision, so all formats hold the same data."""
    for name in ("d.csv", "d.tsv", "d.parquet", "d.pq"):
        ok(gmm(f"generate -k 2 -n 120 --seed 9 -q -o {name}"))
    assert "\t" in Path("d.tsv").read_text().splitlines()[0]
    assert Path("d.parquet").read_bytes()[:4] == b"PAR1"
    assert Path("d.pq").read_bytes()[:4] == b"PAR1"
    for name in ("d.csv", "d.tsv", "d.parquet", "d.pq"):
        ok(gmm(f"fit {name} -k 2 -q -o {name}.json"))
    expected = Path("d.csv.json").read_bytes()
    for name in ("d.tsv", "d.parquet", "d.pq"):
        assert Path(f"{name}.json").read_bytes() == expected, name


def test_format_option_overrides_the_extension(files):
    ok(gmm("generate -k 2 -n 120 --seed 9 -q -o d.csv"))
    ok(gmm("fit d.csv -k 2 -q -o expected.json"))
    expected = Path("expected.json").read_bytes()

    Path("d.txt").write_bytes(Path("d.csv").read_bytes())
    assert ok(gmm("fit d.txt --format csv -k 2 -q -o -")).stdout_bytes == expected
    Path("tab.csv").write_text(Path("d.csv").read_text().replace(",", "\t"))
    assert ok(gmm("fit tab.csv --format tsv -k 2 -q -o -")).stdout_bytes == expected
    # Parquet on stdin: read whole, its footer being at the end.
    parquet = ok(gmm("generate -k 2 -n 120 --seed 9 -q --output-format parquet")).stdout_bytes
    assert parquet[:4] == b"PAR1"
    result = ok(gmm("fit - --format parquet -k 2 -q -o -", input=parquet))
    assert result.stdout_bytes == expected


# --- columns ----------------------------------------------------------------------------


def test_classify_output_feeds_back_into_fit(files):
    ok(gmm("classify blobs.csv --model blobs.json -q -o labelled.csv"))
    ok(gmm("score blobs.csv --model blobs.json -q --per-sample scored.csv"))
    for name in ("labelled.csv", "scored.csv"):
        ok(gmm(f"fit {name} -k 3 -q -o {name}.json"))
        assert Path(f"{name}.json").read_bytes() == files.blobs_model.encode(), name


# --- table headers: names cleaned the same way by every reader --------------------------


def header(base, names: str) -> str:
    """The 40 rows of base.csv under another header line."""
    return names + "\n" + base.csv.split("\n", 1)[1]


STREAMED = "--chunk-rows 7"  # a file streamed in chunks of 7 rows


def fit_in_every_reader(text: str, how: str, options: str = "") -> dict:
    """The model fitted to a CSV ``text`` read whole, streamed (``how``) or from stdin."""
    Path("named.csv").write_text(text)
    source, extra = ("-", "") if how == "stdin" else ("named.csv", STREAMED * (how == "streamed"))
    result = ok(gmm(f"fit {source} -k 2 {options} {extra} -q -o -", input=text.encode()))
    return json.loads(result.stdout)


@pytest.mark.parametrize("how", ["file", "streamed", "stdin"])
@pytest.mark.parametrize(
    ("names", "options", "features"),
    [
        ("\ufeff x0 ,\tx1, true_component", "--columns x0,x1", ["x0", "x1"]),  # BOM, spaces
        ('"x\n0",x1,true_component', "", ["x\n0", "x1"]),  # a quoted name holds a line end
    ],
)
def test_header_names_read_alike_in_every_reader(files, how, names, options, features):
    model = fit_in_every_reader(header(files, names), how, options)
    assert (model["feature_names"], model["training"]["n_samples"]) == (features, 40)


@pytest.mark.parametrize("how", ["file", "streamed", "stdin"])
def test_an_unnamed_first_column_is_an_index_left_out_of_the_features(files, how):
    lines = files.csv.splitlines()
    indexed = "\n".join([f'"",{lines[0]}', *(f"{i},{line}" for i, line in enumerate(lines[1:]))])
    Path("indexed.csv").write_text(indexed + "\n")  # as R writes it ("" names the index)
    source, extra = ("-", "") if how == "stdin" else ("indexed.csv", STREAMED * (how == "streamed"))
    result = ok(gmm(f"fit {source} -k 2 {extra} -o -", input=indexed + "\n"))
    assert json.loads(result.stdout)["feature_names"] == ["x0", "x1"]
    assert "the unnamed first column is taken for a row index" in result.stderr


def test_classify_keeps_an_unnamed_first_column_in_its_output(files):
    lines = ["," + files.csv.splitlines()[0]]
    lines += [f"{i},{line}" for i, line in enumerate(files.csv.splitlines()[1:])]
    Path("indexed.csv").write_text("\n".join(lines) + "\n")
    for extra in ("", STREAMED):
        ok(gmm(f"classify indexed.csv --model model.json {extra} -q -o out.csv"))
        table = read_csv("out.csv")
        assert table.column_names[:2] == ["", "x0"]
        assert table.column("").to_pylist() == list(range(files.n_rows))


def test_names_that_differ_by_case_are_different_columns(files):
    Path("cased.csv").write_text(header(files, "x,X,true_component"))
    result = ok(gmm("fit cased.csv -k 2 -o -"))
    assert json.loads(result.stdout)["feature_names"] == ["x", "X"]


# --- weights ----------------------------------------------------------------------------


def test_weights_in_fit_and_score(files):
    weights = [(i * 7) % 5 for i in range(300)]  # some zeros: rows that count for nothing
    Path("weighted.csv").write_text(add_column(files.blobs, "w", weights))
    result = ok(gmm("fit weighted.csv -k 3 --weight-column w -o w.json"))
    assert "weights from 'w'" in result.stderr
    training = json.loads(Path("w.json").read_text())["training"]
    assert training["total_weight"] == sum(weights)
    assert training["n_samples"] == sum(w > 0 for w in weights)

    scores = json.loads(ok(gmm("score weighted.csv --model w.json --weight-column w -q")).stdout)
    assert scores["total_weight"] == sum(weights)
    assert scores["n_samples"] == 300
    assert scores["log_likelihood"] == pytest.approx(training["log_likelihood"], rel=1e-12)
    assert scores["mean_log_likelihood"] == pytest.approx(scores["log_likelihood"] / sum(weights))


# --- missing values ---------------------------------------------------------------------


def test_classify_and_score_keep_rows_aligned_with_drop_missing(files):
    Path("holes.csv").write_text(missing_rows_csv(files))
    ok(gmm("classify holes.csv --model blobs.json --drop-missing -q -o labelled.csv"))
    labelled = read_csv("labelled.csv")
    assert labelled.num_rows == 300
    for column in ("component", "p_0", "p_1", "p_2"):
        nulls = np.flatnonzero(labelled[column].is_null().to_numpy(zero_copy_only=False))
        assert nulls.tolist() == [2, 5, 9], column
    complete = ok(gmm("classify blobs.csv --model blobs.json -q --only-new-columns"))
    expected = read_stdout_csv(complete)["component"].to_pylist()
    got = labelled["component"].to_pylist()
    assert [g for i, g in enumerate(got) if i not in (2, 5, 9)] == [
        e for i, e in enumerate(expected) if i not in (2, 5, 9)
    ]

    result = ok(gmm("score holes.csv --model blobs.json --drop-missing -q --per-sample s.csv"))
    scores = json.loads(result.stdout)
    assert scores["n_samples"] == 297
    assert scores["total_weight"] == 297
    per_sample = read_csv("s.csv")["log_likelihood"]
    assert per_sample.null_count == 3
    assert scores["log_likelihood"] == pytest.approx(pc.sum(per_sample).as_py())


# --- bad input: exit 2, one line naming what and where, nothing written -----------------

DIRECTORY = object()  # in a case's files: make a folder at that path


def model_with(**changes):
    def make(base) -> str:
        data = json.loads(base.model)
        data.update(changes)
        return json.dumps(data)

    return make


def vev_model_with(**changes):
    """A version-2 model (VEV) of data.csv's features, with ``changes``."""

    def make(base) -> str:
        data = {
            **{"format": "gmmcli-model", "version": 2, "covariance_type": "VEV"},
            **{"n_components": 2, "n_features": 2, "feature_names": ["x0", "x1"]},
            **{"weights": [0.5, 0.5], "means": [[0.0, 0.0], [4.0, 4.0]], "training": None},
            **{
                "volumes": [1.0, 2.0],
                "shape": [2.0, 0.5],
                "orientations": [np.eye(2).tolist()] * 2,
            },
        }
        data.update(changes)
        return json.dumps(data)

    return make


def weighted(values):
    return lambda base: add_column(base.csv, "w", values)


def ones_except(row: int, value: str, n: int = 40) -> list[str]:
    """Weights 1 with ``value`` at 1-based ``row``."""
    return ["1"] * (row - 1) + [value] + ["1"] * (n - row)


def parquet_of_csv(base) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa_csv.read_csv(io.BytesIO(base.csv.encode())), sink)
    return sink.getvalue()


def truncated_parquet(base) -> bytes:
    data = parquet_of_csv(base)
    return data[: len(data) // 2]


def corrupt_page_parquet(base) -> bytes:
    """A Parquet file whose footer reads but whose first data page fails its checksum."""
    sink = io.BytesIO()
    table = pa_csv.read_csv(io.BytesIO(base.csv.encode()))
    pq.write_table(table, sink, write_page_checksum=True, compression="none")
    data = bytearray(sink.getvalue())
    data[60:70] = bytes(b ^ 0x55 for b in data[60:70])
    return bytes(data)


def empty_parquet(base) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa_csv.read_csv(io.BytesIO(base.csv.encode())).slice(0, 0), sink)
    return sink.getvalue()


def zero_weights_parquet(base) -> bytes:
    table = pa_csv.read_csv(io.BytesIO(base.csv.encode()))
    sink = io.BytesIO()
    pq.write_table(table.append_column("w", pa.array([0.0] * table.num_rows)), sink)
    return sink.getvalue()


def huge_values(base) -> str:
    """base.csv's features times 1e300: finite, but their squares pass float64's range."""
    table = pa_csv.read_csv(io.BytesIO(base.csv.encode()))
    rows = zip(table["x0"].to_pylist(), table["x1"].to_pylist(), strict=True)
    return "x0,x1\n" + "".join(f"{a * 1e300!r},{b * 1e300!r}\n" for a, b in rows)


def duplicate_rows(base) -> str:
    return "a,b\n" + "1.5,2\n" * 20 + "3,-1\n" * 20


def latin_note(base) -> bytes:
    """base.csv with a column of text in Latin-1, not UTF-8."""
    return add_column(base.csv, "note", ["\xe9"] * base.n_rows).encode("latin-1")


def case(id, command, *names, files=None, input=None, marks=()):
    """A bad input: the command, the words its error must contain, the files it needs."""
    return pytest.param(command, names, files or {}, input, id=id, marks=marks)


BAD_INPUTS = [
    case("missing-file", "fit nope.csv -k 2 -o out.json", "'nope.csv'"),
    case(
        "unreadable-file-is-a-folder",
        "fit folder.csv -k 2 -o out.json",
        "'folder.csv'",
        files={"folder.csv": DIRECTORY},
    ),
    case(
        "unknown-extension",
        "fit data.xyz -k 2 -o out.json",
        "'data.xyz'",
        "--format",
        files={"data.xyz": lambda b: b.csv},
    ),
    case(
        "unknown-output-extension",
        "classify data.csv --model model.json -o out.xyz",
        "'out.xyz'",
        "--output-format",
    ),
    case("empty-file", "fit empty.csv -k 2 -o out.json", "'empty.csv'", files={"empty.csv": ""}),
    case("empty-stdin", "fit - -k 2 -o out.json", "stdin has no data rows", input=b""),
    *(
        case(f"empty-stdin-{command.split()[0]}", command, "stdin has no data rows", input=b"")
        for command in [
            "select-k - --k-max 2 -o out.json",
            "classify - --model model.json -o out.csv",
            "score - --model model.json",
            f"fit - -k 2 {STREAMED} -o out.json",
        ]
    ),
    case(  # the spooled stdin's file was named
        "corrupt-parquet-on-stdin-streamed",
        f"fit - -k 2 --format parquet {STREAMED} -o out.json",
        "cannot read stdin: ",
        input=corrupt_page_parquet,
    ),
    case(
        "folder-to-the-local-engine",
        "fit parts -k 2 -o out.json",
        "'parts' is a folder, and the local engine reads one file",
        "--engine dask",
        files={"parts": DIRECTORY},
    ),
    case(  # it was "not a valid Parquet file (truncated?)"
        "folder-read-as-parquet",
        "classify parts/ --model model.json --format parquet -o out.csv",
        "'parts/' is a folder, and the local engine reads one file",
        "--engine dask",
        files={"parts": DIRECTORY},
    ),
    case(
        "glob-to-the-local-engine",
        "score 'parts/*.parquet' --model model.json",
        "'parts/*.parquet' is a glob, and the local engine reads one file",
        "--engine dask",
        files={"parts": DIRECTORY, "parts/a.parquet": parquet_of_csv},
    ),
    case(
        "header-only",
        "fit header.csv -k 2 -o out.json",
        "'header.csv'",
        files={"header.csv": '"x0","x1","true_component"\n'},
    ),
    case(
        "non-numeric-value",
        "fit typo.csv -k 2 --columns x0,x1 -o out.json",
        "'x1'",
        "row 7",
        "'abc'",
        files={"typo.csv": lambda b: set_cell(b.csv, 7, "x1", "abc")},
    ),
    *(
        case(
            f"non-numeric-value-streamed-{command}",
            f"{command} typo.csv --model model.json {STREAMED}{output}",
            "column 'x1' in typo.csv is not numeric: row 33 has 'abc'",
            files={"typo.csv": lambda b: set_cell(b.csv, 33, "x1", "abc")},
        )
        for command, output in [("classify", " -o out.csv"), ("score", "")]
    ),
    case(  # it said "singular ... increase --reg-covar"
        "squares-overflow",
        "fit huge.csv -k 2 --reg-covar 1 -o out.json",
        "the data's sums of squares overflow float64",
        "rescale the data",
        "a larger --reg-covar does not help",
        files={"huge.csv": huge_values},
    ),
    case(
        "nan-in-feature",
        "fit holes.csv -k 2 -o out.json",
        "'x0'",
        "row 5",
        "--missing",
        files={"holes.csv": lambda b: set_cell(b.csv, 5, "x0", "NaN")},
    ),
    case(
        "empty-cell-in-feature",
        "fit holes.csv -k 2 -o out.json",
        "'x1'",
        "row 12",
        files={"holes.csv": lambda b: set_cell(b.csv, 12, "x1", "")},
    ),
    case(
        "inf-in-feature",
        "fit holes.csv -k 2 -o out.json",
        "'x1'",
        "row 5",
        files={"holes.csv": lambda b: set_cell(b.csv, 5, "x1", "inf")},
    ),
    case(
        "minus-inf-in-feature",
        "fit holes.csv -k 2 -o out.json",
        "'x0'",
        "row 40",
        files={"holes.csv": lambda b: set_cell(b.csv, 40, "x0", "-inf")},
    ),
    case(
        "missing-value-in-classify",
        "classify holes.csv --model model.json -o out.csv",
        "'x0'",
        "row 5",
        "--missing",
        files={"holes.csv": lambda b: set_cell(b.csv, 5, "x0", "")},
    ),
    case("columns-names-missing-column", "fit data.csv -k 2 --columns x0,zz -o out.json", "'zz'"),
    case("exclude-names-missing-column", "fit data.csv -k 2 --exclude zz -o out.json", "'zz'"),
    case("weight-column-missing", "fit data.csv -k 2 --weight-column ww -o out.json", "'ww'"),
    case(
        "weight-column-missing-in-score",
        "score data.csv --model model.json --weight-column ww --per-sample out.csv",
        "'ww'",
    ),
    case(
        "negative-weight",
        "fit w.csv -k 2 --weight-column w -o out.json",
        "'w'",
        "row 4",
        files={"w.csv": weighted(ones_except(4, "-1"))},
    ),
    case(
        "nan-weight",
        "fit w.csv -k 2 --weight-column w -o out.json",
        "weight",
        "row 4",
        files={"w.csv": weighted(ones_except(4, "NaN"))},
    ),
    case(
        "infinite-weight",
        "fit w.csv -k 2 --weight-column w -o out.json",
        "'w'",
        "row 4",
        files={"w.csv": weighted(ones_except(4, "inf"))},
    ),
    case(
        "all-weights-zero",
        "fit w.csv -k 2 --weight-column w -o out.json",
        "'w'",
        files={"w.csv": weighted(["0"] * 40)},
    ),
    case(
        "all-weights-zero-in-score",
        "score w.csv --model model.json --weight-column w --per-sample out.csv",
        "'w'",
        files={"w.csv": weighted(["0"] * 40)},
    ),
    case("k-below-1", "fit data.csv -k 0 -o out.json", "got 0"),
    case(
        "hc-rows-zero", "fit data.csv -k 2 --init hc --hc-rows 0 -o out.json", "--hc-rows", "got 0"
    ),
    case("hc-rows-negative", "fit data.csv -k 2 --hc-rows -5 -o out.json", "--hc-rows", "got -5"),
    case("hc-rows-not-an-integer", "fit data.csv -k 2 --hc-rows 2.5 -o out.json", "--hc-rows"),
    case(
        "hc-rows-below-k",
        "fit data.csv -k 3 --init hc --hc-rows 2 -o out.json",
        "--hc-rows",
        "K (3)",
    ),
    case(
        "select-k-hc-rows-zero", "select-k data.csv --hc-rows 0 -o out.json", "--hc-rows", "got 0"
    ),
    case(
        "select-k-hc-rows-below-k",
        "select-k data.csv --k-max 4 --hc-rows 3 -o out.json",
        "--hc-rows",
        "K (4)",
    ),
    case(
        "k-above-rows-with-positive-weight",
        "fit w.csv -k 3 --weight-column w -o out.json",
        "2 rows with positive weight",
        files={"w.csv": weighted(["0"] * 38 + ["1", "2"])},
    ),
    case(
        "covariance-stays-singular",
        "fit dup.csv -k 2 --reg-covar 0 -o out.json",
        "--reg-covar",
        files={"dup.csv": duplicate_rows},
    ),
    case(
        "model-file-missing",
        "classify data.csv --model nomodel.json -o out.csv",
        "'nomodel.json'",
    ),
    case(
        "model-file-not-json",
        "classify data.csv --model bad.json -o out.csv",
        "'bad.json'",
        "JSON",
        files={"bad.json": '{"format": "gmmcli-model", '},
    ),
    case(
        "model-file-of-another-format",
        "score data.csv --model other.json --per-sample out.csv",
        "'other.json'",
        "format",
        files={"other.json": model_with(format="sklearn-pickle")},
    ),
    case(
        "model-file-of-another-version",
        "classify data.csv --model v3.json -o out.csv",
        "'v3.json'",
        "version 3",
        files={"v3.json": model_with(version=3)},
    ),
    case(
        "model-file-of-the-other-version",
        "classify data.csv --model v2.json -o out.csv",
        "'v2.json'",
        "version 2, which has no full models",
        files={"v2.json": model_with(version=2)},
    ),
    case(
        "model-file-v2-unknown-key",
        "score data.csv --model vev.json",
        "'vev.json'",
        "has key 'covariances', unknown to format version 2",
        files={"vev.json": vev_model_with(covariances=[])},
    ),
    case(
        "model-file-v2-shape-product",
        "classify data.csv --model vev.json -o out.csv",
        "'vev.json'",
        "the shape has product 1.5, not 1",
        files={"vev.json": vev_model_with(shape=[3.0, 0.5])},
    ),
    case(
        "model-file-invalid",
        "classify data.csv --model invalid.json -o out.csv",
        "'invalid.json'",
        "weights",
        files={"invalid.json": model_with(weights=[0.5, 0.7])},
    ),
    case(
        "init-model-invalid",
        "fit data.csv --init-model invalid.json -o out.json",
        "'invalid.json'",
        files={"invalid.json": model_with(means=[[0.0, 1.0]])},
    ),
    case(
        "init-model-with-other-k",
        "fit data.csv --init-model model.json -k 3 -o out.json",
        "-k",
    ),
    case(
        "data-lacks-model-features",
        "classify narrow.csv --model model.json -o out.csv",
        "'x1'",
        "narrow.csv",
        files={"narrow.csv": "x0,true_component\n1.0,0\n2.0,1\n"},
    ),
    case(
        "data-lacks-model-features-in-score",
        "score narrow.csv --model model.json --per-sample out.csv",
        "'x1'",
        files={"narrow.csv": "x0,true_component\n1.0,0\n2.0,1\n"},
    ),
    case("output-folder-missing-fit", "fit data.csv -k 2 -o nodir/m.json", "'nodir'"),
    case(
        "output-folder-missing-classify",
        "classify data.csv --model model.json -o nodir/out.csv",
        "'nodir'",
    ),
    case("output-folder-missing-generate", "generate -n 10 -o nodir/data.csv", "'nodir'"),
    case(
        "output-folder-missing-score",
        "score data.csv --model model.json --per-sample nodir/s.csv",
        "'nodir'",
    ),
    case(
        "empty-parquet",
        "fit empty.parquet -k 2 -o out.json",
        "'empty.parquet' has no data rows",
        files={"empty.parquet": empty_parquet},
    ),
    case(
        "parquet-weights-all-zero",
        "fit zero.parquet -k 2 --weight-column w -o out.json",
        "weight column 'w' in zero.parquet has no positive weight",
        files={"zero.parquet": zero_weights_parquet},
    ),
    case(
        "truncated-parquet",
        "fit cut.parquet -k 2 -o out.json",
        "'cut.parquet'",
        files={"cut.parquet": truncated_parquet},
    ),
    case(
        "parquet-on-stdin-without-format",
        "fit - -k 2 -o out.json",
        "stdin",
        "--format",
        input=b"PAR1 not really parquet PAR1",
    ),
    case("bad-seed", "fit data.csv -k 2 --seed abc -o out.json", "--seed"),
    # Header names: one line whatever the columns' types (a text column among repeated
    # names once crashed with pyarrow's KeyError), from a file, streamed or stdin.
    *(
        case(
            f"repeated-name-{how}",
            f"fit {source} -k 1 {extra} -o out.json",
            "more than one column named 'x1'",
            files={"dup.csv": "x1,x0,x1,p_0\n1,2,3,--\n4,5,6,7\n"},
            input=b"x1,x0,x1,p_0\n1,2,3,--\n4,5,6,7\n",
        )
        for how, source, extra in [
            ("file", "dup.csv", ""),
            ("streamed", "dup.csv", STREAMED),
            ("stdin", "-", ""),
        ]
    ),
    case(
        "repeated-name-in-classify-from-stdin",
        "classify - --model model.json -o out.csv",
        "more than one column named 'x0', 'x1'",
        input=b"x0,x1,x0,x1\n1,2,3,--\n",
    ),
    case(
        "repeated-name-once-trimmed",
        "fit spaced.csv -k 1 --columns x0 -o out.json",
        "'spaced.csv' has more than one column named 'x0'",
        files={"spaced.csv": "x0, x0 ,x1\n1,2,3\n4,5,6\n"},
    ),
    case(
        "repeated-name-in-parquet",
        "classify dup.parquet --model model.json -o out.csv",
        "'dup.parquet' has more than one column named 'x0'",
        files={"dup.parquet": lambda b: repeated_parquet()},
    ),
    # Bytes that are not UTF-8 (found by tests/test_fuzz.py: pyarrow's UnicodeDecodeError
    # and its CSV writer's "Invalid UTF8 payload" were tracebacks).
    *(
        case(
            f"name-not-utf8-{how}",
            f"fit {source} -k 1 {extra} -o out.json",
            f"{name} has a column name that is not UTF-8 text",
            files={"latin.csv": b"x0,\xe9\n1,2\n3,4\n"},
            input=b"x0,\xe9\n1,2\n3,4\n",
        )
        for how, source, extra, name in [
            ("file", "latin.csv", "", "'latin.csv'"),
            ("streamed", "latin.csv", STREAMED, "'latin.csv'"),
            ("stdin", "-", "", "stdin"),
        ]
    ),
    *(
        case(
            f"value-not-utf8-to-csv-{how}",
            f"classify latin.csv --model model.json {extra} -o out.csv",
            "cannot write the output as CSV",
            "write Parquet instead",
            files={"latin.csv": latin_note},
        )
        for how, extra in [("file", ""), ("streamed", STREAMED)]
    ),
    case(  # found by tests/test_fuzz.py: the message took two lines
        "name-with-a-line-break",
        "classify broken.csv --model model.json -o out.csv",
        "column 'x0' not found in broken.csv; available columns: x\\n0, x1",
        files={"broken.csv": '"x\n0",x1\n1,2\n'},
    ),
    case(
        "empty-name",
        "fit blank.csv -k 1 -o out.json",
        "column 3 of 'blank.csv' has no name",
        files={"blank.csv": "x0,x1,,x2\n1,2,3,4\n5,6,7,8\n"},
    ),
    case(
        "empty-name-streamed",
        f"fit blank.csv -k 1 {STREAMED} -o out.json",
        "column 2 of 'blank.csv' has no name",
        files={"blank.csv": "x0, ,x2\n1,2,3\n5,6,7\n"},
    ),
]


def repeated_parquet() -> bytes:
    sink = io.BytesIO()
    columns = [pa.array([1.0, 2.0]), pa.array([3.0, 4.0])]
    pq.write_table(pa.Table.from_arrays(columns, names=["x0", "x0"]), sink)
    return sink.getvalue()


@pytest.mark.parametrize(("command", "names", "extra_files", "stdin"), BAD_INPUTS)
def test_bad_input(files, command, names, extra_files, stdin):
    for path, content in extra_files.items():
        if content is DIRECTORY:
            Path(path).mkdir()
            continue
        content = content(files) if callable(content) else content
        if isinstance(content, str):
            Path(path).write_text(content)
        else:
            Path(path).write_bytes(content)
    # Existing outputs must survive a failed command untouched.
    Path("out.json").write_text("old model\n")
    Path("out.csv").write_text("old,table\n")
    before = snapshot()

    result = gmm(command, input=stdin(files) if callable(stdin) else stdin)
    error = error_line(result)
    for name in names:
        assert name in error, (name, error)
    assert result.stdout == ""
    assert snapshot() == before


@pytest.mark.parametrize(
    "command", ["select-k parts --k-max 2 -o out.json", "plot parts -o out.png"]
)
def test_a_folder_to_a_command_without_the_dask_engine_is_refused_without_naming_it(files, command):
    Path("parts").mkdir()
    error = error_line(gmm(command))
    assert error.endswith("'parts' is a folder, and the local engine reads one file: give a file")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a chmod 000 file anyway")
def test_bad_input_unreadable_file(files):
    Path("secret.csv").write_text(files.csv)
    Path("secret.csv").chmod(0)
    before = snapshot()
    error = error_line(gmm("fit secret.csv -k 2 -o out.json"))
    assert "'secret.csv'" in error
    assert snapshot() == before


def test_unwritable_output_folder_is_a_user_error(files, monkeypatch):
    make = os.open

    def refuse(path, flags, *args):  # the temporary file, made with O_EXCL
        if flags & os.O_EXCL:
            raise PermissionError(13, "Permission denied")
        return make(path, flags, *args)

    monkeypatch.setattr(os, "open", refuse)
    assert "Permission denied" in error_line(gmm("fit data.csv -k 2 -o out.json"))


# --- messages are plain text, not markup ------------------------------------------------


@pytest.mark.parametrize("name", ["data[/x].csv", "data[x].csv"])
def test_error_message_shows_paths_with_brackets_verbatim(name):
    error = error_line(gmm(["fit", name, "-k", "2"]))
    assert f"'{name}'" in error


def test_column_names_with_brackets_are_shown_verbatim():
    Path("odd.csv").write_text("a,[/b]\n1,2\n3,5\n4,4\n6,1\n")
    result = ok(gmm("fit odd.csv -k 1 -o m.json"))
    assert "features: a, [/b]" in result.stderr


# --- usage errors and help -----------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "names"),
    [
        ("fit data.csv -k 2 --no-such-option", ["--no-such-option", "gmmcli fit --help"]),
        ("fit", ["Missing argument", "data"]),
        ("classify data.csv", ["--model"]),
        ("fit data.csv -k two", ["-k", "integer"]),
        ("fit data.csv -k 2 --covariance-type banded", ["banded"]),
        ("no-such-command", ["no-such-command"]),
    ],
)
def test_usage_errors_are_one_plain_line(files, command, names):
    before = snapshot()
    error = error_line(gmm(command))
    for name in names:
        assert name in error, (name, error)
    assert not any(c in error for c in "╭╰│"), "no box"
    assert snapshot() == before


@pytest.mark.parametrize(
    ("command", "flag"),
    [
        ("fit nowhere.csv -k 2 --tol -1", "--tol"),
        ("fit nowhere.csv -k 0", "-k"),
        ("fit nowhere.csv -k 2 --n-init 0", "--n-init"),
        ("select-k nowhere.csv --covariance-types full,banded", "--covariance-types"),
        ("select-k nowhere.csv --criterion cv --cv-folds 1", "--cv-folds"),
        ("fit nowhere.csv -k 2 --scheduler local:2", "--scheduler"),
        ("generate -n 0", "-n"),
        ("fit nowhere.csv -k 2 --memory-limit lots", "--memory-limit"),
    ],
)
def test_options_are_checked_before_the_data_and_named_by_their_flag(command, flag):
    """nowhere.csv does not exist: the option's error comes first, naming the flag."""
    error = error_line(gmm(command))
    assert error.startswith(f"error: {flag} "), error
    assert "nowhere.csv" not in error
    assert "None" not in error and "_" not in error.split(",")[0]  # said as flags say it


def test_fit_help_reads_in_panels_within_80_columns(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("TERMINAL_WIDTH", "80")
    result = ok(gmm("fit --help"))
    for panel in ("Model", "Input", "Scale-out", "Output"):
        assert f"─ {panel} ─" in result.stdout, panel
    assert max(len(line) for line in result.stdout.splitlines()) <= 80


def help_at_80_columns(monkeypatch, *command: str) -> str:
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("TERMINAL_WIDTH", "80")
    return ok(gmm([*command, "--help"])).stdout


@pytest.mark.parametrize("command", ["", *COMMANDS])
def test_help_fits_80_columns_and_names_no_bare_types(monkeypatch, command):
    """No <str> or <bool>: a flag shows nothing, an option what its value is (<file>)."""
    text = help_at_80_columns(monkeypatch, *command.split())
    assert max(len(line) for line in text.splitlines()) <= 80
    for noise in ("<str>", "<bool>", "<text>", "range>"):
        assert noise not in text, noise


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_every_choice_whole(monkeypatch, command):
    """Choice lists do not break inside a word (--init's seven lay in a column of 23)."""
    callback = typer.main.get_command(app).commands[command].callback
    enums = [t for t in typing.get_type_hints(callback).values() if isinstance(t, EnumMeta)]
    words = set(help_at_80_columns(monkeypatch, command).replace("|", " ").split())
    for enum in enums:
        for choice in enum:
            assert {
                choice.value,
                f"<{choice.value}",
                f"{choice.value}>",
                f"{choice.value},",
            } & words, choice


def test_the_top_level_help_names_every_command(monkeypatch):
    text = help_at_80_columns(monkeypatch)
    description = " ".join(text.split("╭")[0].split("Usage:")[1].splitlines()[1:])
    for command in COMMANDS:
        assert command in description.replace(",", " ").replace(".", " ").split(), command


def test_no_arguments_show_the_help_and_no_empty_error():
    result = gmm([])
    assert result.exit_code == 2
    assert "Usage" in result.stdout
    assert "error:" not in result.stderr


def test_select_k_statuses_name_flags(files):
    Path("dup.csv").write_text(duplicate_rows(None))
    result = gmm("select-k dup.csv --k-max 2 --covariance-types full --reg-covar 0 --table g.csv")
    error = error_line(result)
    assert "increase --reg-covar" in error
    statuses = pa_csv.read_csv("g.csv")["status"].to_pylist()  # kept as points finish
    assert len(statuses) == 2 and all("increase --reg-covar" in status for status in statuses)


@pytest.mark.parametrize(
    ("command", "words"),
    [
        ("fit data.csv -o out.json", ["give the number of components with -k (or --init-model)"]),
        ("fit data.csv --init-model model.json -k 3 -o out.json", ["-k and --covariance-type"]),
        (
            "fit data.csv --init-model model.json --covariance-type diag -o out.json",
            ["--init-model has 2 full components"],
        ),
        (
            "fit data.csv --init-model model.json --columns x1,x0 -o out.json",
            ["--init-model was fitted on x0, x1"],
        ),
    ],
)
def test_start_model_mismatches_name_the_flags(files, command, words):
    error = error_line(gmm(command))
    for word in words:
        assert word in error, error
