"""One way in: a typed description of the input, and the rows the core runs on.

A :class:`Source` says what the user gave (a path or "-" for stdin, or an array or table
in memory) and how to read it: format, columns, weights, missing values, chunks, memory
limit, engine. :func:`open_rows` turns it into the row source a fit runs on (rows in
memory, a file streamed in chunks, stdin spooled to a file first, partitions on a Dask
cluster) with the feature names and the reducer that runs its passes; :func:`predict_rows`
runs a per-row prediction over any source on either engine and writes its table.
Every command and the Python API read through these two.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import re
import secrets
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gmmcli.core.em import SERIAL, InMemoryRows, Reducer, RowSource
from gmmcli.core.model import GaussianMixture
from gmmcli.core.options import Rule, check, one_of, optional, whole_number
from gmmcli.core.select import GridPoint
from gmmcli.engines import local, memory, stream
from gmmcli.errors import FULL, GMMWarning, ParameterConflict, UserError
from gmmcli.io import tables
from gmmcli.io.atomic import check_output_folder, check_output_path

T = TypeVar("T")
ENGINES = ("local", "dask")
MISSING_CHOICES = ("refuse", "drop", "marginal")  # Source.missing


Advance = Callable[[int, str], None]


class Report(Protocol):
    """What a job tells a person (the command line's stderr; from Python, notices only, as
    GMMWarnings): notes, notices about the input (such as a column taken for a row index),
    the features it reads, progress (``progress(total, label)`` yields ``advance(steps,
    text)``; ``grid_progress(total, criterion)`` yields a callback for each grid point
    fitted), the confusion of classes and predicted classes of a score with labels."""

    def note(self, text: str) -> None: ...

    def notice(self, warning: GMMWarning) -> None: ...

    def features(self, names: list[str], weight_column: str | None, detail: str = "") -> None: ...

    def confusion(self, names: list[str], counts: list[list[float]]) -> None: ...

    def progress(self, total: int, label: str) -> contextlib.AbstractContextManager[Advance]: ...

    def grid_progress(
        self, total: int, criterion: str
    ) -> contextlib.AbstractContextManager[Callable[[GridPoint], None]]: ...


class Quiet:
    """The report of Python callers: nothing printed; notices are raised as GMMWarnings."""

    def note(self, text: str) -> None:
        pass

    def notice(self, warning: GMMWarning) -> None:
        warnings.warn(warning, stacklevel=2)

    def features(self, names: list[str], weight_column: str | None, detail: str = "") -> None:
        pass

    def confusion(self, names: list[str], counts: list[list[float]]) -> None:
        pass

    @contextlib.contextmanager
    def progress(self, total: int, label: str) -> Iterator[Advance]:
        yield lambda steps, text: None

    @contextlib.contextmanager
    def grid_progress(self, total: int, criterion: str) -> Iterator[Callable[[GridPoint], None]]:
        yield lambda point: None


QUIET = Quiet()


def _is_path(data: object) -> bool:
    return isinstance(data, str | os.PathLike)


def _is_array(data: object) -> bool:
    """An array (or nested lists) of rows, as opposed to a table with named columns."""
    return isinstance(data, np.ndarray | list)


def _names(given: str | Sequence[str] | None) -> list[str] | None:
    """Column names as a list (one name alone, or None: no choice made)."""
    if given is None or len(given) == 0:
        return None
    return [given] if isinstance(given, str) else list(given)


def _rows_of(data: object) -> np.ndarray:
    """An array's rows as float64 (one column for a 1-D array), without a copy when they
    are float64 already."""
    X = np.asarray(data, dtype=float)
    X = X[:, None] if X.ndim == 1 else X
    if X.ndim != 2 or 0 in X.shape:
        raise UserError(f"data must be a non-empty 2-D array, got shape {X.shape}")
    return X


@dataclass(frozen=True, eq=False)
class Source:
    """Where rows come from and how they are read; checked on construction.

    Parameters
    ----------
    data : str, path, array or table
        A file (.csv or .tsv, compressed as .csv.gz, .csv.zst or .csv.bz2 too;
        .parquet/.pq), "-" for stdin, a 2-D array, or a table (pandas or polars
        DataFrame, Arrow table, anything with the Arrow PyCapsule interface). With
        ``engine="dask"``: a Parquet file, a folder of them or a glob.
    format : {"csv", "tsv", "parquet"} or None
        The file's format, if not its extension's.
    columns : sequence of str or None
        The feature columns (default: every numeric column but the weights, ``exclude``,
        the columns gmmcli writes and a row index by its name, with a GMMWarning); for an
        array, its columns' names.
    exclude : sequence of str
        Columns left out of the default features.
    weights : str, array or None
        Frequency weights: a column's name, or one weight per row.
    missing : {"refuse", "drop", "marginal"}
        Rows with a missing value (an empty cell, null or NaN): an error ("refuse", the
        default); left out ("drop": fits skip them, predictions leave their outputs
        empty); or taken through the marginal density of the features they have
        ("marginal"; a row with none is left out). ±inf and a missing weight are always
        errors.
    drop_missing : bool
        ``missing="drop"`` (the older name).
    chunk_rows : int or None
        Rows per chunk when a file is streamed (reading only: results do not depend on it).
    memory_limit : str, int or None
        Stream a file when reading it whole would need more (bytes, or "2GB"; default:
        half the memory available).
    engine : {"local", "dask"}
        Where rows are processed.
    scheduler : str or None
        With ``engine="dask"``: a scheduler address, or "local[:N]" (the default).
    labels : str, array or None
        Class labels: a column's name (never a feature), or one label per row. Read as
        text, trimmed; an empty one, a null or NaN is no label. The classes are the
        distinct labels, in numeric order when every one is an integer, else as text.
    """

    data: object
    format: str | None = None
    columns: Sequence[str] | None = None
    exclude: Sequence[str] = ()
    weights: str | np.ndarray | None = field(default=None, repr=False)
    missing: str = "refuse"
    drop_missing: bool = False
    chunk_rows: int | None = None
    memory_limit: str | int | None = None
    engine: str = "local"
    scheduler: str | None = None
    labels: str | np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        check(self, SOURCE_RULES)
        if self.drop_missing:
            if self.missing == "marginal":
                raise ParameterConflict("drop_missing", "missing", "drop or refuse")
            object.__setattr__(self, "missing", "drop")
        object.__setattr__(self, "columns", _names(self.columns))
        object.__setattr__(self, "exclude", _names(self.exclude) or [])
        if not self.is_path and self.format is not None:
            raise UserError(
                "{format} names a file's format; leave it out for data in memory", ("format",)
            )
        for name, column in (("weights", "weight column"), ("labels", "label column")):
            given = getattr(self, name)
            if given is not None and not isinstance(given, str) and self.is_path:
                raise UserError(
                    f"{{{name}}} as an array needs the data in memory; for a file, name its "
                    f"{column}",
                    (name,),
                )
            if isinstance(given, str) and _is_array(self.data):
                raise UserError(
                    f"an array has no named columns: give {{{name}}} as an array of {name}",
                    (name,),
                )
        if self.label_column is not None and self.label_column == self.weight_column:
            raise UserError(
                f"column '{self.label_column}' cannot be both the labels and the weights",
                ("labels", "weights"),
            )
        if self.label_column is not None and self.label_column in (self.columns or []):
            raise UserError(
                f"column '{self.label_column}' holds the labels, which are never a feature: "
                "leave it out of {columns}",
                ("columns",),
            )
        if self.engine == "local":
            if self.scheduler is not None:
                raise ParameterConflict("scheduler", "engine", "dask")
            return
        if not _is_path(self.data) or self.data == "-":
            raise UserError(
                "the dask engine reads Parquet from files, not stdin or memory; "
                "give a file, folder or glob"
            )
        for name in ("chunk_rows", "memory_limit", "format"):
            if getattr(self, name) is not None:
                raise ParameterConflict(name, "engine", "local")

    def refuse_predictions_as_features(self) -> None:
        """For a fit: a UserError for a feature named in ``columns`` as gmmcli's predictions
        are (classify or score would replace it in its own output)."""
        for name in self.columns or []:
            if tables.PREDICTED_COLUMNS.fullmatch(name):
                raise UserError(
                    f"column '{name}' has the name of one of gmmcli's predictions (classify "
                    "or score writes it from a model), so a model cannot take it as a "
                    "feature: rename the column, or leave it out of {columns}",
                    ("columns",),
                )

    def on(self, engine: str, scheduler: str | None = None) -> Source:
        """The same input, read on ``engine`` (checked again)."""
        return dataclasses.replace(self, engine=engine, scheduler=scheduler)

    def with_labels(self, labels: str | np.ndarray | None) -> Source:
        """The same input with these labels (checked again)."""
        return dataclasses.replace(self, labels=labels)

    @property
    def not_features(self) -> list[str]:
        """The columns never taken as features by default: ``exclude``, and the labels."""
        return [*self.exclude, *([self.label_column] if self.label_column else [])]

    @property
    def is_path(self) -> bool:
        return _is_path(self.data)

    @property
    def path(self) -> str:
        return os.fspath(self.data)

    @property
    def name(self) -> str:
        """How messages call the input: stdin, the path, or the data in memory."""
        if not self.is_path:
            return "the data"
        return "stdin" if self.data == "-" else self.path

    @property
    def quoted(self) -> str:
        """The name, a path in quotes."""
        return f"'{self.path}'" if self.is_path and self.data != "-" else self.name

    @property
    def weight_column(self) -> str | None:
        return self.weights if isinstance(self.weights, str) else None

    @property
    def label_column(self) -> str | None:
        return self.labels if isinstance(self.labels, str) else None

    @functools.cached_property
    def memory_bytes(self) -> int:
        """The memory limit in bytes (default: half the memory available now)."""
        if self.memory_limit is None:
            return stream.available_memory() // 2
        return _size(self.memory_limit)

    def file_format(self) -> str:
        return tables.format_for(self.path, self.format)


GLOB_CHARACTERS = re.compile(r"[*?[]")


def require_one_file(source: Source, *, dask_reads_many: bool = True) -> None:
    """A UserError for a folder or a glob given to the local engine, which reads one file;
    ``dask_reads_many``: the command can read them on the dask engine, and says so."""
    if source.engine != "local" or not source.is_path or source.data == "-":
        return
    if os.path.isdir(source.path):
        what = "a folder"
    elif GLOB_CHARACTERS.search(source.path) and not os.path.exists(source.path):
        what = "a glob"
    else:
        return
    how = ", or read a folder or glob of Parquet files with {engine} dask"
    raise UserError(
        f"{source.quoted} is {what}, and the local engine reads one file: give a file"
        + (how if dask_reads_many else ""),
        ("engine",),
    )


def _size(limit: str | int) -> int:
    return limit if isinstance(limit, int) else stream.parse_size(limit)


def _is_size(limit: object) -> bool:
    try:
        return isinstance(limit, int | str) and _size(limit) > 0
    except UserError:
        return False


SOURCE_RULES = {
    "format": optional(one_of(tables.FORMATS)),
    "chunk_rows": optional(whole_number(1)),
    "memory_limit": optional(Rule(_is_size, "a size such as 2GB, 500MB or 123456 (bytes)")),
    "engine": one_of(ENGINES),
    "missing": one_of(MISSING_CHOICES),
    "drop_missing": Rule(lambda v: isinstance(v, bool), "True or False"),
}


@dataclass
class Rows:
    """What a fit runs on: the row source, its feature names (None for a bare array), the
    reducer that runs its passes and the workers the memory limit allows; for labelled
    rows (whose blocks carry each row's class), the classes' names in class order."""

    rows: RowSource
    names: list[str] | None
    reducer: Reducer
    workers: int = 1
    class_names: list[str] | None = None


def no_core(n_features: int, n_rows: int) -> memory.Needs:
    """What a reader that runs no core holds beside the rows: nothing."""
    return memory.Needs()


@contextlib.contextmanager
def open_rows(
    source: Source,
    report: Report = QUIET,
    core: Callable[[int, int], memory.Needs] = no_core,
    classes: Sequence[str] | None = None,
) -> Iterator[Rows]:
    """The rows of ``source`` for a fit, open for its passes (a spooled stdin, a cluster's
    client), with a line on ``report`` naming the features. A file is read whole when it
    fits in the memory limit beside what ``core(n_features, n_rows)`` holds (and no chunk
    size is given), else streamed in chunks that fit; passes have the workers that fit.
    With labels, the classes are ``classes`` when given (a label not among them is an
    error), else those the labels have."""
    if source.engine == "dask":
        with _cluster_rows(source, report, classes) as rows:
            yield rows
        return
    if not source.is_path:
        features = _features_in_memory(source, report)
        yield _in_memory(features, source, report, local.default_threads(), classes)
        return
    with spooled(source.path) as path:
        fmt = source.file_format()
        limit, shape = source.memory_bytes, stream.layout(path, fmt)
        workers = _whole_read_workers(source, shape, core)
        if workers is not None:
            features = _read_features(path, fmt, source, report)
            yield _in_memory(features, source, report, workers, classes)
            return
        _check_limit_before_reading(source, shape, core)
        names = _feature_names(path, fmt, source, report, memory.profile_block(limit))
        plan = _stream_plan(source, shape, core, len(names))
        detail = f"streamed from {source.name} in chunks of {plan.chunk_rows} rows"
        report.features(names, source.weight_column, detail)
        block_bytes = memory.block_bytes(plan.chunk_rows, shape.text_bytes)
        class_names = None
        if source.label_column is not None:
            found = stream.file_labels(
                path, fmt, source.label_column, plan.chunk_rows, source.quoted, block_bytes
            )
            class_names = _classes(pa.array(found, pa.string()), source, classes)
        rows = stream.FileRows(
            path,
            fmt,
            names,
            source.weight_column,
            source.label_column,
            class_names,
            plan.chunk_rows,
            source.missing,
            name=source.quoted,
            block_bytes=block_bytes,
        )
        yield Rows(rows, names, local.reducer(plan.workers), plan.workers, class_names)


def _stream_plan(
    source: Source,
    shape: stream.Layout,
    core: Callable[[int, int], memory.Needs],
    n_features: int,
) -> memory.Plan:
    """How a fit streams ``n_features`` features of the file within the memory limit (a
    chunk read ahead as well)."""
    read = n_features + bool(source.weight_column) + bool(source.label_column)
    needs = memory.reading(source.file_format(), read, shape.text_bytes)
    needs += memory.features(n_features) + memory.read_ahead(read, n_features)
    needs += core(n_features, shape.n_rows)
    return memory.plan(source.memory_bytes, needs, source.chunk_rows, stream.DEFAULT_CHUNK_ROWS)


def _check_limit_before_reading(
    source: Source, shape: stream.Layout, core: Callable[[int, int], memory.Needs]
) -> None:
    """A memory limit too small for the file, said before its first pass (a CSV file's
    finds its features): too small for the fewest features the file can have, the error
    names the limit that fits the most (all its columns), which surely works."""
    given = len(source.columns or ())
    try:
        _stream_plan(source, shape, core, given or 1)
    except UserError:
        _stream_plan(source, shape, core, given or shape.n_columns)
        raise


def _whole_read_workers(
    source: Source, shape: stream.Layout | None, core: Callable[[int, int], memory.Needs]
) -> int | None:
    """The workers of a fit's passes when the file is read whole (unless a chunk size is
    given): None if even one does not fit in the memory limit. A CSV file's table is
    held whole beside its features (at most all its columns); Parquet is read column by
    column."""
    if shape is None:
        return 1  # unreadable: the whole read says why
    if source.chunk_rows is not None:
        return None
    n_features = len(source.columns) if source.columns else shape.n_columns
    table = memory.Needs(per_row=16 if source.file_format() == "parquet" else shape.row_bytes)
    held = table + memory.features(n_features) + core(n_features, shape.n_rows)
    return memory.in_memory(source.memory_bytes, shape.n_rows, held)


def report_left_out(report: Report, count: int, missing: str) -> None:
    """Say how many rows ``missing`` left out."""
    if count:
        why = "no feature observed" if missing == "marginal" else "missing values"
        report.note(f"dropped {count} rows with {why}")


def _in_memory(
    features: tables.Features,
    source: Source,
    report: Report,
    workers: int,
    classes: Sequence[str] | None = None,
) -> Rows:
    """The rows in memory that ``missing`` leaves (or a UserError), with their classes
    (open_rows: those of every row, left out or not, as a streamed file's)."""
    report.features(features.names, source.weight_column, f"{len(features.X)} rows")
    if features.labels is not None:
        class_names = _classes(features.labels, source, classes)
    features, dropped = tables.require_complete(
        features, source=source.name, missing=source.missing
    )
    report_left_out(report, dropped, source.missing)
    X, weights = features.X, features.weights
    weights = np.ones(len(X)) if weights is None else weights
    names = None if _is_array(source.data) and not source.columns else features.names
    if features.labels is None:
        rows = InMemoryRows(X, weights, np.zeros(X.shape[1]))
        return Rows(rows, names, local.reducer(workers), workers)
    codes = tables.class_codes(features.labels, class_names)
    rows = InMemoryRows(X, weights, np.zeros(X.shape[1]), classes=codes)
    return Rows(rows, names, local.reducer(workers), workers, class_names)


def _classes(labels: pa.Array, source: Source, given: Sequence[str] | None) -> list[str]:
    """The classes of the labels, or ``given`` ones that hold every label: a UserError if
    no row has one, or one is not given."""
    found = pc.unique(labels.drop_null()).to_pylist()
    where = f"column '{source.label_column}'" if source.label_column else "the labels"
    if not found:
        raise UserError(f"{where} of {source.name} has no label: every value is empty")
    if given is None:
        return tables.class_order(found)
    unknown = sorted(set(found) - set(given))
    if unknown:
        raise UserError(
            f"{where} of {source.name} holds '{unknown[0]}', not one of the model's classes "
            f"({', '.join(given)})"
        )
    return list(given)


def _feature_names(
    path: str, fmt: str, source: Source, report: Report, block_bytes: int = memory.MAX_BLOCK_BYTES
) -> list[str]:
    """The features to read from a file, from its schema (Parquet) or a first pass (CSV,
    in blocks of ``block_bytes``)."""
    return stream.file_feature_names(
        path,
        fmt,
        source.columns,
        source.not_features,
        source.weight_column,
        source.quoted,
        report.notice,
        block_bytes,
    )


def _read_features(path: str, fmt: str, source: Source, report: Report) -> tables.Features:
    """A file's features, read whole (Parquet column by column into one array), with its
    label column's labels."""
    if fmt == "parquet":
        names = _feature_names(path, fmt, source, report)
        return stream.read_parquet_features(
            path, names, source.weight_column, source.name, source.label_column
        )
    table = tables.read_table(path, fmt, name=source.quoted, text=source.label_column)
    return select(table, source, report)


def select(table: pa.Table, source: Source, report: Report = QUIET) -> tables.Features:
    """The source's features and weights from a table (notices to ``report``), and its
    label column's labels."""
    label_column = source.label_column
    features = tables.select_features(
        table,
        columns=source.columns,
        exclude=source.not_features,
        weight_column=source.weight_column,
        source=source.name,
        notice=report.notice,
    )
    if label_column is None:
        return features
    return dataclasses.replace(
        features, labels=tables.label_column(table, label_column, source.name)
    )


def in_memory_table(data: object) -> pa.Table:
    """An in-memory table as Arrow: pandas, polars, Arrow, or the Arrow PyCapsule."""
    if isinstance(data, pa.Table):
        return data
    if type(data).__module__.startswith("pandas"):  # its index is no data column
        return pa.Table.from_pandas(data, preserve_index=False)
    try:
        return pa.table(data)
    except (TypeError, ValueError, pa.ArrowException) as err:
        raise UserError(
            f"cannot read {type(data).__name__} as a table ({err}); give an array, a "
            "DataFrame, an Arrow table or a path"
        ) from None


def _features_in_memory(source: Source, report: Report) -> tables.Features:
    """The features of an array or table in memory, checked as a file's are."""
    if _is_array(source.data):
        X = np.ascontiguousarray(_rows_of(source.data))
        names = source.columns or [f"x{i}" for i in range(X.shape[1])]
        if len(names) != X.shape[1]:
            raise UserError(f"{len(names)} column names for an array of {X.shape[1]} columns")
        features = tables.Features(X, names, None, _missing_rows(X))
    else:
        features = select(in_memory_table(source.data), source, report)
    features = _given_weights(features, source, require_positive=True)
    if source.labels is None or isinstance(source.labels, str):
        return features
    labels = tables.given_labels(source.labels)
    if len(labels) != len(features.X):
        raise UserError(f"{len(labels)} labels for {len(features.X)} rows: give one label a row")
    return dataclasses.replace(features, labels=labels)


def _missing_rows(X: np.ndarray, block: int = 65536) -> np.ndarray:
    """Which rows hold a NaN or an infinity, a block of rows at a time (no temporary the
    size of X). A block whose sum is finite has none, and is not looked at row by row."""
    missing = np.zeros(len(X), dtype=bool)
    for start in range(0, len(X), block):
        rows = X[start : start + block]
        with np.errstate(over="ignore", invalid="ignore"):
            if np.isfinite(rows.sum()):
                continue
        missing[start : start + block] = ~np.isfinite(rows).all(axis=1)
    return missing


def _given_weights(
    features: tables.Features, source: Source, require_positive: bool = False
) -> tables.Features:
    """``features`` with the source's array of weights (if it has one; in memory, the
    input is one chunk), checked as a weight column is."""
    if source.weights is None or isinstance(source.weights, str):
        return features
    weights = np.ascontiguousarray(source.weights, dtype=float)
    if weights.shape != (len(features.X),):
        raise UserError(f"weights have shape {weights.shape}, expected ({len(features.X)},)")
    weights = tables.checked_weights(weights, "weights", source.name, 0, require_positive)
    missing = features.missing | np.isnan(weights)
    return dataclasses.replace(features, weights=weights, missing=missing, weight_column="weights")


@contextlib.contextmanager
def _cluster_rows(
    source: Source, report: Report, classes: Sequence[str] | None = None
) -> Iterator[Rows]:
    """The feature rows of Parquet files, read and kept by a Dask cluster's workers (and
    their classes: open_rows)."""
    label_column, weight_column = source.label_column, source.weight_column
    cluster, files, names = _cluster_files(source, source.columns, source.not_features, report)
    files.check_schemas([*names, *filter(None, [weight_column, label_column])])
    with cluster.connect(source.scheduler or "local") as client:
        labels = class_names = None
        if label_column is not None:
            found = cluster.file_labels(client, files, label_column)
            class_names = _classes(pa.array(found, pa.string()), source, classes)
            labels = (label_column, class_names)
        rows = cluster.load_rows(
            client,
            files,
            names,
            weight_column=weight_column,
            missing=source.missing,
            labels=labels,
        )
        workers = len(client.scheduler_info()["workers"])
        detail = f"{rows.n_rows} rows in {rows.n_parts} partitions on {workers} Dask workers"
        report.features(names, weight_column, detail)
        report_left_out(report, rows.dropped, source.missing)
        yield Rows(rows, names, SERIAL, class_names=class_names)  # a task a partition


def _cluster_files(
    source: Source, columns: list[str] | None, exclude: list[str], report: Report = QUIET
):
    """(gmmcli.engines.cluster, the source's Parquet files, the feature names: ``columns``
    checked against the first file's schema, or its default features, as the first file's
    first rows show them)."""
    cluster = cluster_engine()
    files = cluster.ParquetFiles(cluster.parquet_files(source.path), source.quoted)
    first = files.paths[0]
    schema = cluster.file_schema(first)
    head = None if columns else stream.first_rows(first, "parquet", schema, source.quoted)
    names = stream.parquet_feature_names(
        schema, columns, exclude, source.weight_column, source.quoted, head, report.notice
    )
    return cluster, files, names


def cluster_engine():
    """gmmcli.engines.cluster, or a UserError naming the extra that provides Dask."""
    try:
        from gmmcli.engines import cluster
    except ImportError:
        raise UserError(
            "the dask engine needs Dask, which is not installed; install the extra: "
            "pip install 'gmmcli[dask]'"
        ) from None
    return cluster


@contextlib.contextmanager
def spooled(data: str) -> Iterator[str]:
    """The input as a path: stdin is first copied to a temporary file, since fitting reads
    its data once per EM iteration (and Parquet needs its footer, at the end)."""
    if data != "-":
        yield data
        return
    # The name is chosen before the file is made, inside the try: a signal's exception
    # removes the file wherever it lands, even just after it was made.
    name = os.path.join(tempfile.gettempdir(), f"gmmcli-stdin-{secrets.token_hex(8)}")
    try:
        try:
            descriptor = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            name = None  # another's file, not ours to remove
            raise
        with open(descriptor, "wb") as spool:
            try:
                shutil.copyfileobj(sys.stdin.buffer, spool)
                spool.flush()
            except OSError as err:
                if err.errno not in FULL:
                    raise
                raise UserError(
                    f"cannot copy stdin to a temporary file in '{tempfile.gettempdir()}': "
                    f"{FULL[err.errno]}; set TMPDIR to a folder with room, or give the "
                    "data as a file"
                ) from None
        yield name
    finally:
        if name is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)


