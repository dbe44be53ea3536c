"""gmmcli impute: conditional means and draws of missing features, whole, streamed, piped,
on the Dask engine and from Python."""

from __future__ import annotations

import io
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from cli_helpers import error_line, gmm, ok, snapshot
from scipy.stats import multivariate_normal

import gmmcli
from gmmcli.core import GaussianMixture
from gmmcli.errors import UserError
from gmmcli.io import tables

NAMES = ["a", "b", "n"]
COVARIANCES = np.array(
    [
        [[2.0, 0.8, 0.3], [0.8, 1.0, -0.2], [0.3, -0.2, 1.5]],
        [[1.0, -0.5, 0.0], [-0.5, 2.0, 0.4], [0.0, 0.4, 0.7]],
    ]
)
MODEL = GaussianMixture(
    [0.4, 0.6], [[0.0, 0.0, 0.0], [3.0, -2.0, 5.0]], COVARIANCES, "full", feature_names=NAMES
)
# Gaps: a and b at row 3 (two in one row), a at 20, b at 41, n (whole numbers) at 30 only,
# so that with --chunk-rows 7 the column of n is filled in the fifth chunk alone; row 50
# has no feature observed.
GAPS = {"a": [3, 20, 50], "b": [3, 41, 50], "n": [30, 50]}
N_ROWS = 60


def gapped_table(gaps: dict[str, list[int]] = GAPS) -> pa.Table:
    X, _ = MODEL.sample(N_ROWS, 4)
    columns = {"a": X[:, 0], "b": X[:, 1], "n": np.rint(X[:, 2]).astype(np.int64)}
    table = {}
    for name, values in columns.items():
        mask = np.zeros(N_ROWS, bool)
        mask[gaps.get(name, [])] = True
        table[name] = pa.array(values, mask=mask)
    table["id"] = pa.array(np.arange(N_ROWS) * 10)
    table["label"] = pa.array([f"row {i}" for i in range(N_ROWS)])
    return pa.table(table)


@pytest.fixture
def work(in_tmp_path):
    """data.csv (gapped_table), data.parquet (the same rows) and model.json (MODEL)."""
    table = gapped_table()
    pa_csv.write_csv(table, "data.csv")
    pq.write_table(table, "data.parquet")
    gmmcli.save(MODEL, "model.json")
    return in_tmp_path


def direct_conditional(model: GaussianMixture, x: np.ndarray):
    """p(k | x_o), E[x_m | x_o, k] and Cov[x_m | x_o, k] by solves on the observed block."""
    o, m = ~np.isnan(x), np.isnan(x)
    full = model.covariance.full_matrices(model.covariances, model.n_components, model.n_features)
    log_p, means, covs = [], [], []
    for weight, mu, cov in zip(model.weights, model.means, full, strict=True):
        oo, mo = cov[np.ix_(o, o)], cov[np.ix_(m, o)]
        log_p.append(np.log(weight) + multivariate_normal(mu[o], oo).logpdf(x[o]))
        means.append(mu[m] + mo @ np.linalg.solve(oo, x[o] - mu[o]))
        covs.append(cov[np.ix_(m, m)] - mo @ np.linalg.solve(oo, mo.T))
    p = np.exp(np.array(log_p) - max(log_p))
    return p / p.sum(), np.array(means), np.array(covs)


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical", "VEI"])
def test_conditional_means_match_solves_on_the_observed_block(covariance_type, mixture):
    X, _ = mixture(2, n_samples=400, n_features=4, n_components=3)
    model = gmmcli.fit(X, 3, covariance_type=covariance_type, seed=0)
    gapped = X[:80].copy()
    gapped[np.random.default_rng(1).random(gapped.shape) < 0.35] = np.nan
    gapped[5] = np.nan  # nothing observed: the mixture's mean
    filled = model.impute(gapped)
    observed = ~np.isnan(gapped)
    assert np.array_equal(filled[observed], gapped[observed])  # bit for bit
    for x, row in zip(gapped, filled, strict=True):
        if np.isnan(x).all():
            np.testing.assert_allclose(row, model.centre, rtol=1e-12, atol=1e-12)
        elif np.isnan(x).any():
            p, means, _ = direct_conditional(model, x)
            # Solves of a few well-conditioned 4 x 4 blocks: rounding far below 1e-10.
            np.testing.assert_allclose(row[np.isnan(x)], p @ means, rtol=1e-10, atol=1e-10)


