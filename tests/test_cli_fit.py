"""End-to-end tests of ``gmmcli fit``, in process through Typer's CliRunner.

Every test runs in its own empty folder (tmp_path is the current directory), with the data
and models of the ``files`` fixture (conftest.py) where it asks for them. Tests that cover
several commands, and the bad-input table of every command, are in test_cli_common.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cli_helpers import add_column, error_line, gmm, missing_rows_csv, ok, set_cell, snapshot

# Every test runs in its own empty folder (the in_tmp_path fixture of conftest.py).
pytestmark = pytest.mark.usefixtures("in_tmp_path")


# --- stdout carries data, stderr the rest -----------------------------------------------


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


# --- determinism ------------------------------------------------------------------------


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


def test_init_hc_starts_from_mclusts_hierarchical_clustering(files):
    ok(gmm("fit blobs.csv -k 3 --init hc -o hc.json"))
    model = json.loads(Path("hc.json").read_text())
    assert model["training"]["init"] == "hc"
    assert not model["training"]["degenerate"]
    # 300 distinct rows: clustered whole under any --hc-rows from 300 up, the same bytes
    ok(gmm("fit blobs.csv -k 3 --init hc --hc-rows 300 -q -o whole.json"))
    assert Path("whole.json").read_bytes() == Path("hc.json").read_bytes()
    ok(gmm("fit blobs.csv -k 3 --init hc --hc-rows 30 --max-iter 1 -q -o sampled.json"))
    ok(gmm("fit blobs.csv -k 3 --init hc --max-iter 1 -q -o first.json"))
    history = [
        json.loads(Path(f).read_text())["training"]["history"]
        for f in ("sampled.json", "first.json")
    ]
    assert history[0][0] != history[1][0]  # a sample of 30 rows starts elsewhere
    assert "[default: kmeans]" in ok(gmm("fit --help")).stdout


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


# --- --init-model, --strict -------------------------------------------------------------


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


# --- missing values ---------------------------------------------------------------------


def test_fit_drop_missing_reports_the_dropped_rows(files):
    Path("holes.csv").write_text(missing_rows_csv(files))
    result = ok(gmm("fit holes.csv -k 3 --drop-missing -o m.json"))
    assert "dropped 3 rows" in result.stderr
    assert json.loads(Path("m.json").read_text())["training"]["n_samples"] == 297


# --- bad input --------------------------------------------------------------------------


def test_bad_input_non_numeric_value_with_default_columns(files):
    Path("typo.csv").write_text(set_cell(files.csv, 7, "x1", "abc"))
    before = snapshot()
    error = error_line(gmm("fit typo.csv -k 2 -o out.json"))
    assert "'x1'" in error
    assert "row 7" in error
    assert snapshot() == before


def test_covariance_type_takes_mclust_names_in_any_case(tmp_path):
    ok(gmm(["generate", "-n", "300", "--seed", "1", "-q", "-o", tmp_path / "d.csv"]))
    ok(gmm(["fit", tmp_path / "d.csv", "-k", "2", "-q", "-o", tmp_path / "diag.json",
            "--covariance-type", "diag"]))  # fmt: skip
    ok(gmm(["fit", tmp_path / "d.csv", "-k", "2", "-q", "-o", tmp_path / "vvi.json",
            "--covariance-type", "vvi"]))  # fmt: skip
    assert (tmp_path / "vvi.json").read_bytes() == (tmp_path / "diag.json").read_bytes()
    line = error_line(gmm(["fit", tmp_path / "d.csv", "-k", "2", "--covariance-type", "VXV"]))
    assert "--covariance-type must be one of EII, spherical (VII), EEI" in line
