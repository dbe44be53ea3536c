"""Tests of gmmcli.io.tables: formats, reading, column selection, checks and atomic writes."""

from __future__ import annotations

import errno
import io
import os

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from gmmcli.errors import UserError
from gmmcli.flags import flag
from gmmcli.io import tables
from gmmcli.io.tables import (
    Features,
    atomic_write_bytes,
    format_for,
    parse_column_list,
    read_table,
    require_complete,
    select_features,
    write_table,
)


class _Pipe(io.RawIOBase):
    """A non-seekable byte source, like standard input fed by a pipe."""

    def __init__(self, data: bytes):
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        return self._data.readinto(buffer)


def _pipe(data: bytes) -> io.BufferedReader:
    return io.BufferedReader(_Pipe(data))


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def _user_error(func, *args, **kwargs) -> str:
    """The message of the UserError that func raises, as the command line words it (its
    parameters named by their flags); checks it is one line."""
    with pytest.raises(UserError) as info:
        func(*args, **kwargs)
    message = info.value.describe(flag)
    assert "\n" not in message
    return message


# --- format_for ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("data.csv", "csv"),
        ("DATA.CSV", "csv"),
        ("dir.v2/data.tsv", "tsv"),
        ("data.parquet", "parquet"),
        ("data.PQ", "parquet"),
        ("-", "csv"),
    ],
)
def test_format_for_extension(path, expected):
    assert format_for(path, None) == expected


def test_format_for_override_wins():
    assert format_for("data.csv", "parquet") == "parquet"
    assert format_for("-", "TSV") == "tsv"
    assert format_for("data.txt", "csv") == "csv"


def test_format_for_unknown_extension():
    message = _user_error(format_for, "data.txt", None)
    assert "'data.txt'" in message and "--format" in message
    message = _user_error(format_for, "out", None, for_output=True)
    assert "'out'" in message and "--output-format" in message


def test_format_for_unknown_override():
    assert "'xlsx'" in _user_error(format_for, "data.csv", "xlsx")


# --- read_table ---------------------------------------------------------------------------


def test_read_csv_and_tsv(tmp_path):
    (tmp_path / "d.csv").write_text("a,b\n1,2.5\n3,4\n")
    (tmp_path / "d.tsv").write_text("a\tb\n1\t2.5\n3\t4\n")
    expected = {"a": [1, 3], "b": [2.5, 4.0]}
    assert read_table(str(tmp_path / "d.csv")).to_pydict() == expected
    assert read_table(str(tmp_path / "d.tsv")).to_pydict() == expected
    assert read_table(str(tmp_path / "d.tsv"), "tsv").to_pydict() == expected


def test_read_csv_missing_values_and_infinities():
    data = b"a,b\n1,\n2,NaN\n3,nan\n4,inf\n5,-inf\n"
    table = read_table("-", stdin=io.BytesIO(data))
    assert table.column("b").type == pa.float64()
    assert table.column("b").to_pylist() == [None, None, None, float("inf"), float("-inf")]


@pytest.mark.parametrize("stdin", [io.BytesIO, _pipe])
def test_read_stdin_csv(stdin):
    table = read_table("-", stdin=stdin(b"x,y\n1.5,2\n"))
    assert table.to_pydict() == {"x": [1.5], "y": [2]}


@pytest.mark.parametrize("stdin", [io.BytesIO, _pipe])
def test_read_stdin_parquet(stdin):
    table = pa.table({"x": [1.5, 2.5], "s": ["a", "b"]})
    assert read_table("-", "parquet", stdin=stdin(_parquet_bytes(table))).equals(table)


def test_read_parquet_file(tmp_path):
    table = pa.table({"x": [1.5, 2.5]})
    pq.write_table(table, tmp_path / "d.pq")
    assert read_table(str(tmp_path / "d.pq")).equals(table)


def test_read_missing_file(tmp_path):
    message = _user_error(read_table, str(tmp_path / "nope.csv"))
    assert "nope.csv" in message and "No such file" in message


def test_read_directory(tmp_path):
    (tmp_path / "d.csv").mkdir()
    message = _user_error(read_table, str(tmp_path / "d.csv"))
    assert "d.csv" in message and "directory" in message


def test_read_unreadable(tmp_path, monkeypatch):
    # Simulated: chmod does not stop root, who may run the tests.
    def denied(path, mode):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)

    monkeypatch.setattr(tables, "open", denied, raising=False)
    message = _user_error(read_table, str(tmp_path / "d.csv"))
    assert "d.csv" in message and "Permission denied" in message