# --- prediction ----------------------------------------------------------------------


class Prediction(Protocol[T]):
    """What classify, score or impute makes of a table and the model's features in it,
    its rows shared out by ``reducer``: the output table and a summary (added up over
    chunks or partitions). ``keeps_input``: the output holds the input's columns too (else
    only the model's are read); ``copies``: output rows per input row."""

    keeps_input: bool
    copies: int

    def __call__(
        self, table: pa.Table, features: tables.Features, reducer: Reducer
    ) -> tuple[pa.Table, T]: ...


@dataclass(frozen=True)
class Output:
    """Where a per-row table goes: a path or "-" (stdout), its format; with the dask
    engine a folder of Parquet files; None for no table."""

    path: str | None
    format: str | None = None

    @property
    def table_format(self) -> str | None:
        """The format asked for; CSV on stdout; else None (by the path's extension)."""
        return self.format or ("csv" if self.path == "-" else None)

    def check(self, source: Source) -> None:
        """Before anything is read: the output can be written, in a known format (with
        the dask engine, the folder is checked against the input files once they are
        listed: _predict_on_cluster)."""
        if source.engine == "dask" and self.path == "-":
            raise UserError(
                "the dask engine writes a folder of Parquet files, not stdout; give a folder "
                "with -o FOLDER"
            )
        if source.engine == "dask" and self.format is not None:
            raise ParameterConflict("output_format", "engine", "local")
        if source.engine == "dask" and self.path is not None:
            check_output_folder(self.path)
        if source.engine == "local":
            self.check_file()

    def check_file(self) -> None:
        """A table can be written at the path (if any), in a known format."""
        if self.path is not None and self.path != "-":
            check_output_path(self.path)
        if self.path is not None:
            tables.format_for(self.path, self.table_format, for_output=True)


