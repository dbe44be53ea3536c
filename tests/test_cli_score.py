"""End-to-end tests of ``gmmcli score``, in process through Typer's CliRunner.

Every test runs in its own empty folder (tmp_path is the current directory), with the data
and models of the ``files`` fixture (conftest.py). Tests that cover several commands, and the
bad-input table of every command, are in test_cli_common.py.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow.parquet as pq
import pytest
from cli_helpers import error_line, gmm, ok, snapshot

# Every test runs in its own empty folder (the in_tmp_path fixture of conftest.py).
pytestmark = pytest.mark.usefixtures("in_tmp_path")


SCORE_KEYS = {"n_samples", "total_weight", "log_likelihood", "mean_log_likelihood", "bic", "aic"}


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


def test_score_per_sample_needs_a_file(files):
    before = snapshot()
    assert "--per-sample" in error_line(gmm("score data.csv -m model.json --per-sample -"))
    assert snapshot() == before
