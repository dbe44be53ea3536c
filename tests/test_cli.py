"""End-to-end tests of the command line, in process through Typer's CliRunner.

Every test runs in its own empty folder (tmp_path is the current directory), so messages
show the short relative paths a user would type. CliRunner keeps stdout and stderr apart:
stdout must carry data only. Real processes and shell pipes are in test_cli_pipes.py.
"""

from __future__ import annotations

import io
import json
import math
import os
import shlex
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
import typer
from cli_helpers import error_line, gmm, ok, runner, snapshot

from gmmcli.cli import app

SCORE_KEYS = {"n_samples", "total_weight", "log_likelihood", "mean_log_likelihood", "bic", "aic"}


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


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def base():
    """Seeded data and models as text, made once by the CLI itself.

    csv: 40 rows, 2 well-separated components (x0, x1, true_component); model: a 2-component
    fit of it; blobs: 300 rows of 3 components; blobs_model: a 3-component fit of blobs.
    """
    csv = ok(gmm("generate -k 2 -n 40 --seed 3 --separation 6 -q")).stdout
    blobs = ok(gmm("generate -k 3 -n 300 --seed 1 -q")).stdout
    return SimpleNamespace(
        csv=csv,
        model=ok(gmm("fit - -k 2 -q -o -", input=csv)).stdout,
        blobs=blobs,
        blobs_model=ok(gmm("fit - -k 3 -q -o -", input=blobs)).stdout,
        n_rows=40,
    )


@pytest.fixture
def files(base):
    """data.csv and model.json (2 components), blobs.csv and blobs.json (3 components)."""
    Path("data.csv").write_text(base.csv)
    Path("model.json").write_text(base.model)
    Path("blobs.csv").write_text(base.blobs)
    Path("blobs.json").write_text(base.blobs_model)
    return base


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
    assert "Covariance structure [default: full]" in help_text
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


# --- stdout carries data, stderr the rest --------------------------------------------------


def test_fit_to_stdout_prints_only_the_model(files):
    result = ok(gmm("fit blobs.csv -k 3 -o -"))
    model = json.loads(result.stdout)
    assert model["format"] == "gmmcli-model"
    assert model["feature_names"] == ["x0", "x1"]
    assert "features: x0, x1 (300 rows)" in result.stderr
    for word in ("log-likelihood", "BIC", "iterations", "converged", "degenerate"):
        assert word in result.stderr
    ok(gmm("fit blobs.csv -k 3 -o model_file.json"))
    assert Path("model_file.json").read_bytes() == result.stdout_bytes


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


def test_classify_says_which_columns_it_used(files):
    result = ok(gmm("classify blobs.csv --model blobs.json -o out.csv"))
    assert result.stdout == ""
    assert "features: x0, x1" in result.stderr


def test_score_prints_one_json_object(files):
    result = ok(gmm("score blobs.csv --model blobs.json"))
    assert result.stdout.count("\n") == 1
    scores = json.loads(result.stdout)
    assert set(scores) == SCORE_KEYS
    assert scores["n_samples"] == 300
    assert scores["total_weight"] == 300
    assert scores["mean_log_likelihood"] == pytest.approx(scores["log_likelihood"] / 300)
    # Scored on its training data, the model's record and the score agree.
    training = json.loads(files.blobs_model)["training"]
    assert scores["log_likelihood"] == pytest.approx(training["log_likelihood"], rel=1e-12)
    assert scores["bic"] == pytest.approx(training["bic"], rel=1e-12)
    n_parameters = training["n_parameters"]
    assert scores["bic"] - scores["aic"] == pytest.approx(n_parameters * (math.log(300) - 2))


def test_score_per_sample_writes_log_likelihoods(files):
    result = ok(gmm("score blobs.csv --model blobs.json -q --per-sample scores.parquet"))
    table = pq.read_table("scores.parquet")
    assert table.column_names == ["x0", "x1", "true_component", "log_likelihood"]
    total = float(np.sum(table["log_likelihood"].to_numpy()))
    assert total == pytest.approx(json.loads(result.stdout)["log_likelihood"], rel=1e-12)


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


def test_seed_random_is_recorded_and_reproduces_the_model(files):
    ok(gmm("fit blobs.csv -k 3 --init random --seed random -q -o r1.json"))
    ok(gmm("fit blobs.csv -k 3 --init random --seed random -q -o r2.json"))
    seed = json.loads(Path("r1.json").read_text())["training"]["seed"]
    assert isinstance(seed, int)
    assert seed != json.loads(Path("r2.json").read_text())["training"]["seed"]
    ok(gmm(f"fit blobs.csv -k 3 --init random --seed {seed} -q -o again.json"))
    assert Path("again.json").read_bytes() == Path("r1.json").read_bytes()