NO_OUTPUT = Output(None)


def predict_rows(
    source: Source,
    model: GaussianMixture,
    prediction: Prediction[T],
    output: Output,
    *,
    accept: Callable[[list[T]], None],
    report: Report = QUIET,
) -> list[T]:
    """``prediction`` of every chunk (local) or partition (dask) of ``source`` in order,
    its tables written to ``output`` (checked by the caller: Output.check);
    ``accept(summaries)`` may refuse the whole run before the output appears (written
    atomically). The local engine adds its chunks' summaries up as they come (into one,
    or none without rows), so that they hold nothing of rows already written."""
    model = _named(model, source)
    if source.engine == "dask":
        return _predict_on_cluster(source, model, prediction, output, accept, report)
    writer, kept, written = contextlib.nullcontext(), None, None
    if output.path is not None:
        writer = tables.TableWriter(output.path, output.table_format)
        written = writer.fmt
        kept = written if prediction.keeps_input else None
    total, reducer = None, local.reducer()
    with writer:
        chunks = _model_chunks(source, model, report, kept, written, prediction.copies)
        for table, features in chunks:
            out, result = prediction(table, features, reducer)
            total = result if total is None else total + result
            if output.path is not None:
                writer.write(out)
        results = [] if total is None else [total]
        accept(results)
    return results


