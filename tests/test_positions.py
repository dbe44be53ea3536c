"""Same bytes whatever the cuts, across the boundaries: prediction tiles, sum blocks and EM
blocks made small, so that the data here span many of them and every cut lands somewhere
inside, at or next to one.

The other "same bytes" tests use data of a few thousand rows, which sit in one tile, one
sum block and one EM block at the real sizes; here PREDICTION_TILE_ROWS, SUM_ROWS and the
block rows are patched to a few dozen rows, and every comparison is bit for bit.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from cli_helpers import gmm, ok
from conftest import make_mixture
from core_helpers import blocks_of
from hypothesis import given, settings
from hypothesis import strategies as st

import gmmcli
from gmmcli import outputs
from gmmcli.core import em, model
from gmmcli.core.covariance import STACKED_FULL, STACKED_TIED
from gmmcli.core.fit import fit_rows
from gmmcli.core.options import FitOptions
from gmmcli.core.structures import get_covariance
from gmmcli.engines import local
from gmmcli.engines.stream import FileRows
from gmmcli.io import modelfile

pytestmark = pytest.mark.filterwarnings("ignore:EM did not converge")

EXAMPLES = settings(max_examples=50, deadline=None, derandomize=True, database=None)
TILES = [16, 37]  # rows per prediction tile, patched: a power of two and an odd size

# (covariance type, K, D, whether the E-step takes the stacked form: Covariance.kernel)
FORMS = {
    "full": ("full", 2, 3, False),
    "full-stacked": ("full", 2, 24, True),  # D >= 24 and D > 8K
    "tied": ("tied", 3, 3, False),
    "tied-stacked": ("tied", 2, 8, True),  # D >= 8
    "diag": ("diag", 3, 3, False),
    "spherical": ("spherical", 3, 3, False),
}
N_ROWS = 300


@pytest.fixture(scope="module")
def fitted() -> dict[str, tuple[gmmcli.GaussianMixture, np.ndarray]]:
    """For every form: a model fitted in a few iterations, and N_ROWS rows to predict."""
    found = {}
    for seed, (form, (covariance_type, k, d, _)) in enumerate(FORMS.items()):
        X, _ = make_mixture(seed, n_samples=N_ROWS, n_features=d, n_components=k)
        mixture = gmmcli.fit(X, k, covariance_type=covariance_type, max_iter=5, seed=seed)
        found[form] = mixture, X
    return found


@st.composite
def cuts(draw, n_rows: int, tile: int) -> list[int]:
    """0, cut points and ``n_rows``, in order: anywhere, or at, just before or just after a
    multiple of ``tile``; repeated points make empty pieces, neighbours one-row pieces."""
    near = st.builds(
        lambda m, d: m * tile + d, st.integers(0, n_rows // tile), st.sampled_from([-1, 0, 1])
    )
    points = draw(st.lists(st.one_of(st.integers(0, n_rows), near), max_size=16))
    return [0, *sorted(min(n_rows, max(0, p)) for p in points), n_rows]


def pieces(bounds: list[int]) -> list[tuple[int, int]]:
    return list(zip(bounds[:-1], bounds[1:], strict=True))


# --- prediction tiles --------------------------------------------------------------------


@pytest.mark.parametrize("form", FORMS)
def test_the_form_under_test_is_the_one_named(fitted, form):
    covariance_type, k, d, stacked = FORMS[form]
    kernel = get_covariance(covariance_type).kernel(k, d)
    assert (kernel in (STACKED_FULL, STACKED_TIED)) == stacked
    assert fitted[form][0].n_features == d


@pytest.mark.parametrize("form", FORMS)
@EXAMPLES
@given(data=st.data(), tile=st.sampled_from(TILES))
def test_row_predictions_of_pieces_are_those_of_the_whole(fitted, form, data, tile):
    mixture, X = fitted[form]
    bounds = data.draw(cuts(len(X), tile))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(model, "PREDICTION_TILE_ROWS", tile)
        whole_ll, whole_proba = mixture.row_predictions(X)
        parts = [mixture.row_predictions(X[a:b], first_row=a) for a, b in pieces(bounds)]
    np.testing.assert_array_equal(np.concatenate([ll for ll, _ in parts]), whole_ll)
    np.testing.assert_array_equal(np.concatenate([p for _, p in parts]), whole_proba)
    for (a, b), (ll, proba) in zip(pieces(bounds), parts, strict=True):
        assert ll.shape == (b - a,) and proba.shape == (b - a, mixture.n_components)
    # Small tiles change the rounding only: the rows are those of the real tiles (all
    # N_ROWS rows in one). Log-likelihoods of order 10 differ by a few units of 1e-16 at
    # most; probabilities by as much relative to themselves, tiny ones absolutely.
    one_tile_ll, one_tile_proba = mixture.row_predictions(X)
    np.testing.assert_allclose(whole_ll, one_tile_ll, rtol=1e-12)
    np.testing.assert_allclose(whole_proba, one_tile_proba, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("form", FORMS)
def test_runs_of_tiles_on_threads_and_every_output_give_the_same_bytes(fitted, form, monkeypatch):
    """Runs of a few tiles shared over threads, from any first row, fill each output (the
    probabilities in either layout) with the bytes of one pass here."""
    mixture, X = fitted[form]
    monkeypatch.setattr(model, "PREDICTION_TILE_ROWS", 16)
    whole_ll, whole_proba = mixture.row_predictions(X)
    monkeypatch.setattr(model, "PREDICTION_RUN_ROWS", 40)  # two tiles a run
    threads = local.Shared(2)
    for start in (0, 5, 16, 101):
        ll, proba = mixture.row_predictions(X[start:], first_row=start, reducer=threads)
        np.testing.assert_array_equal(ll, whole_ll[start:])
        np.testing.assert_array_equal(proba, whole_proba[start:])
        n_rows = len(X) - start
        outputs = model.RowOutputs(
            probabilities=np.empty((mixture.n_components, n_rows)),
            labels=np.empty(n_rows, dtype=np.int64),
        )
        mixture.predict_into(X[start:], outputs, first_row=start, reducer=threads)
        np.testing.assert_array_equal(outputs.probabilities.T, whole_proba[start:])
        np.testing.assert_array_equal(outputs.labels, whole_proba[start:].argmax(axis=1))
    np.testing.assert_array_equal(mixture.score_samples(X), whole_ll)
    np.testing.assert_array_equal(mixture.predict_proba(X), whole_proba)
    assert mixture.predict_proba(X).flags.c_contiguous
    np.testing.assert_array_equal(mixture.predict(X), whole_proba.argmax(axis=1))


# --- sums by row position ----------------------------------------------------------------

SUM_ROWS = 8


@st.composite
def spread_values(draw) -> np.ndarray:
    """Rows of two columns of very different magnitudes, so that the order of additions
    shows in the last bits."""
    n_rows = draw(st.integers(0, 120))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return rng.normal(size=(n_rows, 2)) * 10.0 ** rng.integers(-8, 9, size=(n_rows, 1))


@EXAMPLES
@given(values=spread_values(), data=st.data(), start=st.sampled_from([0, 1, 7, 8, 9, 8 * 37 + 5]))
def test_row_sums_of_pieces_added_in_order_are_those_of_the_whole(values, data, start):
    bounds = data.draw(cuts(len(values), SUM_ROWS))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(outputs, "SUM_ROWS", SUM_ROWS)
        whole = outputs.RowSums.of(values, start).total()
        added = outputs.RowSums()
        for a, b in pieces(bounds):
            added = added + outputs.RowSums.of(values[a:b], start + a)
        total = added.total()
    assert whole.tobytes() == total.tobytes(), (whole, total)
    assert whole.tobytes() == by_position(values, start).tobytes()


def by_position(values: np.ndarray, start: int) -> np.ndarray:
    """What RowSums promises, spelled out: the rows cut where their position in the input
    (``start`` + index) is a multiple of SUM_ROWS, each part's column sums taken from a
    contiguous copy, added in order."""
    cuts = [i for i in range(1, len(values)) if (start + i) % SUM_ROWS == 0]
    total = np.zeros(values.shape[1])
    for part in np.split(values, cuts):
        total = total + np.ascontiguousarray(part.T).sum(axis=1)
    return total


# --- EM blocks ---------------------------------------------------------------------------


@EXAMPLES
@given(
    lengths=st.lists(st.sampled_from([0, 0, 1, 2, 3, 5, 8, 13, 21]), max_size=12),
    rows=st.integers(1, 10),
)
def test_pieces_recut_into_blocks_are_the_concatenation_split_every_block(lengths, rows):
    n_rows = sum(lengths)
    X = np.arange(2.0 * n_rows).reshape(n_rows, 2)
    weights = np.arange(n_rows) + 0.5
    bounds = np.cumsum([0, *lengths])
    given_pieces = [(X[a:b], weights[a:b]) for a, b in pieces(list(bounds))]
    blocks = list(em.in_blocks(given_pieces, rows))
    splits = list(range(rows, n_rows, rows))
    expected_X = np.array_split(X, splits) if n_rows else []
    expected_w = np.array_split(weights, splits) if n_rows else []
    assert len(blocks) == len(expected_X) == -(-n_rows // rows)
    for (block_X, block_w), want_X, want_w in zip(blocks, expected_X, expected_w, strict=True):
        np.testing.assert_array_equal(block_X, want_X)
        np.testing.assert_array_equal(block_w, want_w)
    assert all(len(block_X) == rows for block_X, _ in blocks[:-1])


NAMES = ["x0", "x1", "x2"]
FIT_ROWS = 500
FIT_MISSING = [3, 63, 64, 65, 127, 128, FIT_ROWS - 1]  # x1 empty, around block boundaries


@pytest.fixture(scope="module")
def weighted_files(tmp_path_factory) -> dict[str, Path]:
    """FIT_ROWS rows of 3 features (x1 missing in the FIT_MISSING rows) with weights 0..4,
    as CSV and as Parquet (row groups of 100 rows, so that batches also break at row
    group ends); and the table itself."""
    folder = tmp_path_factory.mktemp("positions")
    X, _ = make_mixture(21, n_samples=FIT_ROWS, n_features=len(NAMES), n_components=3)
    weights = np.random.default_rng(22).integers(0, 5, FIT_ROWS).astype(float)
    columns = {name: X[:, i] for i, name in enumerate(NAMES)}
    columns["x1"] = pa.array(X[:, 1], mask=np.isin(np.arange(FIT_ROWS), FIT_MISSING))
    table = pa.table({**columns, "w": weights})
    pa_csv.write_csv(table, folder / "data.csv")
    pq.write_table(table, folder / "data.parquet", row_group_size=100)
    return {"csv": folder / "data.csv", "parquet": folder / "data.parquet", "table": table}


@pytest.mark.parametrize(
    ("covariance_type", "init", "dtype"),
    [
        ("full", "kmeans", "float64"),
        ("tied", "kmeans++", "float64"),
        ("diag", "random", "float32"),
        ("spherical", "random-from-data", "float64"),
    ],
)
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_streamed_fit_in_small_blocks_equals_the_in_memory_fit(
    weighted_files, fmt, covariance_type, init, dtype
):
    options = dict(
        covariance_type=covariance_type, init=init, dtype=dtype, n_init=2, max_iter=20, seed=5
    )
    table = weighted_files["table"]
    with blocks_of(64):  # ~500 rows: 8 blocks, the last short; chunks of 37 rows cut across
        in_memory = gmmcli.fit(table, 3, weights="w", columns=NAMES, drop_missing=True, **options)
        path = str(weighted_files[fmt])
        rows = FileRows(path, fmt, NAMES, "w", chunk_rows=37, missing="drop")
        assert rows.block_rows == 64
        streamed = fit_rows(rows, 3, FitOptions(**options), feature_names=NAMES)
    complete = np.isin(np.arange(FIT_ROWS), FIT_MISSING, invert=True)
    counted = complete & (table["w"].to_numpy() > 0)  # rows of weight 0 are not samples
    assert in_memory.fit_info.n_samples == counted.sum()
    assert modelfile.to_dict(streamed) == modelfile.to_dict(in_memory)


def test_weights_as_a_column_of_a_2d_array_fit_the_bytes_of_a_contiguous_copy():
    X, _ = make_mixture(1, n_samples=700, n_features=3, n_components=2)
    weights = np.random.default_rng(0).integers(0, 4, len(X)).astype(float)
    data = np.column_stack([X, weights])  # weights in its last column: a strided view
    assert not data[:, 3].flags.c_contiguous
    strided = gmmcli.fit(data[:, :3], 2, weights=data[:, 3], seed=1)
    contiguous = gmmcli.fit(data[:, :3], 2, weights=np.ascontiguousarray(data[:, 3]), seed=1)
    assert modelfile.to_dict(strided) == modelfile.to_dict(contiguous)


# --- the command line --------------------------------------------------------------------

CLI_ROWS = 230
CLI_TILE = 16
CLI_SUM_ROWS = 8
CLI_NAMES = ["x0", "x1", "x2", "x3", "x4"]
MISSING = [0, 15, 16, 17, 100, CLI_ROWS - 1]  # x0 empty: at a tile's edges, first and last


@pytest.fixture
def cli_files(tmp_path, monkeypatch) -> Path:
    """data.csv and data.parquet (row groups of 50 rows): CLI_ROWS rows of CLI_NAMES (x0
    missing in the MISSING rows) and float weights w; and model.json, a 3-component model of them.
    In the current directory, with small prediction tiles and sum blocks for the test."""
    monkeypatch.chdir(tmp_path)
    X, _ = make_mixture(31, n_samples=CLI_ROWS, n_features=len(CLI_NAMES), n_components=3)
    weights = np.random.default_rng(32).uniform(0.5, 3.0, CLI_ROWS)  # never whole numbers
    columns = {name: X[:, i] for i, name in enumerate(CLI_NAMES)}
    columns["x0"] = pa.array(X[:, 0], mask=np.isin(np.arange(CLI_ROWS), MISSING))
    table = pa.table({**columns, "w": weights})
    pa_csv.write_csv(table, "data.csv")
    pq.write_table(table, "data.parquet", row_group_size=50)
    ok(gmm("fit data.csv -k 3 --exclude w --drop-missing --seed 3 -q -o model.json"))
    monkeypatch.setattr(model, "PREDICTION_TILE_ROWS", CLI_TILE)
    monkeypatch.setattr(outputs, "SUM_ROWS", CLI_SUM_ROWS)
    return tmp_path


def ways(fmt: str) -> dict[str, tuple[str, list[str]]]:
    """How data.``fmt`` is read: {way: (the input argument, options)}; read whole,
    streamed in chunks of 7 rows or of 1 row, and from stdin (CSV in chunks of 7 rows,
    Parquet read whole)."""
    path, streamed = f"data.{fmt}", ["--chunk-rows"]
    return {
        "whole": (path, []),
        "streamed": (path, [*streamed, "7"]),
        "streamed by row": (path, [*streamed, "1"]),
        "stdin": ("-", ["--format", fmt, "--chunk-rows", "7"]),
    }


def run_each_way(
    command: list[str], fmt: str, output: list[str]
) -> dict[str, tuple[bytes | None, bytes]]:
    """``command`` (its input left out) on data.``fmt`` each way, with ``output`` (a flag
    and a file name, or nothing) last: {way: (the output file's bytes, stdout)}."""
    found = {}
    for way, (source, extra) in ways(fmt).items():
        named = [*output[:-1], f"{way}-{output[-1]}"] if output else []
        data = Path(f"data.{fmt}").read_bytes() if source == "-" else None
        result = ok(gmm([command[0], source, *command[1:], *extra, *named], input=data))
        found[way] = Path(named[-1]).read_bytes() if named else None, result.stdout_bytes
    return found


@pytest.mark.parametrize("output", ["csv", "parquet"])
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_classify_whole_streamed_or_stdin_writes_the_same_bytes(cli_files, fmt, output):
    command = ["classify", "-m", "model.json", "--drop-missing", "-q"]
    found = run_each_way(command, fmt, ["-o", f"out.{output}"])
    assert all(found[way] == found["whole"] for way in found), found.keys()


@pytest.mark.parametrize("output", ["csv", "parquet"])
@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_score_whole_streamed_or_stdin_writes_the_same_bytes(cli_files, fmt, output):
    command = ["score", "-m", "model.json", "--weight-column", "w", "--drop-missing", "-q"]
    found = run_each_way(command, fmt, ["--per-sample", f"scores.{output}"])
    # the rows' scores, and the summary's bytes
    assert all(found[way] == found["whole"] for way in found), found.keys()
    summary = found["whole"][1]
    assert json.loads(summary)["n_samples"] == CLI_ROWS - len(MISSING), summary
    # The summary alone (no per-sample table, so no other column read) is the same bytes.
    alone = run_each_way(command, fmt, [])
    assert all(stdout == summary for _, stdout in alone.values()), alone