@pytest.mark.parametrize("name", ["empty.csv", "empty.tsv", "empty.parquet"])
def test_read_empty_file(tmp_path, name):
    (tmp_path / name).write_bytes(b"")
    assert f"{name}' has no data rows" in _user_error(read_table, str(tmp_path / name))


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_read_empty_stdin(fmt):
    message = _user_error(read_table, "-", fmt, stdin=_pipe(b""))
    assert "stdin has no data rows" in message


def test_read_header_only(tmp_path):
    (tmp_path / "h.csv").write_text("a,b\n")
    assert "has no data rows" in _user_error(read_table, str(tmp_path / "h.csv"))
    pq.write_table(pa.table({"a": pa.array([], pa.float64())}), tmp_path / "h.parquet")
    assert "has no data rows" in _user_error(read_table, str(tmp_path / "h.parquet"))


def test_read_truncated_parquet(tmp_path):
    data = _parquet_bytes(pa.table({"x": np.arange(1000.0)}))
    (tmp_path / "t.parquet").write_bytes(data[: len(data) // 2])
    message = _user_error(read_table, str(tmp_path / "t.parquet"))
    assert "'" + str(tmp_path / "t.parquet") + "' is not a valid Parquet file (truncated?)" in (
        message
    )


def test_read_csv_as_parquet(tmp_path):
    (tmp_path / "d.parquet").write_text("a,b\n1,2\n")
    assert "not a valid Parquet file" in _user_error(read_table, str(tmp_path / "d.parquet"))


def test_read_ragged_csv(tmp_path):
    (tmp_path / "r.csv").write_text("a,b,c\n1,2,3\n4,5\n")
    message = _user_error(read_table, str(tmp_path / "r.csv"))
    assert "r.csv" in message and "Expected 3 columns, got 2" in message


# --- select_features ----------------------------------------------------------------------


def _mixed_table() -> pa.Table:
    return pa.table(
        {
            "x1": [1.0, 2.0, 3.0],
            "label": ["a", "b", "c"],
            "x2": [4, 5, 6],
            "w": [1.0, 0.0, 2.0],
            "component": [0, 1, 0],
            "true_component": [0, 1, 1],
            "log_likelihood": [-1.0, -2.0, -3.0],
            "p_0": [0.5, 0.5, 0.5],
            "p_12": [0.5, 0.5, 0.5],
            "p_x": [7.0, 8.0, 9.0],
            "flag": [True, False, True],
        }
    )


def test_select_defaults_skip_weight_strings_and_own_columns():
    features = select_features(_mixed_table(), weight_column="w")
    assert features.names == ["x1", "x2", "p_x"]
    np.testing.assert_array_equal(features.X, [[1, 4, 7], [2, 5, 8], [3, 6, 9]])
    assert features.X.dtype == np.float64 and features.X.flags.c_contiguous
    np.testing.assert_array_equal(features.weights, [1.0, 0.0, 2.0])
    assert not features.missing.any()


def test_select_exclude():
    features = select_features(_mixed_table(), exclude=["x2", "p_x"])
    assert features.names == ["x1", "w"]
    assert features.weights is None


def test_select_by_name_in_given_order():
    table = _mixed_table()
    features = select_features(table, columns=["p_x", "x1", "component"])
    assert features.names == ["p_x", "x1", "component"]
    np.testing.assert_array_equal(features.X[:, 0], [7, 8, 9])
    np.testing.assert_array_equal(features.X[:, 2], [0, 1, 0])


def test_select_string_column_explicitly():
    table = read_table("-", stdin=io.BytesIO(b"x1,x2\n1,2\n,3\n 4,5\nabc,6\n"))
    message = _user_error(select_features, table, columns=["x1", "x2"], source="data.csv")
    assert "column 'x1' in data.csv is not numeric: row 4 has 'abc'" in message


def test_select_late_non_number_found():
    # Far beyond pyarrow's first 1 MB block: inference still covers the whole file.
    rows = b"".join(b"%d,%d\n" % (i, i) for i in range(200_000))
    table = read_table("-", stdin=io.BytesIO(b"x1,x2\n" + rows + b"oops,1\n"))
    assert table.column("x1").type == pa.string()
    for columns in (["x1"], None):  # by default too: numbers with a typo are not text
        message = _user_error(select_features, table, columns=columns, source="big.csv")
        assert "row 200001 has 'oops'" in message


def test_select_bool_column_explicitly():
    message = _user_error(select_features, _mixed_table(), columns=["flag"], source="d.csv")
    assert "column 'flag' in d.csv is not numeric (type bool)" in message


def test_select_unknown_column():
    message = _user_error(select_features, _mixed_table(), columns=["x1", "x3"], source="d.csv")
    assert "column 'x3' not found in d.csv" in message and "x1, label, x2" in message
    assert "'nope'" in _user_error(select_features, _mixed_table(), exclude=["nope"])


def test_select_column_listed_twice():
    assert "'x1' is listed twice" in _user_error(
        select_features, _mixed_table(), columns=["x1", "x1"]
    )


def test_select_columns_win_over_exclude():
    features = select_features(_mixed_table(), columns=["x1", "x2"], exclude=["x2"])
    assert features.names == ["x1", "x2"]


def test_select_no_numeric_column():
    table = pa.table({"s": ["a", "b"], "component": [0, 1]})
    message = _user_error(select_features, table, source="d.csv")
    assert "d.csv has no numeric columns" in message and "s, component" in message


def test_select_non_finite_values_mark_rows_missing():
    table = pa.table({"a": [1.0, None, 3.0, 4.0, 5.0], "b": [1, 2, 3, None, 5]})
    table = table.append_column("c", pa.array([1.0, 2.0, np.inf, 4.0, np.nan]))
    features = select_features(table)
    np.testing.assert_array_equal(features.missing, [False, True, True, True, True])
    assert np.isnan(features.X[1, 0]) and np.isnan(features.X[3, 1])


def test_float_columns_are_read_from_arrow_buffers_with_nulls_as_nan():
    """Chunks that start inside their buffers (past a byte of the validity bitmap too),
    empty ones, nulls and a column of nulls: the values pyarrow's own conversion gives."""
    values = pa.array([float(i) if i % 3 else None for i in range(30)])
    column = pa.chunked_array(
        [
            values.slice(11, 13),
            pa.array([], pa.float64()),
            pa.array([-0.0, np.inf, None, np.nan]),
            pa.nulls(3, pa.float64()),
            values.slice(1, 2),
        ]
    )
    expected = column.to_numpy()
    assert np.isnan(expected).sum() == 9  # the test's premise: NaN for 8 nulls, and a NaN
    np.testing.assert_array_equal(tables.float_array(column), expected)
    assert np.signbit(tables.float_array(column)[13])


def test_select_all_empty_column_explicitly():
    table = read_table("-", stdin=io.BytesIO(b"a,b\n1,\n2,\n"))
    assert select_features(table).names == ["a"]
    assert select_features(table, columns=["a", "b"]).missing.all()


def test_weight_column_missing():
    message = _user_error(select_features, _mixed_table(), weight_column="wt", source="d.csv")
    assert "column 'wt' not found in d.csv" in message


def test_weight_column_not_numeric():
    message = _user_error(select_features, _mixed_table(), weight_column="label", source="d.csv")
    assert "weight column 'label' in d.csv is not numeric: row 1 has 'a'" in message


def test_weight_null_or_nan_marks_row_missing():
    table = pa.table({"x": [1.0, 2.0, 3.0], "w": [1.0, None, np.nan]})
    features = select_features(table, weight_column="w")
    np.testing.assert_array_equal(features.missing, [False, True, True])


@pytest.mark.parametrize(("bad", "shown"), [(-0.5, "-0.5"), (np.inf, "inf"), (-np.inf, "-inf")])
def test_weight_negative_or_infinite(bad, shown):
    table = pa.table({"x": [1.0, 2.0, 3.0], "w": [1.0, 2.0, bad]})
    message = _user_error(select_features, table, weight_column="w", source="d.csv")
    assert f"weight column 'w' in d.csv has {shown} at row 3" in message


def test_weights_all_zero():
    table = pa.table({"x": [1.0, 2.0], "w": [0, 0]})
    message = _user_error(select_features, table, weight_column="w", source="d.csv")
    assert "weight column 'w' in d.csv has no positive weight" in message


# --- require_complete ---------------------------------------------------------------------


def _features(X, weights=None) -> Features:
    X = np.asarray(X, dtype=float)
    missing = ~np.isfinite(X).all(axis=1)
    if weights is not None:
        weights = np.asarray(weights, dtype=float)
        missing |= np.isnan(weights)
    name = None if weights is None else "w"
    return Features(X=X, names=["x1", "x2"], weights=weights, missing=missing, weight_column=name)


def test_require_complete_passes_complete_data():
    features = _features([[1, 2], [3, 4]])
    assert require_complete(features, source="d.csv", missing="refuse") == (features, 0)


def test_require_complete_names_column_and_row():
    features = _features([[1, 2], [3, 4], [5, 6], [7, 8], [9, np.inf], [np.nan, 1]])
    message = _user_error(require_complete, features, source="data.csv", missing="refuse")
    assert message == (
        "column 'x2' in data.csv has a missing or infinite value at row 5; "
        "clean it, or set --missing to drop (leave such rows out) or marginal (fit and "
        "predict through missing features)"
    )


def test_require_complete_names_weight():
    features = _features([[1, 2], [3, 4]], weights=[1, np.nan])
    message = _user_error(require_complete, features, source="d.csv", missing="refuse")
    assert "weight column 'w' in d.csv has a missing or infinite value at row 2" in message


def test_require_complete_drops_rows():
    features = _features([[1, 2], [np.nan, 4], [5, 6], [7, -np.inf]], weights=[1, 2, 3, 4])
    kept, dropped = require_complete(features, source="d.csv", missing="drop")
    assert dropped == 2
    np.testing.assert_array_equal(kept.X, [[1, 2], [5, 6]])
    np.testing.assert_array_equal(kept.weights, [1, 3])
    np.testing.assert_array_equal(kept.missing, [False, False])
    assert kept.names == ["x1", "x2"]


def test_require_complete_all_rows_dropped():
    features = _features([[np.nan, 2], [3, np.inf]])
    message = _user_error(require_complete, features, source="d.csv", missing="drop")
    assert "every row of d.csv has a missing or infinite value" in message


def test_require_complete_only_zero_weights_left():
    features = _features([[1, 2], [np.nan, 4]], weights=[0, 1])
    message = _user_error(require_complete, features, source="d.csv", missing="drop")
    assert "has weight zero" in message


# --- parse_column_list --------------------------------------------------------------------


def test_parse_column_list():
    assert parse_column_list(None) is None
    assert parse_column_list("a, b,c") == ["a", "b", "c"]
    assert parse_column_list("x") == ["x"]


@pytest.mark.parametrize("text", ["", "a,,b", "a,", " , b"])
def test_parse_column_list_empty_name(text):
    assert "empty column name" in _user_error(parse_column_list, text)


# --- write_table --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["out.csv", "out.tsv", "out.parquet"])
def test_write_read_round_trip(tmp_path, name):
    table = pa.table({"x": [0.1, 1 / 3, -2.5e-300], "label": ["a,b", 'say "hi"', "tab\there"]})
    write_table(table, str(tmp_path / name))
    assert read_table(str(tmp_path / name)).equals(table)


@settings(max_examples=50, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 20), st.integers(1, 4))))
def test_csv_round_trip_is_exact(X):
    """Every float64, subnormals, infinities and NaN included, survives CSV text."""
    sink = io.BytesIO()
    write_table(pa.table({f"x{j}": X[:, j] for j in range(X.shape[1])}), "-", stdout=sink)
    table = read_table("-", stdin=io.BytesIO(sink.getvalue()))
    # Named explicitly: an all-NaN column reads back typed null, which the default skips.
    names = [f"x{j}" for j in range(X.shape[1])]
    np.testing.assert_array_equal(select_features(table, columns=names).X, X)