def _model_chunks(
    source: Source,
    model: GaussianMixture,
    report: Report,
    kept: str | None,
    written: str | None,
    copies: int,
) -> Iterator[tuple[pa.Table, tables.Features]]:
    """(input chunk, the model's features in it) for every chunk of the input; the
    features line once the input is seen to have rows. ``kept``: the format the input's
    columns are written in, if they are (open_batches); ``written``: the output's, if
    any; ``copies``: output rows per input row."""
    first_row = 0
    for table in _input_tables(source, model, kept, written, copies):
        if first_row == 0:
            report.features(model.feature_names, source.weight_column)
        features = model_rows(table, model, source, first_row=first_row)
        first_row += table.num_rows
        yield table, features


def _input_tables(
    source: Source,
    model: GaussianMixture,
    kept: str | None,
    written: str | None = None,
    copies: int = 1,
) -> Iterator[pa.Table]:
    """The input as tables: whole when it fits in the memory limit (and no chunk size is
    given), else in chunks that fit beside the prediction's arrays and the output's
    buffers (``written``: its format), with the types a whole read gives (a CSV file's
    from a first pass: csv_profile).

    CSV on stdin is always streamed (a pipe of any length works), its types as its chunks
    come (pipe_batches); Parquet on stdin is read whole, its footer being at the end.
    """
    if not source.is_path:
        data = source.data
        if _is_array(data):
            X = _rows_of(data)
            if X.shape[1] != model.n_features:
                raise UserError(
                    f"the data have {X.shape[1]} columns, the model {model.n_features} features"
                )
            yield pa.table({name: X[:, i] for i, name in enumerate(model.feature_names)})
        else:
            yield in_memory_table(data)
        return
    fmt = source.file_format()
    if not _tables_streamed(source, model, written, copies):
        yield tables.read_table(source.path, fmt, text=source.label_column)
        return
    limit, types, header, piped = source.memory_bytes, None, None, source.data == "-"
    if piped:
        header = stream.pipe_header(fmt, source.name)
        n_columns = len(header[0])
        text_bytes = n_columns * stream.CSV_BYTES_PER_VALUE  # a guess: blocks are cut to it
    else:
        shape = stream.layout(source.path, fmt)
        n_columns, text_bytes = shape.n_columns, shape.text_bytes
    needs = memory.reading(fmt, n_columns, text_bytes, piped)
    needs += _prediction_needs(model, n_columns, written, copies)
    plan = memory.plan(limit, needs, source.chunk_rows, stream.DEFAULT_CHUNK_ROWS)
    if fmt != "parquet" and not piped:
        profile = stream.csv_profile(source.path, fmt, memory.profile_block(limit), source.quoted)
        types = profile.types
        if source.label_column is not None:  # labels are text, whatever they look like
            types = {**types, source.label_column: pa.string()}
    block = memory.block_bytes(plan.chunk_rows, text_bytes, piped)
    if piped:
        batches = stream.pipe_batches(header, fmt, plan.chunk_rows, block, kept)
    else:
        batches = stream.open_batches(
            source.path, fmt, plan.chunk_rows, types=types, block_bytes=block
        )
    rows = 0
    for batch in batches:
        rows += batch.num_rows
        yield pa.Table.from_batches([batch])
    if rows == 0:
        raise UserError(f"{source.name} has no data rows; give at least one row of data")