def test_complete_rows_and_other_columns_pass_through(work):
    ok(gmm("impute data.csv -m model.json -o filled.csv"))
    before = Path("data.csv").read_text().splitlines()
    after = Path("filled.csv").read_text().splitlines()
    gapped = {row + 1 for rows in GAPS.values() for row in rows}  # +1: the header
    assert len(after) == len(before)
    for i, (old, new) in enumerate(zip(before, after, strict=True)):
        if i not in gapped and i > 0:
            assert new == old  # a complete row: the same text
        # id and label are always the same text
        assert old.split(",")[3:] == new.split(",")[3:]


def test_only_columns_with_a_cell_filled_change_type(work):
    ok(gmm("impute data.parquet -m model.json -o filled.parquet"))
    filled = pq.read_table("filled.parquet")
    assert filled.schema.field("n").type == pa.float64()  # a gap filled: float64
    assert filled.column("id").equals(pq.read_table("data.parquet").column("id"))
    no_gap_in_n = gapped_table({"a": [3]})
    pq.write_table(no_gap_in_n, "ints.parquet")
    ok(gmm("impute ints.parquet -m model.json -o kept.parquet"))
    kept = pq.read_table("kept.parquet")
    assert kept.schema == no_gap_in_n.schema
    assert kept.drop_columns(["a"]).equals(no_gap_in_n.drop_columns(["a"]))


def test_filled_values_are_the_conditional_means(work):
    ok(gmm("impute data.parquet -m model.json -o filled.parquet"))
    table = gapped_table()
    X = np.column_stack([table[name].to_numpy(zero_copy_only=False) for name in NAMES])
    X = X.astype(float)
    filled = pq.read_table("filled.parquet")
    for row in (3, 20, 30, 41):
        p, means, _ = direct_conditional(MODEL, X[row])
        gaps = [name for name, column in zip(NAMES, X[row], strict=True) if np.isnan(column)]
        got = [filled[name][row].as_py() for name in gaps]
        np.testing.assert_allclose(got, p @ means, rtol=1e-10)


def test_a_row_with_nothing_observed_is_left_empty_and_reported(work):
    result = ok(gmm("impute data.parquet -m model.json -o filled.parquet"))
    assert "left 1 row(s) with no feature observed empty" in result.stderr
    assert "filled 5 missing values" in result.stderr
    filled = pq.read_table("filled.parquet")
    assert [filled[name][50].as_py() for name in NAMES] == [None, None, None]
    assert filled.drop_columns(NAMES).equals(gapped_table().drop_columns(NAMES))


@pytest.mark.parametrize("draws", [[], ["--draws", "3"]])
@pytest.mark.parametrize("output", ["filled.csv", "filled.tsv"])
def test_streamed_equals_whole_byte_for_byte(work, draws, output):
    """n's gap lies in the fifth chunk of 7 rows: its other chunks write whole numbers.
    (Parquet is read in chunks of exactly 7 rows; a CSV file this small, in one.)"""
    ok(gmm(["impute", "data.csv", "-m", "model.json", "-o", output, *draws]))
    whole = Path(output).read_bytes()
    for data in ("data.csv", "data.parquet"):
        ok(gmm(["impute", data, "-m", "model.json", "-o", output, "--chunk-rows", "7", *draws]))
        assert Path(output).read_bytes() == whole
    piped = ok(
        gmm(
            ["impute", "-", "-m", "model.json", "--output-format", output[-3:], *draws],
            input=Path("data.csv").read_bytes(),
        )
    )
    assert piped.stdout_bytes == whole


@pytest.mark.parametrize("draws", [[], ["--draws", "2"]])
def test_streamed_parquet_equals_whole_when_its_first_chunk_fixes_float64(work, draws):
    pq.write_table(gapped_table({"a": [3, 20], "n": [1, 30]}), "early.parquet")
    command = ["impute", "early.parquet", "-m", "model.json", "-o", "out.parquet", *draws]
    ok(gmm(command))
    whole = Path("out.parquet").read_bytes()
    ok(gmm([*command, "--chunk-rows", "7"]))
    assert Path("out.parquet").read_bytes() == whole


def test_streamed_parquet_refuses_a_column_turning_float_after_its_first_chunk(work):
    before = snapshot()
    result = gmm("impute data.parquet -m model.json -o out.parquet --chunk-rows 7")
    line = error_line(result)
    assert "column 'n' turns from int64 into double at row 29 of 'out.parquet'" in line
    assert "write CSV or TSV, or read the input whole" in line
    assert snapshot() == before


