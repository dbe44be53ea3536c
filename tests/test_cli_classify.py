"""End-to-end tests of ``gmmcli classify``, in process through Typer's CliRunner.

Every test runs in its own empty folder (tmp_path is the current directory), with the data
and models of the ``files`` fixture (conftest.py). Tests that cover several commands, and the
bad-input table of every command, are in test_cli_common.py.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from cli_helpers import gmm, ok, read_csv, read_stdout_csv

# Every test runs in its own empty folder (the in_tmp_path fixture of conftest.py).
pytestmark = pytest.mark.usefixtures("in_tmp_path")


def test_classify_says_which_columns_it_used(files):
    result = ok(gmm("classify blobs.csv --model blobs.json -o out.csv"))
    assert result.stdout == ""
    assert "features: x0, x1" in result.stderr


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


def test_classify_and_score_keep_each_others_columns(files):
    ok(gmm("score blobs.csv --model blobs.json -q --per-sample scored.csv"))
    result = ok(gmm("classify scored.csv --model blobs.json --no-probabilities -o both.csv"))
    assert "replacing" not in result.stderr
    both = read_csv("both.csv")
    assert both.column_names == ["x0", "x1", "true_component", "log_likelihood", "component"]
    assert both["log_likelihood"].equals(read_csv("scored.csv")["log_likelihood"])
    ok(gmm("score both.csv --model blobs.json -q --per-sample again.csv"))
    assert read_csv("again.csv").column_names == [
        "x0", "x1", "true_component", "component", "log_likelihood"
    ]  # fmt: skip


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


def test_classify_and_score_of_parquet_do_not_load_pandas(files):
    """pyarrow imports pandas, where it is installed, at its first conversion to or from
    numpy (about half a second of the command's start-up): the Parquet file is read, and
    the outputs built, through Arrow's buffers instead."""
    pytest.importorskip("pandas")
    ok(gmm("classify blobs.csv --model blobs.json -q --drop-missing -o blobs.parquet"))
    commands = [
        "classify blobs.parquet --model blobs.json -q --drop-missing -o out.parquet",
        "score blobs.parquet --model blobs.json --per-sample scores.parquet -o score.json",
    ]
    for command in commands:
        code = (
            "import sys\n"
            "from gmmcli.cli import main\n"
            f"sys.argv = ['gmmcli', *{command.split()!r}]\n"
            "try:\n    main()\nexcept SystemExit as stop:\n    assert not stop.code\n"
            "print('pandas' in sys.modules)"
        )
        run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert run.stdout == "False\n", (command, run.stderr)
    assert pq.read_table("out.parquet").num_rows == pq.read_table("blobs.parquet").num_rows