def _prediction_needs(
    model: GaussianMixture, n_columns: int, written: str | None, copies: int = 1
) -> memory.Needs:
    """What classify, score or impute holds per chunk of an input of ``n_columns``
    columns, written ``copies`` times (impute's draws: the rows taken, drawn and built
    into columns once more for each)."""
    n_features, n_components = model.n_features, model.n_components
    again = memory.Needs(per_row=(copies - 1) * 8 * (n_columns + 2 * n_features))
    return (
        again
        + memory.features(n_features)
        + memory.prediction(n_features, n_components, n_columns, written)
    )


def _tables_streamed(
    source: Source, model: GaussianMixture, written: str | None, copies: int = 1
) -> bool:
    """Whether a prediction reads the file chunk by chunk: CSV on stdin always (a pipe of
    any length works), Parquet on stdin never (its footer is at the end), a file when a
    chunk size is given or reading it whole would pass the memory limit."""
    fmt = source.file_format()
    if source.data == "-":
        return fmt != "parquet"
    shape = stream.layout(source.path, fmt)
    if source.chunk_rows is not None or shape is None:
        return shape is not None  # unreadable: the whole read says why
    held = memory.Needs(per_row=shape.row_bytes) + _prediction_needs(
        model, shape.n_columns, written, copies
    )
    return memory.in_memory(source.memory_bytes, shape.n_rows, held) is None


