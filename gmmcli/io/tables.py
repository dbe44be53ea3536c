"""Data tables in and out: CSV, TSV and Parquet through pyarrow, column selection, checks.

Row numbers in messages are 1-based data rows (the header line is not counted).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import os
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from gmmcli.errors import GMMWarning, UserError, one_line
from gmmcli.io.atomic import atomic_write_bytes, atomic_writer

__all__ = [
    "FORMATS",
    "GMMCLI_COLUMNS",
    "CLASSIFY_COLUMNS",
    "PREDICTED_COLUMNS",
    "Features",
    "atomic_write_bytes",
    "atomic_writer",
    "clean_names",
    "features_of",
    "format_for",
    "given_labels",
    "parse_column_list",
    "read_table",
    "require_complete",
    "select_features",
    "write_table",
    "written_alike",
]

FORMATS = ("csv", "tsv", "parquet")
_EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet"}
# pyarrow's codecs for compressed CSV and TSV, by the last extension (data.csv.gz).
COMPRESSIONS = {".gz": "gzip", ".zst": "zstd", ".bz2": "bz2"}

# Columns gmmcli writes itself; skipped when features are chosen by default. Those it
# predicts from a model are replaced when its output is fed back (classify's by classify,
# score's by score), and no input may name one as a feature; generate's truth and impute's
# draw may be named. Use as ``GMMCLI_COLUMNS.fullmatch(name)``.
CLASSIFY_COLUMNS = re.compile(r"component|p_\d+|predicted_label|p_label_.*")
PREDICTED_COLUMNS = re.compile(rf"{CLASSIFY_COLUMNS.pattern}|log_likelihood")
GMMCLI_COLUMNS = re.compile(rf"{PREDICTED_COLUMNS.pattern}|true_component|true_label|draw")


def format_for(path: str, override: str | None, *, for_output: bool = False) -> str:
    """The format of ``path``: ``override`` if given, csv for "-", else from the extension
    (the one before a compression's: data.csv.gz is CSV)."""
    stem, suffix = os.path.splitext(path)
    if override is not None:
        if override.lower() not in FORMATS:
            raise UserError(f"unknown format '{override}'; use csv, tsv or parquet")
        fmt = override.lower()
    elif path == "-":
        return "csv"
    else:
        named = stem if compression_for(path) else path  # data.csv.gz: by its .csv
        fmt = _EXTENSIONS.get(os.path.splitext(named)[1].lower())
    if fmt is None:
        option = "output_format" if for_output else "format"
        raise UserError(
            f"cannot tell the format of '{path}' from its extension; use .csv or .tsv "
            f"(compressed: .csv.gz, .csv.zst, .csv.bz2, ...), .parquet or {{{option}}}",
            (option,),
        )
    if fmt == "parquet" and compression_for(path):
        raise UserError(
            f"'{path}' is named as compressed Parquet; Parquet compresses its own pages: "
            f"name the file without '{suffix}'"
        )
    return fmt


def compression_for(path: str) -> str | None:
    """The codec of a compressed CSV or TSV file, by its last extension; None if none."""
    return COMPRESSIONS.get(os.path.splitext(path)[1].lower())


def open_input(path: str) -> pa.NativeFile:
    """The file at ``path`` as an Arrow stream, decompressed as its extension says."""
    return pa.input_stream(path, compression=compression_for(path))


def read_table(
    path: str,
    fmt: str | None = None,
    stdin: BinaryIO | None = None,
    name: str | None = None,
    text: str | None = None,
) -> pa.Table:
    """Read a whole table from ``path`` ("-" for ``stdin``, default standard input), its
    names checked (clean_names); messages call it ``name`` (default: stdin, or the path
    quoted). The CSV column ``text`` (labels) is read as text, as written.

    pyarrow reads the file by its path, or stdin from a copy in Arrow's own memory: its
    reader threads must not hold Python objects, whose release at interpreter exit would
    abort the process.
    """
    fmt = format_for(path, fmt)
    if path == "-":
        name = name or "stdin"
        source = pa.BufferReader(arrow_copy((stdin or sys.stdin.buffer).read()))
        empty = source.size() == 0
    else:
        name = name or f"'{path}'"
        empty = _is_empty(path, name)
        source = path
    table = pa.table({}) if empty else _read(source, fmt, name, text)
    names = clean_names(column_names(table, name), name, text=fmt != "parquet")
    table = table.rename_columns(names)
    if table.num_rows == 0:
        raise UserError(f"{name} has no data rows; give a file with at least one row of data")
    return table


def _is_empty(path: str, name: str) -> bool:
    """Whether the file at ``path`` holds no bytes (once decompressed), or a UserError if
    it cannot be read."""
    try:
        with open(path, "rb") as f:  # a readable regular file, or a clear error
            if not f.read(1):
                return True
    except OSError as e:
        raise UserError(
            f"cannot read {name}: {e.strerror}; check the path and permissions"
        ) from None
    if compression_for(path) is None:
        return False
    try:
        with open_input(path) as f:
            return not f.read(1)
    except OSError as e:  # pyarrow's codec: not what the extension says
        raise unreadable(name, e) from None


def unreadable(name: str, err: OSError) -> UserError:
    """A file that fails while read (a compressed one truncated, or in another codec)."""
    return UserError(
        f"cannot read {name}: {one_line(err)}; check the file: is it whole, and in the "
        "format its extension says?"
    )


def _read(source: str | pa.NativeFile, fmt: str, name: str, text: str | None = None) -> pa.Table:
    if fmt == "parquet":
        try:
            # As one file (pq.read_table would load pyarrow.dataset, and pandas with it);
            # pre-buffering ~doubles peak memory.
            with pq.ParquetFile(
                source, pre_buffer=False, page_checksum_verification=True
            ) as parquet:
                clean_names(parquet.schema_arrow.names, name, text=False)  # before it fails
                return parquet.read()
        except (pa.ArrowException, OSError) as err:  # a bad footer, checksum or page
            why = "truncated?" if isinstance(err, pa.ArrowInvalid) else one_line(err)
            raise UserError(
                f"{name} is not a valid Parquet file ({why}); "
                "check the file, or pass {format} if it is not Parquet",
                ("format",),
            ) from None
    delimiter = "\t" if fmt == "tsv" else ","
    types = {} if text is None else {text: pa.string()}
    try:
        with open_input(source) if isinstance(source, str) else source as stream:
            return pa_csv.read_csv(
                stream,
                parse_options=pa_csv.ParseOptions(delimiter=delimiter),
                convert_options=pa_csv.ConvertOptions(column_types=types),
            )
    except OSError as e:
        raise unreadable(name, e) from None
    except pa.ArrowInvalid as e:
        detail = one_line(e)
        raise UserError(
            f"cannot read {name} as {fmt.upper()}: {detail}; "
            f"fix the file, or pass {{format}} if it is not {fmt.upper()}",
            ("format",),
        ) from None


def arrow_copy(data: bytes) -> pa.Buffer:
    """``data`` in Arrow's own memory (no Python object for pyarrow's threads to hold)."""
    sink = pa.BufferOutputStream()
    sink.write(data)
    return sink.getvalue()


def column_names(table: pa.Table, source: str) -> list[str]:
    """The names of a table read from a file, or a UserError if one is not UTF-8 text."""
    try:
        return table.column_names
    except UnicodeDecodeError:
        raise UserError(
            f"{source} has a column name that is not UTF-8 text; save the file as UTF-8"
        ) from None


def clean_names(names: list[str], source: str, *, text: bool = True) -> list[str]:
    """Column names, checked: an empty name (but the first, an index as pandas and R write
    it) or a name given twice is a UserError; names that differ by case are different
    columns. A text header's (``text``: CSV, TSV) lose a byte-order mark and surrounding
    spaces first; a Parquet schema's are kept as they are."""
    if text:
        names = [name.removeprefix("\ufeff") if i == 0 else name for i, name in enumerate(names)]
        names = [name.strip() for name in names]
    empty = [i + 1 for i, name in enumerate(names) if name == "" and i > 0]
    if empty:
        raise UserError(
            f"column {empty[0]} of {source} has no name; name every column but an index first"
        )
    twice = sorted(name for name, count in collections.Counter(names).items() if count > 1)
    if twice:
        raise repeated_names(twice, source)
    return names


def repeated_names(names: list[str], source: str) -> UserError:
    listed = ", ".join(f"'{name}'" for name in names)
    return UserError(f"{source} has more than one column named {listed}; rename them")


def no_positive_weight(weight_column: str, source: str) -> UserError:
    return UserError(
        f"weight column '{weight_column}' in {source} has no positive weight; "
        "give at least one row a weight above zero"
    )


@dataclass(frozen=True)
class Features:
    """The feature matrix of a table, with optional row weights."""

    X: np.ndarray  # float64 (n_rows, n_features), C-contiguous unless asked; NaN: missing
    names: list[str]
    weights: np.ndarray | None  # float64 (n_rows,)
    missing: np.ndarray  # bool (n_rows,): a feature or the weight is null, NaN or ±inf
    weight_column: str | None = None
    first_row: int = 0  # rows of the file before these (for a chunk of a longer file)
    labels: pa.Array | None = None  # text (n_rows,), null for no label (label_texts)


def select_features(
    table: pa.Table,
    *,
    columns: list[str] | None = None,
    exclude: list[str] = (),
    weight_column: str | None = None,
    source: str = "input",
    first_row: int = 0,
    require_positive: bool = True,
    notice: Callable[[GMMWarning], None] | None = None,
) -> Features:
    """Pick the feature columns (and weights) of ``table`` as float64 arrays (features_of).

    ``columns`` names exactly the features, in order; without it the default features
    (default_feature_names, told to ``notice``). Names in ``exclude`` must exist, but only
    the default choice is affected by them. For a chunk of a longer file, ``first_row`` is
    the rows before it (row numbers in messages count from the file's start) and
    ``require_positive=False`` leaves the check for a positive weight to the whole file.
    """
    for name in exclude:
        _column(table, name, source)  # an unknown name is a typo: say so
    if columns is None:
        candidates = [f for f in table.schema if may_be_feature(f.name, exclude, weight_column)]
        for field in candidates:
            if is_text(field.type) and has_numbers(table.column(field.name)):
                _floats(table, field.name, source, first_row)  # a typo among numbers: say where
        head = table.slice(0, FIRST_ROWS)
        names = default_feature_names(table.schema, exclude, weight_column, head, notice)
    else:
        names = list(columns)
        for name in names:
            if names.count(name) > 1:
                raise UserError(f"column '{name}' is listed twice; list each column once")
    if not names:
        raise UserError(
            f"{source} has no numeric columns to use (columns: {listing(table)}); "
            "pick them with {columns}",
            ("columns",),
        )
    return features_of(
        table,
        names,
        weight_column=weight_column,
        source=source,
        first_row=first_row,
        require_positive=require_positive,
    )


def features_of(
    table: pa.Table,
    names: list[str],
    *,
    weight_column: str | None = None,
    source: str = "input",
    first_row: int = 0,
    require_positive: bool = True,
    order: str = "C",
) -> Features:
    """The columns ``names`` of ``table`` (each numeric, else a UserError) as one float64
    array in ``order`` (C: in rows; F: column by column, each column one copy, several
    times faster, for a caller that copies them into rows itself), with the weights
    (checked_weights) and the rows' missing flags; ``first_row`` and ``require_positive``
    as for select_features."""
    X = np.empty((table.num_rows, len(names)), order=order)
    missing = np.zeros(table.num_rows, dtype=bool)
    for j, name in enumerate(names):  # column by column: one column's temporary at a time
        X[:, j] = column = _floats(table, name, source, first_row)
        missing |= ~np.isfinite(column)  # 1M x 10: 5-6 ms by column, 22 ms by row
    weights = None
    if weight_column is not None:
        weights = _floats(table, weight_column, source, first_row, role="weight column")
        weights = checked_weights(weights, weight_column, source, first_row, require_positive)
        missing |= np.isnan(weights)
    return Features(X, names, weights, missing, weight_column, first_row)


def checked_weights(
    weights: np.ndarray,
    weight_column: str,
    source: str,
    first_row: int = 0,
    require_positive: bool = True,
) -> np.ndarray:
    """Weights that are NaN (missing) or finite and not negative, some positive if
    ``require_positive``; else a UserError naming the first bad row."""
    bad = np.flatnonzero((weights < 0) | np.isinf(weights))
    if bad.size:
        raise UserError(
            f"weight column '{weight_column}' in {source} has {float(weights[bad[0]])} "
            f"at row {first_row + bad[0] + 1}; weights must be finite and not negative"
        )
    if require_positive and not (weights > 0).any():
        raise no_positive_weight(weight_column, source)
    return weights


def may_be_feature(name: str, exclude: list[str], weight_column: str | None) -> bool:
    """Whether a column may be a default feature: not the weights, excluded, one gmmcli
    writes or a row index by its name."""
    return (
        name != weight_column
        and name not in exclude
        and not GMMCLI_COLUMNS.fullmatch(name)
        and not is_index_name(name)
    )


# Names of a row index, trimmed and in lower case, as R (rownames, or no name: clean_names
# allows it first only), pandas (Unnamed: 0 and index in CSV, __index_level_0__ in Parquet)
# and databases (id) write it.
INDEX_NAMES = ("", "rownames", "index", "id", "unnamed: 0", "__index_level_0__")
FIRST_ROWS = 1000  # the rows in which a default feature is seen to count like a row index


def is_index_name(name: str) -> bool:
    return name.strip().lower() in INDEX_NAMES


def default_feature_names(
    schema: pa.Schema,
    exclude: list[str],
    weight_column: str | None,
    head: pa.Table | None = None,
    notice: Callable[[GMMWarning], None] | None = None,
) -> list[str]:
    """The numeric columns used when --columns is not given, from a schema: every one but
    the weights, ``exclude``, gmmcli's own columns and a row index by its name. ``notice``
    hears of each index left out, and of each feature that counts 0, 1, 2, ... or 1, 2,
    3, ... in ``head`` (the file's first rows, up to FIRST_ROWS), which stays."""
    numeric = [f.name for f in schema if is_numeric(f.type) and f.name != weight_column]
    names = [name for name in numeric if may_be_feature(name, exclude, weight_column)]
    if notice is None:
        return names
    for name in numeric:
        if is_index_name(name) and name not in exclude:
            notice(_index_left_out(name))
    for name in names if head is not None else []:
        start = counting_from(head.column(name)) if name in head.column_names else None
        if start is not None:
            notice(
                GMMWarning(
                    f"column '{name}' counts {start}, {start + 1}, {start + 2}, ... like a row "
                    "index, but stays a feature; list it in {exclude} to leave it out",
                    ("exclude",),
                )
            )
    return names


def _index_left_out(name: str) -> GMMWarning:
    if name:
        return GMMWarning(
            f"column '{name}' is taken for a row index by its name and left out of the "
            "features; list it in {columns} to keep it",
            ("columns",),
        )
    return GMMWarning(
        "the unnamed first column is taken for a row index (as R and pandas write it) and "
        "left out of the features; name it in the header and list it in {columns} to keep it",
        ("columns",),
    )


def counting_from(values: pa.ChunkedArray) -> int | None:
    """0 or 1 if ``values`` (three or more) count up by one from it, else None."""
    if len(values) < 3 or values.null_count:
        return None
    x = values.cast(pa.float64(), safe=False).to_numpy()
    if x[0] in (0, 1) and np.array_equal(x, x[0] + np.arange(len(x))):
        return int(x[0])
    return None


INTEGER = re.compile(r"[+-]?\d+")


def label_texts(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Class labels as text: each value as a string, trimmed; an empty one, a null, NaN or
    text that CSV reads as null in a number column (NA, NaN, N/A, NULL, ...) is no label
    (null). A whole number written with a zero fraction is the whole number ("2.0" is "2",
    as a column of floats gives it: pandas writes integers with gaps so)."""
    values = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    if pa.types.is_floating(values.type):
        values = pc.if_else(pc.is_nan(values), None, values)
    text = _cleaned(values.cast(pa.string()))
    text = pc.replace_substring_regex(text, r"^([+-]?\d+)\.0+$", r"\1")
    return pc.if_else(pc.equal(text, ""), None, text)


def given_labels(values: object) -> pa.Array:
    """One label a row given in Python (a list, array or pandas Series; None, NaN and
    pandas' NA are no label) as label_texts."""
    if np.ndim(values) != 1:
        raise UserError("labels must be one label a row (a column's name, or a 1-D sequence)")
    try:
        array = pa.array(values, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # of several types, such as 1 and "a"
        array = pa.array([None if _no_label(v) else str(v) for v in values], pa.string())
    return label_texts(array)


def _no_label(value: object) -> bool:
    """Whether a label given in Python is None, NaN or pandas' NA."""
    try:
        return value is None or bool(value != value)
    except TypeError:  # pandas' NA, which is neither equal nor unequal to itself
        return True


def label_column(table: pa.Table, name: str, source: str) -> pa.Array:
    """The label column ``name`` of ``table`` as text (label_texts)."""
    return label_texts(_column(table, name, source))


def class_order(labels: list[str]) -> list[str]:
    """Distinct labels in class order: by value when every one is an integer, else as
    text."""
    distinct = set(labels)
    if all(INTEGER.fullmatch(label) for label in distinct):
        return sorted(distinct, key=lambda label: (int(label), label))  # 1 before 01
    return sorted(distinct)


def class_codes(texts: pa.Array, names: list[str]) -> np.ndarray:
    """Each label's index in ``names`` (-1 for no label or one not among them)."""
    codes = pc.index_in(texts, value_set=pa.array(names, pa.string()))
    return pc.fill_null(codes, -1).to_numpy(zero_copy_only=False).astype(np.intp)


def require_complete(
    features: Features,
    *,
    source: str,
    missing: str,
    allow_empty: bool = False,
    keep_rows: bool = False,
) -> tuple[Features, int]:
    """Rows with a missing (null, NaN) or infinite value, as ``missing`` says: "refuse"
    raises on the first; "drop" leaves them out; "marginal" keeps a row with missing
    features (NaN in X) unless all are missing, and raises on ±inf or a missing weight.
    Returns the features and the rows left out. ``keep_rows`` (prediction) marks the
    rows left out in ``missing`` instead, so outputs stay aligned; ``allow_empty`` lets
    a chunk of a longer file lose all of its rows.
    """
    flagged = features.missing
    if not flagged.any():
        return features, 0
    if missing == "refuse":
        row = int(np.argmax(flagged))
        raise _bad_value(features, source, row, ~np.isfinite(features.X[row]), REFUSED)
    if missing == "marginal":
        rows = features.X[flagged]
        infinite = np.isinf(rows).any(axis=1)
        if features.weights is not None:
            infinite |= ~np.isfinite(features.weights[flagged])
        if infinite.any():
            row = int(np.flatnonzero(flagged)[np.argmax(infinite)])
            columns = np.isinf(features.X[row])
            problem = INFINITE if columns.any() else MISSING_WEIGHT
            raise _bad_value(features, source, row, columns, problem)
        flagged = flagged.copy()
        flagged[flagged] = np.isnan(rows).all(axis=1)  # no feature observed
    n_left_out = int(flagged.sum())
    if keep_rows:
        return dataclasses.replace(features, missing=flagged), n_left_out
    keep = ~flagged
    if not keep.any() and not allow_empty:
        raise UserError(
            f"every row of {source} has a missing or infinite value in the chosen columns; "
            "clean the data or choose other columns"
        )
    weights = None if features.weights is None else features.weights[keep]
    if weights is not None and not (weights > 0).any() and not allow_empty:
        raise UserError(
            f"every row of {source} left after {{missing}} {missing} has weight zero; "
            "clean the data or choose another weight column",
            ("missing",),
        )
    X = features.X[keep]
    labels = None if features.labels is None else features.labels.filter(pa.array(keep))
    kept = dataclasses.replace(
        features, X=X, weights=weights, missing=np.zeros(len(X), bool), labels=labels
    )
    return kept, n_left_out


REFUSED = (
    "has a missing or infinite value",
    "clean it, or set {missing} to drop (leave such rows out) or marginal (fit and predict "
    "through missing features)",
)
INFINITE = ("has an infinite value", "±inf is never taken for missing: clean it")
MISSING_WEIGHT = ("has a missing or infinite value", "a weight cannot be missing: clean it")


def _bad_value(
    features: Features, source: str, row: int, columns: np.ndarray, problem: tuple[str, str]
) -> UserError:
    """The error for a value at ``row``: in the first of ``columns``, else the weight."""
    where = (
        f"column '{features.names[np.argmax(columns)]}'"
        if columns.any()
        else f"weight column '{features.weight_column}'"
    )
    what, how = problem
    return UserError(
        f"{where} in {source} {what} at row {features.first_row + row + 1}; {how}", ("missing",)
    )


def is_numeric(dtype: pa.DataType) -> bool:
    return pa.types.is_integer(dtype) or pa.types.is_floating(dtype)


def is_text(dtype: pa.DataType) -> bool:
    return pa.types.is_string(dtype) or pa.types.is_large_string(dtype)


_NUMBER = r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"


def has_numbers(column: pa.ChunkedArray | pa.Array) -> bool:
    """Whether a text column holds numbers (so a non-number in it is likely a typo)."""
    return bool(pc.any(pc.match_substring_regex(column, _NUMBER)).as_py())


def listing(table: pa.Table) -> str:
    names = table.column_names
    return ", ".join(names[:20]) + (f", … ({len(names)} in all)" if len(names) > 20 else "")


def _column(table: pa.Table, name: str, source: str) -> pa.ChunkedArray:
    found = table.schema.get_all_field_indices(name)
    if not found:
        raise UserError(
            f"column '{name}' not found in {source}; available columns: {listing(table)}"
        )
    if len(found) > 1:
        raise repeated_names([name], source)
    return table.column(found[0])


def _floats(
    table: pa.Table, name: str, source: str, first_row: int = 0, role: str = "column"
) -> np.ndarray:
    """Column ``name`` as float64 with NaN for nulls, or a UserError if it is not numeric."""
    column = _column(table, name, source)
    # An all-empty CSV column has type null: accepted here, every value missing.
    if is_numeric(column.type) or pa.types.is_null(column.type):
        return float_array(column.cast(pa.float64(), safe=False))
    bad = None
    if is_text(column.type):
        row = first_not(column.combine_chunks())
        if row is None:  # a chunk of numbers in a column that holds text further on
            return (
                _cleaned(column.combine_chunks()).cast(pa.float64()).to_numpy(zero_copy_only=False)
            )
        bad = (first_row + row + 1, column[row].as_py())
    raise not_numeric(f"{role} '{name}'", source, column.type, bad)


def float_array(column: pa.ChunkedArray) -> np.ndarray:
    """A float64 column as a numpy array, NaN for nulls, read from Arrow's buffers:
    pyarrow's own conversion imports pandas where it is installed (about half a second)."""
    out = np.empty(len(column))
    start = 0
    for chunk in column.chunks:
        stop = start + len(chunk)
        if stop > start:
            validity, data = chunk.buffers()
            out[start:stop] = np.frombuffer(data, np.float64, len(chunk), 8 * chunk.offset)
        if chunk.null_count:
            bits = np.frombuffer(validity, np.uint8)
            valid = np.unpackbits(bits, count=chunk.offset + len(chunk), bitorder="little")
            out[start:stop][valid[chunk.offset :] == 0] = np.nan
        start = stop
    return out


def not_numeric(
    what: str, source: str, dtype: pa.DataType, bad: tuple[int, object] | None
) -> UserError:
    """'``what`` in ``source`` is not numeric', with the first bad (row, value) of a text
    column if known."""
    if bad is not None:
        detail = f": row {bad[0]} has {bad[1]!r}"
    else:
        detail = "" if is_text(dtype) else f" (type {dtype})"
    return UserError(
        f"{what} in {source} is not numeric{detail}; fix the data or leave the column out"
    )


def _cleaned(values: pa.Array) -> pa.Array:
    """Text values trimmed, CSV's null tokens made null."""
    # built here, not at import: pa.array imports pandas when installed (0.2 s per command)
    null_tokens = pa.array(pa_csv.ConvertOptions().null_values)
    values = pc.utf8_trim_whitespace(values)
    return pc.if_else(pc.is_in(values, value_set=null_tokens), None, values)


def first_not(values: pa.Array, dtype: pa.DataType | None = None) -> int | None:
    """Index of the first text value that is neither a null token nor read as ``dtype``
    (default float64; for the null type: any value), by bisection."""
    dtype = dtype or pa.float64()
    values = _cleaned(values)
    if pa.types.is_null(dtype):
        valid = np.flatnonzero(values.is_valid().to_numpy(zero_copy_only=False))
        return int(valid[0]) if valid.size else None

    def parses(part: pa.Array) -> bool:
        try:
            part.cast(dtype)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return False
        return True

    if parses(values):
        return None
    lo, hi = 0, len(values)  # values[lo:hi] holds the first bad value
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if parses(values[lo:mid]):
            lo = mid
        else:
            hi = mid
    return lo


def parse_column_list(text: str | None, item: str = "column name") -> list[str] | None:
    """Split a comma list of names (of columns, or of another ``item``): "a, b,c" ->
    ["a", "b", "c"]."""
    if text is None:
        return None
    names = [name.strip() for name in text.split(",")]
    if "" in names:
        raise UserError(f"empty {item} in '{text}'; separate names with single commas")
    return names


def write_table(
    table: pa.Table,
    path: str | None,
    fmt: str | None = None,
    *,
    stdout: BinaryIO | None = None,
    row_group_size: int = 131072,
) -> None:
    """Write ``table`` to ``path`` atomically, or to ``stdout`` (default standard output)
    when ``path`` is "-" or None."""
    path = path or "-"
    fmt = format_for(path, fmt, for_output=True)
    if path != "-":
        with atomic_writer(path) as f, _compressing(f, compression_for(path)) as sink:
            _write(table, sink, fmt, row_group_size)
        return
    out = stdout or sys.stdout.buffer
    _write(table, out, fmt, row_group_size)
    out.flush()


def _write(table: pa.Table, f: BinaryIO, fmt: str, row_group_size: int) -> None:
    if fmt == "parquet":
        pq.write_table(
            table,
            f,
            row_group_size=row_group_size,
            use_dictionary=dictionary_columns(table.schema),
            write_page_checksum=True,
        )
    else:
        options = pa_csv.WriteOptions(delimiter="\t" if fmt == "tsv" else ",")
        with _as_text(fmt):
            pa_csv.write_csv(table, f, options)


def dictionary_columns(schema: pa.Schema) -> list[str]:
    """The columns a Parquet output dictionary-encodes: all but floating point numbers,
    whose values rarely repeat (their dictionaries would cost memory and time only)."""
    return [field.name for field in schema if not pa.types.is_floating(field.type)]


@contextlib.contextmanager
def _compressing(f: BinaryIO, compression: str | None) -> Iterator[BinaryIO | pa.NativeFile]:
    """``f``, or a stream that writes into it compressed with ``compression`` (pyarrow's
    codec; gzip with no time in its header), finished when the block ends."""
    if compression is None:
        yield f
        return
    with pa.CompressedOutputStream(pa.PythonFile(_LeftOpen(f), mode="w"), compression) as sink:
        yield sink


class _LeftOpen:
    """A binary file that closing only flushes: pyarrow's compressed stream closes what it
    writes into, and the file is its atomic writer's to close."""

    closed = False

    def __init__(self, file: BinaryIO):
        self.file = file

    def write(self, data: bytes) -> int:
        return self.file.write(data)

    def flush(self) -> None:
        self.file.flush()

    close = flush


@contextlib.contextmanager
def _as_text(fmt: str) -> Iterator[None]:
    """pyarrow's refusal to write a column as CSV or TSV as a UserError."""
    try:
        yield
    except pa.ArrowInvalid as err:
        raise UserError(
            f"cannot write the output as {fmt.upper()} ({one_line(err)}): a column holds "
            "bytes that are not UTF-8 text, or nested values; write Parquet instead"
        ) from None


def written_alike(values: pa.ChunkedArray) -> bool:
    """Whether numbers are written as they would be as float64 (whole numbers as 5, not
    1.7e+12; float32's 0.1 as 0.1, not 0.10000000149011612)."""
    as_float = pc.cast(values, pa.float64(), safe=False)
    same = pc.equal(pc.cast(values, pa.string()), pc.cast(as_float, pa.string()))
    return pc.all(same).as_py() is not False


class TableWriter:
    """Write a table chunk by chunk to ``path`` (atomically) or to stdout ("-").

    Use as a context manager: the file appears only if the block completes. The first
    chunk fixes the schema; CSV gets one header. Parquet rows are gathered into row groups
    of ``row_group_size`` rows whatever the chunks, so the file is the same however the
    rows were cut. A chunk may hold float64 where the first held other numbers, or the
    reverse (impute makes a column float64 in the chunks where it fills a gap): text is
    written as it comes, and Parquet, whose types the first chunk fixes, takes numbers
    into float64 and refuses the other way (a UserError).
    """

    def __init__(self, path: str, fmt: str | None = None, *, row_group_size: int = 131072):
        self.fmt = format_for(path, fmt, for_output=True)
        self.path = path
        self.row_group_size = row_group_size
        self._writer = None
        self._pending: list[pa.Table] = []  # Parquet rows not yet in a row group
        self._pending_rows = 0
        self._rows = 0  # rows taken so far

    def __enter__(self) -> TableWriter:
        if self.path == "-":
            self._sink = contextlib.nullcontext(sys.stdout.buffer)
        else:
            self._sink = atomic_writer(self.path)
        self._file = self._sink.__enter__()
        self._compressing = _compressing(self._file, compression_for(self.path))
        self._stream = self._compressing.__enter__()
        return self

    def write(self, table: pa.Table) -> None:
        if self._writer is None:
            if self.fmt == "parquet":
                self._writer = pq.ParquetWriter(
                    self._stream,
                    table.schema,
                    use_dictionary=dictionary_columns(table.schema),
                    write_page_checksum=True,
                )
            else:
                options = pa_csv.WriteOptions(delimiter="\t" if self.fmt == "tsv" else ",")
                self._writer = pa_csv.CSVWriter(self._stream, table.schema, write_options=options)
        if self.fmt != "parquet":
            with _as_text(self.fmt):
                self._writer.write_table(table)
        else:
            self._pending.append(self._as_first(table))
            self._pending_rows += table.num_rows
            while self._pending_rows >= self.row_group_size:
                self._write_row_group(self.row_group_size)
        self._rows += table.num_rows

    def _as_first(self, table: pa.Table) -> pa.Table:
        """A later chunk in the schema of the first (numbers cast to float64)."""
        schema = self._writer.schema
        if table.schema.types == schema.types:
            return table
        for name, was, now in zip(schema.names, schema.types, table.schema.types, strict=True):
            if was != now and not (was == pa.float64() and is_numeric(now)):
                where = "stdout" if self.path == "-" else f"'{self.path}'"
                raise UserError(
                    f"column '{name}' turns from {was} into {now} at row {self._rows + 1} of "
                    f"{where}, a Parquet output whose column types its first chunk fixes; "
                    "write CSV or TSV, or read the input whole (no --chunk-rows, a larger "
                    "--memory-limit)"
                )
        return table.cast(schema)

    def _write_row_group(self, rows: int) -> None:
        """The first ``rows`` pending rows as one row group."""
        pending = pa.concat_tables(self._pending)
        group = pending.slice(0, rows).combine_chunks()
        self._writer.write_table(group, row_group_size=rows)
        self._pending, self._pending_rows = [pending.slice(rows)], self._pending_rows - rows

    def __exit__(self, *exc) -> bool:
        try:
            if self._writer is not None:
                if self._pending_rows and exc[0] is None:
                    self._write_row_group(self._pending_rows)
                self._writer.close()
            self._compressing.__exit__(None, None, None)
            self._file.flush()
        except BaseException as err:  # closing failed (a full disk): the sink keeps no file
            if exc[0] is not None:  # the block's own error comes first
                return self._sink.__exit__(*exc)
            self._sink.__exit__(type(err), err, err.__traceback__)  # a UserError for OSError
            raise
        return self._sink.__exit__(*exc)