def test_init_sample_seeds_on_a_sample_only_below_the_row_count(files):
    def first_log_likelihood(size: int) -> float:
        model = ok(gmm(f"fit blobs.csv -k 3 --init kmeans++ --max-iter 1 --init-sample {size} -q"))
        return json.loads(model.stdout)["training"]["history"][0]

    assert first_log_likelihood(0) == first_log_likelihood(300)  # 300 rows: no sample
    assert first_log_likelihood(0) != first_log_likelihood(30)


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


def test_output_format_by_extension_and_option(files):
    expected = ok(gmm("classify blobs.csv --model blobs.json -q")).stdout_bytes
    table = pa_csv.read_csv(io.BytesIO(expected))
    ok(gmm("classify blobs.csv --model blobs.json -q -o out.parquet"))
    assert pq.read_table("out.parquet").equals(table)
    ok(gmm("classify blobs.csv --model blobs.json -q -o out.tsv"))
    tsv = Path("out.tsv").read_text()
    assert tsv == expected.decode().replace(",", "\t")
    ok(gmm("classify blobs.csv --model blobs.json -q -o out.data --output-format parquet"))
    assert pq.read_table("out.data").equals(table)
    result = ok(gmm("classify blobs.csv --model blobs.json -q --output-format parquet"))
    assert pq.read_table(io.BytesIO(result.stdout_bytes)).equals(table)


def test_generate_writes_parquet_row_groups_of_at_most_128k_rows():
    ok(gmm("generate -k 1 -d 1 -n 300000 --no-labels -q -o big.parquet"))
    metadata = pq.ParquetFile("big.parquet").metadata
    sizes = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
    assert sum(sizes) == 300000
    assert max(sizes) <= 131072
    assert len(sizes) == 3


# --- columns ----------------------------------------------------------------------------


def test_default_columns_skip_weights_and_gmmcli_outputs(files):
    rng = np.random.default_rng(0)
    n = 60
    table = pa.table(
        {
            "a": rng.normal(size=n),
            "name": [f"row{i}" for i in range(n)],  # not numeric: never a feature
            "w": rng.integers(1, 4, n),
            "true_component": rng.integers(0, 2, n),
            "component": rng.integers(0, 2, n),
            "p_0": rng.uniform(size=n),
            "p_12": rng.uniform(size=n),
            "log_likelihood": rng.normal(size=n),
            "p_x": rng.normal(size=n),  # not p_<digits>: a feature
            "b": rng.integers(0, 100, n),  # integers are numeric features too
        }
    )
    pq.write_table(table, "mixed.parquet")
    result = ok(gmm("fit mixed.parquet -k 1 --weight-column w -o m.json"))
    assert json.loads(Path("m.json").read_text())["feature_names"] == ["a", "p_x", "b"]
    assert "features: a, p_x, b (60 rows, weights from 'w')" in result.stderr


def test_classify_output_feeds_back_into_fit(files):
    ok(gmm("classify blobs.csv --model blobs.json -q -o labelled.csv"))
    ok(gmm("score blobs.csv --model blobs.json -q --per-sample scored.csv"))
    for name in ("labelled.csv", "scored.csv"):
        ok(gmm(f"fit {name} -k 3 -q -o {name}.json"))
        assert Path(f"{name}.json").read_bytes() == files.blobs_model.encode(), name


def test_columns_and_exclude_choose_the_features(files):
    Path("wide.csv").write_text(add_column(files.blobs, "extra", range(300)))
    ok(gmm("fit wide.csv -k 2 --columns x1,x0 -q -o picked.json"))
    assert json.loads(Path("picked.json").read_text())["feature_names"] == ["x1", "x0"]
    ok(gmm("fit wide.csv -k 2 --columns 'x0, extra' -q -o spaced.json"))
    assert json.loads(Path("spaced.json").read_text())["feature_names"] == ["x0", "extra"]
    ok(gmm("fit wide.csv -k 2 --exclude extra,x1 -q -o excluded.json"))
    assert json.loads(Path("excluded.json").read_text())["feature_names"] == ["x0"]
    # true_component is skipped by default, but may be chosen by name.
    ok(gmm("fit wide.csv -k 2 --columns x0,true_component -q -o named.json"))
    names = json.loads(Path("named.json").read_text())["feature_names"]
    assert names == ["x0", "true_component"]