def fits_in_memory(source: Source, model: GaussianMixture, copies: int = 1) -> bool:
    """Whether a prediction's whole table (``copies`` rows per input row) may be held:
    data in memory, or a local file read whole."""
    if source.engine == "dask":
        return False
    named = _named(model, source)
    return not source.is_path or not _tables_streamed(source, named, None, copies)


def model_rows(
    table: pa.Table,
    model: GaussianMixture,
    source: Source,
    *,
    first_row: int = 0,
    where: str | None = None,
) -> tables.Features:
    """The model's features (by name) of a table or chunk (``first_row`` rows of the input
    before it; messages call it ``where``, default the source's name); rows with missing
    values are as the source's ``missing`` says (tables.require_complete), those left out
    marked in ``missing`` (outputs stay aligned)."""
    where = where or source.name
    features = tables.select_features(
        table,
        columns=model.feature_names,
        weight_column=source.weight_column,
        source=where,
        first_row=first_row,
        require_positive=False,
    )
    features = _given_weights(features, source)
    if source.labels is not None:
        features = dataclasses.replace(
            features, labels=_model_labels(table, model, source, first_row, where)
        )
    features, _ = tables.require_complete(
        features, source=where, missing=source.missing, allow_empty=True, keep_rows=True
    )
    return features


