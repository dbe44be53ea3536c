"""End-to-end tests of ``gmmcli score``, in process through Typer's CliRunner.

Every test runs in its own empty folder (tmp_path is the current directory), with the data
and models of the ``files`` fixture (conftest.py). Tests that cover several commands, and the
bad-input table of every command, are in test_cli_common.py.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from cli_helpers import SCORE_KEYS, error_line, gmm, missing_rows_csv, ok, snapshot

# Every test runs in its own empty folder (the in_tmp_path fixture of conftest.py).
pytestmark = pytest.mark.usefixtures("in_tmp_path")


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


def test_score_per_sample_fed_back_replaces_its_column(files):
    ok(gmm("score blobs.csv --model blobs.json -q --per-sample once.parquet"))
    result = ok(gmm("score once.parquet --model blobs.json --per-sample twice.parquet"))
    assert "replacing the existing column log_likelihood" in result.stderr
    assert pq.read_table("twice.parquet").equals(pq.read_table("once.parquet"))


def test_score_per_sample_needs_a_file(files):
    before = snapshot()
    assert "--per-sample" in error_line(gmm("score data.csv -m model.json --per-sample -"))
    assert snapshot() == before


def test_score_output_writes_the_json_to_a_file(files):
    printed = ok(gmm("score blobs.csv --model blobs.json -q")).stdout
    result = ok(gmm("score blobs.csv --model blobs.json -q -o scores.json --per-sample rows.csv"))
    assert result.stdout == ""
    assert Path("scores.json").read_text() == printed
    assert ok(gmm("score blobs.csv --model blobs.json -q -o -")).stdout == printed


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ("-o blobs.csv", "--output 'blobs.csv' is the same file as the input 'blobs.csv'"),
        ("-o blobs.json", "--output 'blobs.json' is the same file as the input 'blobs.json'"),
        ("-o same.csv --per-sample same.csv", "'same.csv' is the same file as --output"),
        ("-o missing/scores.json", "output folder 'missing' does not exist"),
    ],
)
def test_score_output_may_be_no_input_nor_the_per_sample_file(files, options, message):
    before = snapshot()
    assert message in error_line(gmm(f"score blobs.csv --model blobs.json {options}"))
    assert snapshot() == before


def test_a_failed_score_leaves_its_outputs_as_they_were(files):
    Path("holes.csv").write_text(missing_rows_csv(files))
    Path("scores.json").write_text("the old summary")
    before = snapshot()
    command = "score holes.csv --model blobs.json -o scores.json --per-sample rows.csv"
    assert "missing or infinite value at row 3" in error_line(gmm(command))
    assert snapshot() == before