def test_classify_takes_the_model_columns_by_name(files):
    """A model fitted on Parquet labels a CSV with shuffled columns the same way."""
    table = read_csv("blobs.csv")
    pq.write_table(table, "blobs.parquet")
    ok(gmm("fit blobs.parquet -k 3 -q -o pq.json"))
    ok(gmm("classify blobs.parquet --model pq.json -q --only-new-columns -o expected.csv"))
    shuffled = table.select(["true_component", "x1", "x0"]).append_column(
        "noise", pa.array(np.arange(300.0))
    )
    pa_csv.write_csv(shuffled, "shuffled.csv")
    result = ok(gmm("classify shuffled.csv --model pq.json -o labelled.csv"))
    assert "features: x0, x1" in result.stderr
    labelled = read_csv("labelled.csv")
    assert labelled.column_names == ["true_component", "x1", "x0", "noise", "component"] + [
        f"p_{k}" for k in range(3)
    ]
    expected = read_csv("expected.csv")
    assert labelled["component"].equals(expected["component"])
    np.testing.assert_array_equal(labelled["p_1"].to_numpy(), expected["p_1"].to_numpy())


def test_classify_replaces_its_own_columns_and_keeps_the_truth(files):
    ok(gmm("classify blobs.csv --model blobs.json -q -o once.csv"))
    ok(gmm("fit blobs.csv -k 2 -q -o two.json"))
    result = ok(gmm("classify once.csv --model two.json -o twice.csv"))
    assert "replacing the existing columns component, p_0, p_1, p_2" in result.stderr
    twice = read_csv("twice.csv")
    assert twice.column_names == ["x0", "x1", "true_component", "component", "p_0", "p_1"]
    assert twice["true_component"].equals(read_csv("blobs.csv")["true_component"])
    p = np.column_stack([twice["p_0"].to_numpy(), twice["p_1"].to_numpy()])
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(twice["component"].to_numpy(), p.argmax(axis=1))


def test_only_new_columns_and_no_probabilities(files):
    result = ok(gmm("classify blobs.csv --model blobs.json -q --only-new-columns"))
    table = read_stdout_csv(result)
    assert table.column_names == ["component", "p_0", "p_1", "p_2"]
    assert table.num_rows == 300
    result = ok(gmm("classify blobs.csv --model blobs.json -q --no-probabilities"))
    assert read_stdout_csv(result).column_names == ["x0", "x1", "true_component", "component"]
    result = ok(
        gmm("classify blobs.csv --model blobs.json -q --no-probabilities --only-new-columns")
    )
    labels = read_stdout_csv(result)
    assert labels.column_names == ["component"]
    assert set(labels["component"].to_pylist()) == {0, 1, 2}


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


def test_generate_adds_integer_weights():
    ok(gmm("generate -k 2 -n 500 --weight-column count -q -o weighted.parquet"))
    table = pq.read_table("weighted.parquet")
    assert table.column_names == ["x0", "x1", "true_component", "count"]
    assert pa.types.is_integer(table.schema.field("count").type)
    counts = table["count"].to_numpy()
    assert counts.min() >= 1
    ok(gmm("fit weighted.parquet -k 2 --weight-column count -q -o m.json"))
    training = json.loads(Path("m.json").read_text())["training"]
    assert training["total_weight"] == counts.sum()


# --- --init-model, --strict ---------------------------------------------------------------


def test_init_model_refines_a_saved_model(files):
    ok(gmm("fit blobs.csv -k 3 --max-iter 1 --tol 1e-12 -q -o rough.json"))
    result = ok(gmm("fit blobs.csv --init-model rough.json -o refined.json"))
    rough = json.loads(Path("rough.json").read_text())
    refined = json.loads(Path("refined.json").read_text())
    assert refined["n_components"] == 3
    assert refined["covariance_type"] == rough["covariance_type"]
    assert refined["feature_names"] == rough["feature_names"]
    assert refined["training"]["init"] == "explicit"
    # EM from the saved parameters: its first likelihood is the saved model's, then it rises.
    history = refined["training"]["history"]
    assert history[0] == pytest.approx(rough["training"]["mean_log_likelihood"], rel=1e-12)
    assert refined["training"]["log_likelihood"] >= rough["training"]["log_likelihood"]
    assert "features: x0, x1" in result.stderr


def test_strict_fit_that_does_not_converge_exits_3_and_writes_nothing(files):
    command = "fit blobs.csv -k 3 --max-iter 1 --tol 1e-12 -o m.json"
    Path("m.json").write_text("old\n")
    result = gmm(f"{command} --strict")
    error = error_line(result, code=3)
    assert "--strict" in error
    assert result.stdout == ""
    assert Path("m.json").read_text() == "old\n"

    result = ok(gmm(command))
    assert "warning:" in result.stderr
    assert "did not converge" in result.stderr
    assert json.loads(Path("m.json").read_text())["training"]["converged"] is False


# --- missing values -----------------------------------------------------------------------


def missing_rows_csv(base) -> str:
    """blobs with x0 empty in row 3, x1 = inf in row 6 and x1 = NaN in row 10."""
    text = set_cell(base.blobs, 3, "x0", "")
    text = set_cell(text, 6, "x1", "inf")
    return set_cell(text, 10, "x1", "NaN")