def _model_labels(
    table: pa.Table, model: GaussianMixture, source: Source, first_row: int, where: str
) -> pa.Array:
    """The labels of a chunk scored by a model of classes: each one of its classes."""
    if model.classes is None:
        raise UserError("the model has no classes for {labels}: fit it with labels", ("labels",))
    if source.label_column is not None:
        labels = tables.label_column(table, source.label_column, where)
    else:
        labels = tables.given_labels(source.labels)
    unseen = pc.and_(
        pc.is_valid(labels), pc.invert(pc.is_in(labels, pa.array(model.classes.names)))
    )
    if pc.any(unseen).as_py():
        row = pc.index(unseen, True).as_py()
        raise UserError(
            f"label {labels[row].as_py()!r} at row {first_row + row + 1} of {where} is not one "
            f"of the model's classes ({', '.join(model.classes.names)})"
        )
    return labels


def _named(model: GaussianMixture, source: Source) -> GaussianMixture:
    """The model, its features named x0, x1, ... for an array if it has no names (an
    array's columns are taken in order); a model without names predicts on arrays only."""
    if model.feature_names:
        return model
    if _is_array(source.data):
        names = [f"x{i}" for i in range(model.n_features)]
        return dataclasses.replace(model, feature_names=names)
    raise UserError("the model has no feature names; refit it with gmmcli fit")