def test_write_stdout_csv_and_parquet():
    table = pa.table({"x": [1.5, 2.5]})
    sink = io.BytesIO()
    write_table(table, None, stdout=sink)
    assert sink.getvalue() == b'"x"\n1.5\n2.5\n'
    sink = io.BytesIO()
    write_table(table, "-", "parquet", stdout=sink)
    assert pq.read_table(io.BytesIO(sink.getvalue())).equals(table)


def test_write_unknown_extension(tmp_path):
    message = _user_error(write_table, pa.table({"x": [1]}), str(tmp_path / "out.txt"))
    assert "--output-format" in message
    assert not (tmp_path / "out.txt").exists()


def test_write_missing_folder(tmp_path):
    message = _user_error(write_table, pa.table({"x": [1]}), str(tmp_path / "no" / "out.csv"))
    assert "does not exist" in message and "no" in message


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_failed_write_keeps_old_file(tmp_path, monkeypatch, error):
    target = tmp_path / "out.csv"
    target.write_text("old\n")

    def half_written(table, sink, options=None):
        sink.write(b"x\n1.0\n")
        raise error("boom")

    monkeypatch.setattr(pa_csv, "write_csv", half_written)
    with pytest.raises(error):
        write_table(pa.table({"x": [1.0, 2.0]}), str(target))
    assert target.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["out.csv"]


def test_write_replaces_old_file(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("old\n")
    write_table(pa.table({"x": [1.0]}), str(target))
    assert target.read_text() == '"x"\n1\n'
    assert os.listdir(tmp_path) == ["out.csv"]


def test_parquet_row_groups(tmp_path):
    target = tmp_path / "big.parquet"
    write_table(pa.table({"i": np.arange(300_000, dtype=np.int32)}), str(target))
    metadata = pq.ParquetFile(target).metadata
    sizes = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
    assert sum(sizes) == 300_000 and max(sizes) <= 131072


def test_atomic_write_bytes(tmp_path):
    atomic_write_bytes(str(tmp_path / "m.json"), b"{}\n")
    assert (tmp_path / "m.json").read_bytes() == b"{}\n"
