"""End-to-end tests of ``gmmcli generate``, in process through Typer's CliRunner.

Every test runs in its own empty folder (tmp_path is the current directory). Tests that
cover several commands are in test_cli_common.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cli_helpers import error_line, gmm, ok, read_csv, snapshot

# Every test runs in its own empty folder (the in_tmp_path fixture of conftest.py).
pytestmark = pytest.mark.usefixtures("in_tmp_path")


def test_generate_writes_parquet_row_groups_of_at_most_128k_rows():
    ok(gmm("generate -k 1 -d 1 -n 300000 --no-labels -q -o big.parquet"))
    metadata = pq.ParquetFile("big.parquet").metadata
    sizes = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
    assert sum(sizes) == 300000
    assert max(sizes) <= 131072
    assert len(sizes) == 3


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


def test_a_constrained_mixture_is_generated_fitted_classified_and_scored():
    ok(gmm("generate --covariance-type vev -k 2 -d 3 -n 400 --seed 4 -q -o d.csv --truth t.json"))
    truth = json.loads(Path("t.json").read_text())
    assert (truth["covariance_type"], truth["version"]) == ("VEV", 2)
    assert {"volumes", "shape", "orientations"} <= set(truth)
    ok(gmm("fit d.csv -k 2 --covariance-type VEV --seed 1 -q -o m.json"))
    model = json.loads(Path("m.json").read_text())
    assert (model["covariance_type"], model["version"]) == ("VEV", 2)

    ok(gmm("classify d.csv --model m.json -q -o c.csv"))
    classified = read_csv("c.csv")
    same = np.mean(classified["component"].to_numpy() == classified["true_component"].to_numpy())
    assert max(same, 1 - same) > 0.95  # the labels up to the order of the components
    fitted = json.loads(ok(gmm("score d.csv --model m.json -q")).stdout)
    true = json.loads(ok(gmm("score d.csv --model t.json -q")).stdout)
    assert fitted["log_likelihood"] >= true["log_likelihood"]  # the fit is the maximum

    ok(gmm("fit d.csv --init-model m.json -q -o again.json"))
    assert json.loads(Path("again.json").read_text())["covariance_type"] == "VEV"


# --- bad options: exit 2, nothing written -----------------------------------------------


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