@dataclass(frozen=True)
class _OnPartition:
    """A prediction of one partition on a worker (picklable: sent to the workers)."""

    model: GaussianMixture
    prediction: object
    source: Source

    def __call__(self, table: pa.Table, index: int, first_row: int):
        where = f"partition {index} of {self.source.quoted}"  # rows numbered in the partition
        features = model_rows(table, self.model, self.source, where=where)
        features = dataclasses.replace(features, first_row=first_row)
        return self.prediction(table, features, SERIAL)  # a task has one thread


def _predict_on_cluster(source, model, prediction, output, accept, report) -> list:
    """predict_rows() on the dask engine: every partition on the workers, its table
    written into the output folder (if any) as one Parquet file per partition."""
    cluster, files, _ = _cluster_files(source, model.feature_names, [])
    if output.path is not None:
        check_output_folder(output.path, [source.path, *files.paths])
    given = [column for column in (source.weight_column, source.label_column) if column]
    columns = None if prediction.keeps_input else model.feature_names + given
    files.check_schemas(columns)
    plural = "s" if len(files.paths) > 1 else ""
    report.features(
        model.feature_names, source.weight_column, f"from {len(files.paths)} Parquet file{plural}"
    )
    with cluster.connect(source.scheduler or "local") as client:
        results = cluster.write_parts(
            client,
            files,
            _OnPartition(model, prediction, source),
            output.path,
            columns=columns,
            accept=accept,
        )
    if output.path is not None:
        report.note(f"wrote {len(results)} Parquet files (one per partition) to {output.path}")
    return results
