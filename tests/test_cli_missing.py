"""--missing on the command line: fit, classify and score through missing values, from
memory and streamed, and every bad input the issue names."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from cli_helpers import error_line, gmm, ok

import gmmcli
from gmmcli.core.generate import random_mixture

N_ROWS = 1500


@pytest.fixture
def holes(tmp_path, monkeypatch):
    """holes.csv and holes.parquet: a 3-component mixture in 4 features with 15% of cells
    empty, row 7 with no value at all; complete.csv without the gaps."""
    monkeypatch.chdir(tmp_path)
    mixture = random_mixture(3, 4, separation=3.0, rng=np.random.default_rng(4))
    X, _ = mixture.sample(N_ROWS, seed=5)
    names = ["a", "b", "c", "d"]
    pa_csv.write_csv(pa.table(dict(zip(names, X.T, strict=True))), "complete.csv")
    X[np.random.default_rng(6).random(X.shape) < 0.15] = np.nan
    X[6] = np.nan
    table = pa.table({n: pa.array(x, from_pandas=True) for n, x in zip(names, X.T, strict=True)})
    pa_csv.write_csv(table, "holes.csv")
    pq.write_table(table, "holes.parquet")
    return X


def _model(path="m.json"):
    return json.loads(Path(path).read_text())


def test_fit_through_gaps_records_the_missing_cells_and_leaves_out_the_empty_row(holes):
    result = ok(gmm("fit holes.csv -k 3 --missing marginal -o m.json"))
    assert "dropped 1 rows with no feature observed" in result.stderr
    training = _model()["training"]
    assert training["missing_cells"] == int(np.isnan(holes).sum()) - 4
    assert training["n_samples"] == N_ROWS - 1


def test_without_gaps_marginal_writes_the_same_model_as_refuse(holes):
    ok(gmm("fit complete.csv -k 3 -o refuse.json"))
    ok(gmm("fit complete.csv -k 3 --missing marginal -o marginal.json"))
    assert Path("refuse.json").read_text() == Path("marginal.json").read_text()
    assert _model("refuse.json")["training"]["missing_cells"] == 0


def test_streamed_fit_through_gaps_is_the_same_bytes_as_in_memory(holes):
    ok(gmm("fit holes.parquet -k 3 --missing marginal -o memory.json"))
    ok(gmm("fit holes.parquet -k 3 --missing marginal --chunk-rows 100 -o streamed.json"))
    assert Path("memory.json").read_text() == Path("streamed.json").read_text()


def test_classify_and_score_through_gaps(holes):
    ok(gmm("fit holes.csv -k 3 --missing marginal -q -o m.json"))
    ok(gmm("classify holes.csv -m m.json --missing marginal -q -o labelled.csv"))
    labelled = pa_csv.read_csv("labelled.csv")
    assert labelled.num_rows == N_ROWS
    component = labelled.column("component")
    assert component.null_count == 1 and not component[6].is_valid  # the empty row
    model = gmmcli.load("m.json")
    X = np.delete(holes, 6, axis=0)
    expected = model.predict_proba(X)
    got = np.column_stack([labelled.column(f"p_{k}").to_numpy() for k in range(3)])
    np.testing.assert_allclose(np.delete(got, 6, axis=0), expected, rtol=1e-12)
    scored = json.loads(ok(gmm("score holes.csv -m m.json --missing marginal")).stdout)
    partial = int(np.isnan(X).any(axis=1).sum())
    assert scored["n_samples"] == N_ROWS - 1
    assert scored["n_samples_missing_features"] == partial
    np.testing.assert_allclose(scored["log_likelihood"], model.score_samples(X).sum(), rtol=1e-12)


def test_refuse_names_the_cell_and_the_ways_out(holes):
    line = error_line(gmm("fit holes.csv -k 3 -o m.json"))
    assert "in holes.csv has a missing or infinite value at row" in line
    assert "set --missing to drop" in line and "marginal" in line
    assert not Path("m.json").exists()


def test_drop_missing_is_missing_drop(holes):
    ok(gmm("fit holes.csv -k 3 --drop-missing -q -o old.json"))
    ok(gmm("fit holes.csv -k 3 --missing drop -q -o new.json"))
    assert Path("old.json").read_text() == Path("new.json").read_text()


def test_infinity_is_never_missing(holes):
    text = Path("complete.csv").read_text().splitlines()
    text[3] = "inf," + text[3].split(",", 1)[1]
    Path("inf.csv").write_text("\n".join(text) + "\n")
    line = error_line(gmm("fit inf.csv -k 3 --missing marginal -o m.json"))
    assert "column 'a' in inf.csv has an infinite value at row 3" in line
    assert not Path("m.json").exists()


def test_a_missing_weight_is_an_error(holes):
    text = Path("complete.csv").read_text().splitlines()
    text = [text[0] + ",w"] + [line + ",1" for line in text[1:]]
    text[5] = text[5][: -len(",1")] + ","
    Path("weighted.csv").write_text("\n".join(text) + "\n")
    command = "fit weighted.csv -k 3 --weight-column w --missing marginal -o m.json"
    line = error_line(gmm(command))
    assert "weight column 'w' in weighted.csv" in line and "a weight cannot be missing" in line


def test_a_column_with_no_value_is_refused_by_name(holes):
    X = np.random.default_rng(0).standard_normal((200, 2))
    pa_csv.write_csv(pa.table({"a": X[:, 0], "b": pa.nulls(200, pa.float64())}), "empty.csv")
    line = error_line(gmm("fit empty.csv -k 2 --columns a,b --missing marginal -o m.json"))
    assert "'b' has no value in any row" in line


def test_a_pair_never_observed_together_is_refused(holes):
    X = np.random.default_rng(0).standard_normal((400, 2))
    a = pa.array(np.where(np.arange(400) < 200, np.nan, X[:, 0]), from_pandas=True)
    b = pa.array(np.where(np.arange(400) >= 200, np.nan, X[:, 1]), from_pandas=True)
    pa_csv.write_csv(pa.table({"a": a, "b": b}), "apart.csv")
    line = error_line(gmm("fit apart.csv -k 2 --missing marginal -o m.json"))
    assert "no row has both 'a' and 'b'" in line
    ok(gmm("fit apart.csv -k 2 --missing marginal --covariance-type diag -q -o m.json"))


def test_fit_through_gaps_in_a_pipe(holes):
    """A real process reading CSV with gaps on stdin: the model of the file."""
    done = subprocess.run(
        [sys.executable, "-m", "gmmcli", "fit", "-", "-k", "3", "--missing", "marginal", "-q"],
        input=Path("holes.csv").read_bytes(),
        capture_output=True,
        check=True,
    )
    ok(gmm("fit holes.csv -k 3 --missing marginal -q -o file.json"))
    assert done.stdout.decode() == Path("file.json").read_text()


def test_classify_and_score_streamed_through_gaps_are_the_in_memory_bytes(holes):
    ok(gmm("fit holes.parquet -k 3 --missing marginal -q -o m.json"))
    for command, mode in (("classify", ["--missing", "marginal"]), ("impute", [])):
        for name, chunks in (("memory", []), ("streamed", ["--chunk-rows", "97"])):
            args = [command, "holes.parquet", "-m", "m.json", *mode, "-q"]
            ok(gmm([*args, *chunks, "-o", f"{command}-{name}.parquet"]))
        assert pq.read_table(f"{command}-memory.parquet").equals(
            pq.read_table(f"{command}-streamed.parquet")
        )
    scores = [
        ok(gmm(["score", "holes.parquet", "-m", "m.json", "--missing", "marginal", *chunks])).stdout
        for chunks in ([], ["--chunk-rows", "97"])
    ]
    assert scores[0] == scores[1]


def test_select_k_through_gaps(holes):
    grid = "--k-max 3 --covariance-types full,diag --n-init 1"
    result = ok(gmm(f"select-k holes.csv {grid} --missing marginal -q"))
    assert json.loads(result.stdout)["n_components"] == 3  # (three well-separated clusters)


def test_drop_missing_and_missing_together_are_refused(holes):
    line = error_line(gmm("fit holes.csv -k 3 --drop-missing --missing marginal -o m.json"))
    assert "--drop-missing is --missing drop: give one of them" in line
    assert not Path("m.json").exists()


def test_too_few_complete_rows_record_the_kmeans_start_that_ran(holes):
    X = holes.copy()
    X[np.random.default_rng(7).random(X.shape) < 0.5] = np.nan  # few complete rows left
    table = pa.table({n: pa.array(x, from_pandas=True) for n, x in zip("abcd", X.T, strict=True)})
    pa_csv.write_csv(table, "sparse.csv")
    ok(gmm("fit sparse.csv -k 3 --missing marginal --init hc -q -o m.json"))
    assert _model()["training"]["init"] == "kmeans"