def test_streamed_text_refuses_whole_numbers_written_otherwise_as_float64(work):
    table = gapped_table()
    big = pa.array(np.arange(N_ROWS, dtype=np.int64) * 10**12, mask=np.arange(N_ROWS) == 30)
    table = table.set_column(2, "n", big)
    pq.write_table(table, "big.parquet")
    ok(gmm("impute big.parquet -m model.json -o out.csv"))  # whole: one float64 column
    before = snapshot()
    line = error_line(gmm("impute big.parquet -m model.json -o out.csv --chunk-rows 7"))
    assert "column 'n' of big.parquet was read in chunks" in line and "--chunk-rows" in line
    assert snapshot() == before


def test_draws_are_copies_of_each_row_with_their_gaps_drawn(work):
    ok(gmm("impute data.parquet -m model.json -o drawn.parquet --draws 4 --seed 7"))
    drawn = pq.read_table("drawn.parquet")
    table = gapped_table()
    assert drawn.num_rows == 4 * N_ROWS
    assert drawn.column_names == [*table.column_names, "draw"]
    assert drawn["draw"].to_pylist() == [0, 1, 2, 3] * N_ROWS
    repeated = table.take(np.repeat(np.arange(N_ROWS), 4))
    assert drawn.drop_columns(["draw", *NAMES]).equals(repeated.drop_columns(NAMES))
    for name in NAMES:
        old, new = repeated[name].to_pylist(), drawn[name].to_pylist()
        for row, (was, now) in enumerate(zip(old, new, strict=True)):
            if was is not None:
                assert now == was  # observed cells unchanged in every draw
            elif row // 4 != 50:
                assert now is not None
    gap_rows = np.array(drawn["a"].to_pylist()[3 * 4 : 4 * 4])
    assert len(set(gap_rows)) == 4  # four different draws of row 3's a


def test_the_mean_of_many_draws_is_the_conditional_mean(work):
    """One row with two gaps, 20,000 draws: each mean within 5 standard errors of the
    conditional mean (the mixture's variance: within p (1-p) of the gap of the component
    means, plus the conditional variances). Seeded: the bound fails about 1 in 10^6."""
    x = np.array([[1.0, np.nan, np.nan]])
    ok(gmm("impute - -m model.json -o drawn.parquet --draws 20000", input="a,b,n\n1.0,,\n"))
    drawn = pq.read_table("drawn.parquet")
    values = np.column_stack([drawn[name].to_numpy() for name in ("b", "n")])
    p, means, covs = direct_conditional(MODEL, x[0])
    mean = p @ means
    variance = p @ np.array([np.diag(c) for c in covs]) + p @ (means - mean) ** 2
    error = np.sqrt(variance / len(values))
    assert np.all(np.abs(values.mean(axis=0) - mean) < 5 * error)
    np.testing.assert_allclose(mean, MODEL.impute(x)[0, 1:], rtol=1e-12)


def test_the_same_seed_gives_the_same_bytes_and_another_seed_other_draws(work):
    def drawn(seed: int) -> bytes:
        ok(gmm(f"impute data.csv -m model.json -o d{seed}.csv --draws 3 --seed {seed}"))
        return Path(f"d{seed}.csv").read_bytes()

    first = drawn(1)
    ok(gmm("impute data.csv -m model.json -o again.csv --draws 3 --seed 1"))
    assert Path("again.csv").read_bytes() == first
    other = pa_csv.read_csv(io.BytesIO(drawn(2)))
    first = pa_csv.read_csv(io.BytesIO(first))
    assert other["a"][3 * 3].as_py() != first["a"][3 * 3].as_py()
    assert other.drop_columns(NAMES).equals(first.drop_columns(NAMES))


def test_a_draw_column_fed_back_is_replaced(work):
    ok(gmm("impute data.parquet -m model.json -o once.parquet --draws 2"))
    result = ok(gmm("impute once.parquet -m model.json -o twice.parquet --draws 3"))
    assert "replacing the existing column draw" in result.stderr
    twice = pq.read_table("twice.parquet")
    assert twice.column_names.count("draw") == 1 and twice.num_rows == 6 * N_ROWS
    assert twice["draw"].to_pylist()[:6] == [0, 1, 2, 0, 1, 2]
    # Without --draws a draw column passes through; classify keeps it too.
    ok(gmm("impute once.parquet -m model.json -o means.parquet"))
    assert pq.read_table("means.parquet")["draw"].equals(pq.read_table("once.parquet")["draw"])
    labelled = ok(gmm("classify means.parquet -m model.json --missing marginal -o l.parquet"))
    assert "draw" in pq.read_table("l.parquet").column_names, labelled.stderr