def test_fit_drop_missing_reports_the_dropped_rows(files):
    Path("holes.csv").write_text(missing_rows_csv(files))
    result = ok(gmm("fit holes.csv -k 3 --drop-missing -o m.json"))
    assert "dropped 3 rows" in result.stderr
    assert json.loads(Path("m.json").read_text())["training"]["n_samples"] == 297


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


# --- bad input: exit 2, one line naming what and where, nothing written --------------------

DIRECTORY = object()  # in a case's files: make a folder at that path


def model_with(**changes):
    def make(base) -> str:
        data = json.loads(base.model)
        data.update(changes)
        return json.dumps(data)

    return make


def weighted(values):
    return lambda base: add_column(base.csv, "w", values)


def ones_except(row: int, value: str, n: int = 40) -> list[str]:
    """Weights 1 with ``value`` at 1-based ``row``."""
    return ["1"] * (row - 1) + [value] + ["1"] * (n - row)


def truncated_parquet(base) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa_csv.read_csv(io.BytesIO(base.csv.encode())), sink)
    data = sink.getvalue()
    return data[: len(data) // 2]


def empty_parquet(base) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa_csv.read_csv(io.BytesIO(base.csv.encode())).slice(0, 0), sink)
    return sink.getvalue()


def zero_weights_parquet(base) -> bytes:
    table = pa_csv.read_csv(io.BytesIO(base.csv.encode()))
    sink = io.BytesIO()
    pq.write_table(table.append_column("w", pa.array([0.0] * table.num_rows)), sink)
    return sink.getvalue()


def duplicate_rows(base) -> str:
    return "a,b\n" + "1.5,2\n" * 20 + "3,-1\n" * 20


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
    case("empty-stdin", "fit - -k 2 -o out.json", "stdin", input=b""),
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
    case(
        "nan-in-feature",
        "fit holes.csv -k 2 -o out.json",
        "'x0'",
        "row 5",
        "--drop-missing",
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
        "--drop-missing",
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
        "classify data.csv --model v2.json -o out.csv",
        "'v2.json'",
        "version 2",
        files={"v2.json": model_with(version=2)},
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
]


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

    result = gmm(command, input=stdin)
    error = error_line(result)
    for name in names:
        assert name in error, (name, error)
    assert result.stdout == ""
    assert snapshot() == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a chmod 000 file anyway")
def test_bad_input_unreadable_file(files):
    Path("secret.csv").write_text(files.csv)
    Path("secret.csv").chmod(0)
    before = snapshot()
    error = error_line(gmm("fit secret.csv -k 2 -o out.json"))
    assert "'secret.csv'" in error
    assert snapshot() == before


# --- messages are plain text, not markup -----------------------------------------------


@pytest.mark.parametrize("name", ["data[/x].csv", "data[x].csv"])
def test_error_message_shows_paths_with_brackets_verbatim(name):
    error = error_line(gmm(["fit", name, "-k", "2"]))
    assert f"'{name}'" in error


def test_column_names_with_brackets_are_shown_verbatim():
    Path("odd.csv").write_text("a,[/b]\n1,2\n3,5\n4,4\n6,1\n")
    result = ok(gmm("fit odd.csv -k 1 -o m.json"))
    assert "features: a, [/b]" in result.stderr


# --- outputs and columns checked before anything is written ------------------------------


def test_bad_input_non_numeric_value_with_default_columns(files):
    Path("typo.csv").write_text(set_cell(files.csv, 7, "x1", "abc"))
    before = snapshot()
    error = error_line(gmm("fit typo.csv -k 2 -o out.json"))
    assert "'x1'" in error
    assert "row 7" in error
    assert snapshot() == before


def test_generate_writes_nothing_when_truth_folder_is_missing():
    error = error_line(gmm("generate -n 10 -o data.csv --truth nodir/truth.json"))
    assert "'nodir'" in error
    assert snapshot() == {}


@pytest.mark.parametrize(
    ("command", "needle"),
    [
        ("generate -n 10 --seed -1 -o d.csv", "--seed"),
        ("generate -n 10 --separation nan -o d.csv", "--separation"),
        ("generate -n 10 --separation inf -o d.csv", "--separation"),
        ("generate -n 10 -d 2 --weight-column x1 -o d.csv", "'x1'"),
        ("generate -n 10 --weight-column true_component -o d.csv", "'true_component'"),
    ],
)
def test_generate_rejects_bad_options(command, needle):
    assert needle in error_line(gmm(command))
    assert snapshot() == {}


def test_score_per_sample_needs_a_file(files):
    before = snapshot()
    assert "--per-sample" in error_line(gmm("score data.csv -m model.json --per-sample -"))
    assert snapshot() == before


def test_unwritable_output_folder_is_a_user_error(files, monkeypatch):
    import tempfile

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", refuse)
    assert "Permission denied" in error_line(gmm("fit data.csv -k 2 -o out.json"))