def test_infinity_is_an_error_line_and_nothing_is_written(work):
    text = Path("data.csv").read_text().splitlines()
    cells = text[8].split(",")
    cells[1] = "inf"
    text[8] = ",".join(cells)
    Path("inf.csv").write_text("\n".join(text) + "\n")
    before = snapshot()
    line = error_line(gmm("impute inf.csv -m model.json -o out.csv"))
    assert "column 'b' in inf.csv has an infinite value at row 8" in line
    assert snapshot() == before


@pytest.mark.parametrize("output", ["data.csv", "model.json"])
def test_an_output_that_is_an_input_is_refused(work, output):
    before = snapshot()
    line = error_line(gmm(["impute", "data.csv", "-m", "model.json", "-o", output]))
    assert output in line
    assert snapshot() == before


def test_python_api(work):
    table = gapped_table()
    filled = gmmcli.impute(table, MODEL)
    assert filled.equals(pq.read_table(_cli_output("data.parquet")))
    gmmcli.impute("data.csv", "model.json", "api.csv", draws=2, seed=5)
    ok(gmm("impute data.csv -m model.json -o cli.csv --draws 2 --seed 5"))
    assert Path("api.csv").read_bytes() == Path("cli.csv").read_bytes()
    with pytest.raises(gmmcli.InvalidParameter, match="draws"):
        gmmcli.impute(table, MODEL, draws=-1)


def _cli_output(data: str) -> str:
    ok(gmm(f"impute {data} -m model.json -o cli.parquet"))
    return "cli.parquet"


def test_a_parquet_writer_takes_numbers_into_float64_but_not_back(tmp_path):
    path = str(tmp_path / "t.parquet")
    with tables.TableWriter(path) as writer:
        writer.write(pa.table({"x": [1.5]}))
        writer.write(pa.table({"x": [2]}))
    assert pq.read_table(path)["x"].to_pylist() == [1.5, 2.0]
    refused = pytest.raises(UserError, match="column 'x' turns from int64 into double at row 2")
    with refused, tables.TableWriter(path) as writer:
        writer.write(pa.table({"x": [1]}))
        writer.write(pa.table({"x": [2.5]}))
    assert pq.read_table(path)["x"].to_pylist() == [1.5, 2.0]  # left as it was


def test_a_real_pipe(work):
    script = "cat data.csv | gmmcli impute - -m model.json -q | head -c 100000 > piped.csv"
    gmmcli_cmd = shlex.join([sys.executable, "-m", "gmmcli"])
    prelude = f'set -o pipefail\ngmmcli() {{ {gmmcli_cmd} "$@"; }}\n'
    done = subprocess.run(["bash", "-c", prelude + script], capture_output=True, timeout=120)
    assert done.returncode == 0 and done.stderr == b"", done.stderr
    ok(gmm("impute data.csv -m model.json -o file.csv"))
    assert Path("piped.csv").read_bytes() == Path("file.csv").read_bytes()


def test_the_dask_engine_writes_what_the_local_engine_writes(work):
    distributed = pytest.importorskip("distributed")
    from test_cluster import local_cluster

    table = gapped_table({"a": [3, 20, 50], "b": [3, 41, 50], "n": [1, 30, 50]})
    Path("folder").mkdir()
    pq.write_table(table.slice(0, 25), "folder/p0.parquet")
    pq.write_table(table.slice(25), "folder/p1.parquet")
    pq.write_table(table, "all.parquet")
    with local_cluster() as running, distributed.Client(running) as client:
        engine = ["--engine", "dask", "--scheduler", client.scheduler.address]
        for draws in ([], ["--draws", "3"]):
            ok(gmm(["impute", "folder", "-m", "model.json", "-o", "parts", *engine, *draws]))
            ok(gmm(["impute", "all.parquet", "-m", "model.json", "-o", "one.parquet", *draws]))
            assert pq.read_table("parts").equals(pq.read_table("one.parquet"))
