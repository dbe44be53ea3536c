"""Rows streamed from a file in chunks: every pass of the core re-reads the file.

Memory stays at two chunks' worth of rows whatever the file's length: a pass reads and
converts the next chunk in a thread while the core works on this one (read_ahead).
Parquet is read batch by batch (``ParquetFile.iter_batches`` without pre-buffering,
which would hold whole row groups; columns decoded on Arrow's threads), CSV/TSV with
pyarrow's streaming reader, features converted to float64 as they are read. The core
sees the same blocks, in the same order, as from an array in memory (chunks are re-cut
into them), so a streamed fit equals the in-memory one bit for bit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import BinaryIO, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from gmmcli.core.em import OnePart, PartFunction, in_blocks, rows_per_block
from gmmcli.engines.memory import MAX_BLOCK_BYTES
from gmmcli.errors import GMMWarning, UserError, one_line
from gmmcli.io import tables

T = TypeVar("T")
DEFAULT_CHUNK_ROWS = 200_000
CSV_BYTES_PER_VALUE = 20  # a generous guess that turns chunk rows into CSV block bytes
FIRST_BLOCK_BYTES = 1 << 13  # the first block of CSV text from a pipe, which sizes the next
HEAD_BYTES = 1 << 16  # the start of a CSV file whose lines tell its rows' length (layout)
PARQUET_BUFFER_BYTES = 1 << 20  # what a Parquet column reader reads at once


def open_batches(
    path: str,
    fmt: str,
    chunk_rows: int,
    columns: list[str] | None = None,
    float_columns: list[str] = (),
    *,
    types: dict[str, pa.DataType] | None = None,
    name: str | None = None,
    block_bytes: int | None = None,
) -> Iterator[pa.RecordBatch]:
    """The file's rows as record batches of about ``chunk_rows`` rows, in file order.

    ``columns`` limits what is read; ``float_columns`` are read as float64, the other CSV
    columns as ``types`` says (a file's: csv_profile), else as inferred. CSV is read by
    pyarrow's streaming reader in blocks of ``block_bytes`` (default: a guess from
    ``chunk_rows``), up to 32 of which it reads ahead (memory.csv_reading counts them),
    through an Arrow stream (decompressed as its extension says), so its reader threads
    hold no Python objects. Read errors become one-line UserErrors calling the input
    ``name`` (default: the path quoted; a spooled stdin's caller says stdin).
    """
    name = name or f"'{path}'"
    with _read_errors(name):
        if fmt == "parquet":
            parquet = pq.ParquetFile(
                path,
                pre_buffer=False,
                buffer_size=PARQUET_BUFFER_BYTES,
                page_checksum_verification=True,
            )
            tables.clean_names(parquet.schema_arrow.names, name, text=False)
            yield from parquet.iter_batches(
                batch_size=chunk_rows, columns=columns, use_threads=True
            )
            return
        parse = _parse_options(fmt)
        with tables.open_input(path) as f:
            names, _, header_lines = _header(f, parse, name)
        block_size = block_bytes or chunk_rows * len(columns or names) * CSV_BYTES_PER_VALUE
        types = {**(types or {}), **dict.fromkeys(float_columns, pa.float64())}
        read = pa_csv.ReadOptions(block_size=block_size, column_names=names, skip_rows=header_lines)
        convert = pa_csv.ConvertOptions(include_columns=columns, column_types=types)
        yield from pa_csv.open_csv(  # the reader owns the stream, as it would the path
            tables.open_input(path),
            read_options=read,
            parse_options=parse,
            convert_options=convert,
        )


def pipe_header(fmt: str, name: str = "stdin") -> tuple[list[str], bytes]:
    """The names in stdin's CSV header and the bytes read past them (for pipe_batches)."""
    with _read_errors(name):
        return _header(sys.stdin.buffer, _parse_options(fmt), name)[:2]


def pipe_batches(
    header: tuple[list[str], bytes],
    fmt: str,
    chunk_rows: int,
    block_bytes: int,
    kept: str | None = None,
    name: str = "stdin",
) -> Iterator[pa.RecordBatch]:
    """The rows of CSV on stdin after its ``header`` (pipe_header), as record batches of
    about ``chunk_rows`` rows read in blocks of at most ``block_bytes``; a column of whole
    numbers widens to float64 where a decimal comes, unless that would change what was
    written of it already (``kept``: the format the columns are written in, if they are;
    see _pipe_batches). Read errors are one-line UserErrors calling the input ``name``."""
    with _read_errors(name):
        sizes = RowBlocks(chunk_rows, block_bytes)
        parse = _parse_options(fmt)
        yield from _pipe_batches(sys.stdin.buffer, header, sizes, parse, name, kept)


@contextlib.contextmanager
def _read_errors(name: str) -> Iterator[None]:
    """pyarrow's and the system's read errors as one-line UserErrors naming the input."""
    try:
        yield
    except pa.ArrowInvalid as err:
        raise _conversion_error(err, name) from None
    except (OSError, pa.ArrowException) as err:
        raise UserError(f"cannot read {name}: {one_line(err)}") from None


def _parse_options(fmt: str) -> pa_csv.ParseOptions:
    return pa_csv.ParseOptions(delimiter="\t" if fmt == "tsv" else ",")


_LINE_END = re.compile(rb"\r\n|\n|\r(?=[^\n])")  # a lone \r at a read's end may precede \n


def _header(f: BinaryIO, parse: pa_csv.ParseOptions, name: str) -> tuple[list[str], bytes, int]:
    """The names in the first line of ``f`` that is not empty (checked: clean_names; a
    quoted name may hold a line end), the bytes read past it and the lines it took."""
    data, lines = b"", 0
    while True:
        end = _unquoted_line_end(data)
        if end is None:
            more = f.read(4096)
            if more:
                data += more
                continue
        line, data = (data, b"") if end is None else (data[: end.end()], data[end.end() :])
        lines += len(_LINE_END.findall(line)) or 1
        if line.strip(b"\r\n") or end is None:
            break
    if not line.strip():
        raise UserError(f"{name} has no data rows; give a file with at least one row of data")
    header = pa_csv.read_csv(pa.BufferReader(tables.arrow_copy(line)), parse_options=parse)
    return tables.clean_names(tables.column_names(header, name), name), data, lines


def _unquoted_line_end(data: bytes) -> re.Match | None:
    """The first line end in ``data`` that no open quote holds."""
    for end in _LINE_END.finditer(data):
        if data.count(b'"', 0, end.start()) % 2 == 0:
            return end
    return None


def _blocks(f: BinaryIO, data: bytes, size: Callable[[], int]) -> Iterator[pa.Buffer]:
    """What follows ``data`` in ``f`` in blocks of about ``size()`` bytes (asked before
    each read) that end at a line end (so a quoted value may not hold one): Arrow buffers
    read into directly, which pyarrow parses without a copy."""
    while True:
        want = size()
        buffer = pa.allocate_buffer(len(data) + want, resizable=True)
        view = memoryview(buffer).cast("B")
        view[: len(data)] = data
        end = len(data) + _read_into(f, view[len(data) :])
        if end == len(data):  # the end of the input: what is left, unless only spaces
            if data and not data.isspace():
                yield buffer.slice(0, end)
            return
        cut = _after_last_line_end(view, end)
        if not cut:  # a line longer than a block: read on
            data = bytes(view[:end])
            continue
        data = bytes(view[cut:end])
        if cut > 4096 or not bytes(view[:cut]).isspace():
            yield buffer.slice(0, cut)


def _after_last_line_end(view: memoryview, end: int, window: int = 1 << 16) -> int:
    """The position after the last line end in ``view[:end]`` (0 if none), looked for a
    window at a time from the end (no copy of the whole block)."""
    while end > 0:
        start = max(0, end - window)
        tail = bytes(view[start:end])
        found = max(tail.rfind(b"\n"), tail.rfind(b"\r"))
        if found >= 0:
            return start + found + 1
        end = start
    return 0


def _read_into(f: BinaryIO, view: memoryview) -> int:
    """Bytes read into ``view``: as many as fit, fewer only at the end of the input."""
    done = 0
    while done < len(view):
        got = f.readinto(view[done:])
        if not got:
            break
        done += got
    return done


@dataclass
class RowBlocks:
    """Sizes of blocks of CSV text of about ``rows`` rows and at most ``most`` bytes: the
    first of FIRST_BLOCK_BYTES, each next from the bytes per row of the blocks before
    (``seen``)."""

    rows: int
    most: int
    seen_bytes: int = 0
    seen_rows: int = 0

    def size(self) -> int:
        if not self.seen_rows:
            return min(self.most, FIRST_BLOCK_BYTES)
        return max(1, min(self.most, self.rows * self.seen_bytes // self.seen_rows))

    def seen(self, block: pa.Buffer, table: pa.Table) -> None:
        self.seen_bytes += block.size
        self.seen_rows += table.num_rows


def _parse(
    block: pa.Buffer,
    names: list[str],
    parse: pa_csv.ParseOptions,
    types: dict[str, pa.DataType] | None = None,
    columns: list[str] | None = None,
) -> pa.Table:
    """A block of CSV lines as a table: ``types`` given, the others inferred."""
    return pa_csv.read_csv(
        pa.BufferReader(block),
        read_options=pa_csv.ReadOptions(column_names=names),
        parse_options=parse,
        convert_options=pa_csv.ConvertOptions(include_columns=columns, column_types=types),
    )


def _typed_blocks(
    blocks: Iterable[pa.Buffer], names: list[str], parse: pa_csv.ParseOptions
) -> Iterator[tuple[int, pa.Buffer, pa.Table]]:
    """(rows before it, its bytes, its table with types inferred from it alone) for every
    block of CSV lines after the header."""
    first_row = 0
    for block in blocks:
        table = _parse(block, names, parse)
        yield first_row, block, table
        first_row += table.num_rows


def _first_bad(
    block: pa.Buffer, names: list[str], column: str, dtype: pa.DataType, parse: pa_csv.ParseOptions
) -> tuple[int, str | None]:
    """(index, text) in a block of the first value of ``column`` that ``dtype`` cannot hold."""
    text = _parse(block, names, parse, {column: pa.string()}, [column])[column]
    index = tables.first_not(text.combine_chunks(), dtype)
    return (0, None) if index is None else (index, text[index].as_py())


def _pipe_batches(
    pipe: BinaryIO,
    header: tuple[list[str], bytes],
    sizes: RowBlocks,
    parse: pa_csv.ParseOptions,
    name: str,
    kept: str | None,
) -> Iterator[pa.RecordBatch]:
    """CSV from a pipe, parsed block by block (pyarrow's own reader needs a seekable file).

    Nothing can be read twice, so column types come as blocks come: an empty column takes
    the first type it meets, whole numbers widen to float64 when a decimal comes, text
    stays text; anything else is a UserError naming the column and row. Where the input's
    columns are written (``kept``: the output's format), a change that would alter what
    was written already is refused too: any change in Parquet, whose schema the first
    chunk fixes; in text, a widening of whole numbers written that a decimal column
    writes otherwise (1700000000000 as 1.7e+12).
    """
    names, data = header
    types: dict[str, pa.DataType] = {}
    reprinted: set[str] = set()  # whole numbers written that would read otherwise as float
    for first_row, block, table in _typed_blocks(_blocks(pipe, data, sizes.size), names, parse):
        sizes.seen(block, table)
        found = dict(zip(table.column_names, table.schema.types, strict=True))
        wanted = {}
        for column, dtype in found.items():
            before = types.get(column, pa.null())
            wanted[column] = _widened(before, dtype)
            alters = first_row > 0 and wanted[column] != before
            alters = alters and (kept == "parquet" or column in reprinted)
            if wanted[column] is None or alters:
                held = before if alters else (_widened(before, pa.float64()) or before)
                index, value = _first_bad(block, table.column_names, column, held, parse)
                row = first_row + index + 1
                raise _changed_type(name, column, before, row, value, kept if alters else None)
        if wanted != found:
            table = _parse(block, table.column_names, parse, wanted)
        types = wanted
        if kept not in (None, "parquet"):
            whole = [c for c, dtype in wanted.items() if dtype == pa.int64()]
            reprinted.update(c for c in whole if not tables.written_alike(table.column(c)))
        yield from table.to_batches()


def _widened(before: pa.DataType, found: pa.DataType) -> pa.DataType | None:
    """The type of a column read so far as ``before`` with a block read as ``found``
    (empty: null; whole numbers widen to float64; text holds anything but bytes); None if
    no type holds both."""
    if pa.types.is_null(found) or found == before:
        return before
    if pa.types.is_null(before):
        return found
    if pa.types.is_string(before) and not pa.types.is_binary(found):
        return before
    if {before, found} == {pa.int64(), pa.float64()}:
        return pa.float64()
    return None


_READ_AS = {pa.null(): "empty values", pa.int64(): "whole numbers", pa.float64(): "numbers"}


def _changed_type(
    name: str, column: str, before: pa.DataType, row: int, value: str | None, kept: str | None
) -> UserError:
    """A column of stdin whose row ``row`` (holding ``value``) does not fit the type of the
    rows before it: no type holds both, or (``kept``: the output's format) the change
    would alter what was written of it already."""
    has = f"has {value!r} at row {row}" if value is not None else f"changes type at row {row}"
    after = _READ_AS.get(before, f"values read as {before}")
    if kept == "parquet":
        return UserError(
            f"column '{column}' in {name} {has} after {after}, and a Parquet output's column "
            "types are fixed by its first chunk; write CSV output, or give the input as a file"
        )
    if kept is not None:
        return UserError(
            f"column '{column}' in {name} {has} after {after} already written as such, which "
            "a column of decimals writes otherwise (1700000000000 as 1.7e+12); give the input "
            "as a file"
        )
    return UserError(
        f"column '{column}' in {name} {has} after {after}; "
        "fix the data, or give the input as a file"
    )


@dataclass
class Profile:
    """A CSV file's column types as a whole read infers them, from a pass in blocks;
    ``numbers``: the columns holding a number; ``text``: the first (row, value) that is
    no number, per column read as text."""

    types: dict[str, pa.DataType]
    numbers: set[str]
    text: dict[str, tuple[int, str]]
    n_rows: int


def csv_profile(path: str, fmt: str, block_size: int, name: str) -> Profile:
    """The Profile of a CSV file: types unified over its blocks as a whole read unifies
    them (null < int64 < float64 < text; any other mixture is asked of pyarrow)."""
    parse = _parse_options(fmt)
    numbers, text, n_rows = set(), {}, 0
    try:
        with tables.open_input(path) as f:
            names, data, lines = _header(f, parse, name)
            types: dict[str, pa.DataType | None] = dict.fromkeys(names, pa.null())
            blocks = _blocks(f, data, lambda: block_size)
            for first_row, _, table in _typed_blocks(blocks, names, parse):
                n_rows += table.num_rows
                for column, values in zip(table.column_names, table.columns, strict=True):
                    types[column] = _unified(types[column], values.type)
                    if tables.is_numeric(values.type) or (
                        tables.is_text(values.type) and tables.has_numbers(values)
                    ):
                        numbers.add(column)
                    if tables.is_text(values.type) and column not in text:
                        index = tables.first_not(values.combine_chunks())
                        if index is not None:
                            text[column] = (first_row + index + 1, values[index].as_py())
        mixed = [column for column, dtype in types.items() if dtype is None]
        if mixed:  # booleans and whole numbers, dates and times...: pyarrow's whole read
            read = pa_csv.ReadOptions(column_names=names, skip_rows=lines)
            convert = pa_csv.ConvertOptions(include_columns=mixed)
            with tables.open_input(path) as f:
                whole = pa_csv.read_csv(
                    f, read_options=read, parse_options=parse, convert_options=convert
                )
            types.update(zip(whole.column_names, whole.schema.types, strict=True))
    except pa.ArrowInvalid as err:
        raise _conversion_error(err, name) from None
    except (OSError, pa.ArrowException) as err:
        raise UserError(f"cannot read {name}: {one_line(err)}") from None
    return Profile(types, numbers, text, n_rows)


def _unified(before: pa.DataType | None, found: pa.DataType) -> pa.DataType | None:
    """What a whole read makes of a column read as ``before`` and a block of it read as
    ``found`` (None: a mixture only pyarrow can tell)."""
    if before is None:
        return None
    widened = _widened(before, found)
    if widened is not None:
        return widened
    for dtype in (pa.binary(), pa.string()):  # a value no other type reads
        if dtype in (before, found):
            return dtype
    return None


def file_feature_names(
    path: str,
    fmt: str,
    columns: list[str] | None,
    exclude: list[str],
    weight_column: str | None,
    name: str,
    notice: Callable[[GMMWarning], None] | None = None,
    block_bytes: int = MAX_BLOCK_BYTES,
) -> list[str]:
    """The features to read from a file: ``columns``, else what --columns defaults to
    (told to ``notice``: default_feature_names); every name checked, and (CSV, read in
    blocks of ``block_bytes``) every chosen column and the weights numeric over the whole
    file, a text column holding numbers an error (a typo), as in memory."""
    if fmt == "parquet":
        try:
            schema = pq.read_schema(path)
        except (OSError, pa.ArrowException):
            raise UserError(
                f"{name} is not a valid Parquet file (truncated?); "
                "check the file, or pass {format} if it is not Parquet",
                ("format",),
            ) from None
        head = None if columns else first_rows(path, fmt, schema, name)
        return parquet_feature_names(schema, columns, exclude, weight_column, name, head, notice)
    profile = csv_profile(path, fmt, block_bytes, name)
    if profile.n_rows == 0 and not columns:
        raise UserError(f"{name} has no data rows; give a file with at least one row of data")
    schema = pa.schema(profile.types)
    head = None if columns else first_rows(path, fmt, schema, name)
    chosen = parquet_feature_names(schema, columns, exclude, weight_column, name, head, notice)
    typos = [
        column
        for column, dtype in profile.types.items()
        if not columns
        and tables.is_text(dtype)
        and column in profile.numbers
        and tables.may_be_feature(column, exclude, weight_column)
    ]
    for column in [*typos, *chosen, *([weight_column] if weight_column else [])]:
        dtype = profile.types[column]
        if not (tables.is_numeric(dtype) or pa.types.is_null(dtype)):
            role = "weight column" if column == weight_column else "column"
            raise tables.not_numeric(f"{role} '{column}'", name, dtype, profile.text.get(column))
    return chosen


def parquet_feature_names(
    schema: pa.Schema,
    columns: list[str] | None,
    exclude: list[str],
    weight_column: str | None,
    name: str,
    head: pa.Table | None = None,
    notice: Callable[[GMMWarning], None] | None = None,
) -> list[str]:
    """The feature columns of a Parquet file (or a CSV's Profile) from its schema:
    ``columns``, else the default features (tables.default_feature_names, seen in
    ``head``, the file's first rows); every name checked against the schema."""
    tables.clean_names(schema.names, name, text=False)
    chosen = columns or tables.default_feature_names(schema, exclude, weight_column, head, notice)
    for column in [*chosen, *exclude, *([weight_column] if weight_column else [])]:
        if column not in schema.names:
            raise UserError(
                f"column '{column}' not found in {name}; available columns: "
                f"{', '.join(schema.names)}"
            )
    if not chosen:
        raise UserError(
            f"{name} has no numeric columns to use; pick them with {{columns}}", ("columns",)
        )
    return chosen


def first_rows(path: str, fmt: str, schema: pa.Schema, name: str) -> pa.Table:
    """The numeric columns of a file's first rows (up to tables.FIRST_ROWS), with the
    types of ``schema`` (a CSV file's from csv_profile); messages call the file ``name``."""
    numeric = pa.schema([field for field in schema if tables.is_numeric(field.type)])
    types = dict(zip(numeric.names, numeric.types, strict=True))
    batches, rows = [], 0
    if numeric.names:  # (no columns named reads them all)
        read = open_batches(path, fmt, tables.FIRST_ROWS, numeric.names, types=types, name=name)
        with contextlib.closing(read):
            for batch in read:
                batches.append(batch)
                rows += batch.num_rows
                if rows >= tables.FIRST_ROWS:
                    break
    head = pa.Table.from_batches(batches) if batches else numeric.empty_table()
    return head.slice(0, tables.FIRST_ROWS)


def _conversion_error(err: pa.ArrowInvalid, name: str) -> UserError:
    """pyarrow's CSV conversion failure as one line naming the column and the value."""
    found = re.search(r"invalid value '([^']*)'", one_line(err, limit=None))
    if found:
        return UserError(
            f"{name} has a value that is not a number: it has {found.group(1)!r}; fix the data"
        )
    return UserError(
        f"cannot read {name}: {one_line(err)}; fix the file or pass {{format}}", ("format",)
    )


@dataclass
class FileRows(OnePart):
    """A table file served to the core as blocks of feature rows, re-read on every pass;
    with ``label_column`` and ``class_names``, each row's class too (its index in them,
    -1 for no label)."""

    path: str
    fmt: str
    names: list[str]
    weight_column: str | None = None
    label_column: str | None = None
    class_names: list[str] | None = None
    chunk_rows: int = DEFAULT_CHUNK_ROWS
    missing: str = "refuse"  # what rows with missing values are: tables.require_complete
    centre: np.ndarray | None = None
    dtype: type = np.float64
    name: str | None = None  # how messages call the input (default: the path quoted)
    block_rows: int = 0  # rows per block of the core (0: rows_per_block); chunks are re-cut
    block_bytes: int = MAX_BLOCK_BYTES  # CSV text read at once, at most

    def __post_init__(self) -> None:
        self.block_rows = self.block_rows or rows_per_block(self.n_features)

    @property
    def n_features(self) -> int:
        return len(self.names)

    def centred(self, centre: np.ndarray, dtype: type = np.float64) -> FileRows:
        return dataclasses.replace(self, centre=centre, dtype=dtype)

    @property
    def label(self) -> str:
        return self.name or f"'{self.path}'"

    def map_parts(self, function: PartFunction) -> list[T]:
        """One part: ``function`` over the blocks, whose reading stops with the pass
        (however it ends: read_ahead leaves no read running)."""
        with contextlib.closing(self.blocks()) as blocks:
            return [function(blocks, 0, 0)]

    def features(self) -> Iterator[tables.Features]:
        """Each chunk's features, checked as in memory, laid out column by column (blocks
        copies them into rows); row numbers count from the file's start."""
        numbers = self.names + ([self.weight_column] if self.weight_column else [])
        columns = numbers + ([self.label_column] if self.label_column else [])
        first_row = 0
        batches = open_batches(
            self.path,
            self.fmt,
            self.chunk_rows,
            columns,
            numbers,
            types=None if self.label_column is None else {self.label_column: pa.string()},
            name=self.label,
            block_bytes=self.block_bytes,
        )
        for batch in batches:
            table = pa.Table.from_batches([batch])
            chunk = tables.features_of(
                table,
                self.names,
                weight_column=self.weight_column,
                source=self.label,
                first_row=first_row,
                require_positive=False,
                order="F",
            )
            if self.label_column:
                labels = tables.label_column(table, self.label_column, self.label)
                chunk = dataclasses.replace(chunk, labels=labels)
            first_row += batch.num_rows
            del batch, table  # (else held while the next one is read)
            yield chunk

    def blocks(self) -> Iterator[tuple[np.ndarray, ...]]:
        """The rows centred (those left by ``missing``), in blocks counted from the first
        (not by chunk), each a new array in rows (the centring copies it), with their
        weights (and classes); the next chunk read meanwhile."""
        centre = np.zeros(self.n_features) if self.centre is None else self.centre
        with contextlib.closing(read_ahead(self._rows())) as chunks:
            for X, *rest in in_blocks(chunks, self.block_rows):
                yield np.subtract(X, centre, order="C").astype(self.dtype, copy=False), *rest

    def _rows(self) -> Iterator[tuple[np.ndarray, ...]]:
        """Each chunk's rows as ``missing`` leaves them (or an error), their weights (and
        classes)."""
        positive = False
        for chunk in self.features():
            chunk, _ = tables.require_complete(
                chunk,
                source=self.label,
                missing=self.missing,
                allow_empty=True,
            )
            weights = np.ones(len(chunk.X)) if chunk.weights is None else chunk.weights
            positive = positive or bool((weights > 0).any())
            if self.class_names is None:
                yield chunk.X, weights
            else:
                yield chunk.X, weights, tables.class_codes(chunk.labels, self.class_names)
        if self.weight_column and not positive:
            raise tables.no_positive_weight(self.weight_column, self.label)


def file_labels(
    path: str, fmt: str, column: str, chunk_rows: int, name: str, block_bytes: int
) -> list[str]:
    """The distinct labels of a file's label column (label_texts), in one pass over it
    alone."""
    found: set[str] = set()
    text = {column: pa.string()}
    batches = open_batches(
        path, fmt, chunk_rows, [column], types=text, name=name, block_bytes=block_bytes
    )
    for batch in batches:
        labels = tables.label_column(pa.Table.from_batches([batch]), column, name)
        found.update(pc.unique(labels.drop_null()).to_pylist())
    return sorted(found)


_DONE = object()


def read_ahead(items: Iterator[T]) -> Iterator[T]:
    """The items of the generator ``items``, each next one made in a thread while the
    caller uses this one (pyarrow's decoding and numpy's copies let go of the GIL).

    However it ends (the last item, an error on either side, closed early), the item
    being made is finished, then ``items`` is closed and the thread ended: no read runs
    on unseen. Errors of ``items`` come out here, as its own next() would raise them.
    """
    with ThreadPoolExecutor(1, thread_name_prefix="gmmcli-read") as thread:
        upcoming = thread.submit(next, items, _DONE)
        try:
            while (item := upcoming.result()) is not _DONE:
                upcoming = thread.submit(next, items, _DONE)
                yield item
        finally:
            wait([upcoming])
            items.close()


def read_parquet_features(
    path: str,
    names: list[str],
    weight_column: str | None,
    name: str,
    label_column: str | None = None,
) -> tables.Features:
    """A Parquet file's features in one array, read and checked column by column, so that
    reading takes the array plus one column (not the whole table as well); and the labels
    of ``label_column``."""
    try:
        parquet = pq.ParquetFile(path, pre_buffer=False, page_checksum_verification=True)
        if parquet.metadata.num_rows == 0:
            shown = name if name == "stdin" else f"'{name}'"
            raise UserError(f"{shown} has no data rows; give a file with at least one row of data")
        X = np.empty((parquet.metadata.num_rows, len(names)))
        missing = np.zeros(len(X), dtype=bool)
        weights = None
        for j, column in enumerate(names):
            with_weights = weight_column if j == 0 else None  # the weights come along once
            read = [column, *([with_weights] if with_weights else [])]
            one = tables.select_features(
                parquet.read(columns=read, use_threads=False),
                columns=[column],
                weight_column=with_weights,
                source=name,
            )
            X[:, j] = one.X[:, 0]
            missing |= one.missing
            weights = one.weights if j == 0 else weights
        labels = None
        if label_column is not None:
            column = parquet.read(columns=[label_column], use_threads=False)
            labels = tables.label_column(column, label_column, name)
    except (OSError, pa.ArrowException) as err:
        raise UserError(f"cannot read {name}: {one_line(err)}") from None
    pa.default_memory_pool().release_unused()  # the columns' memory back to the system
    return tables.Features(X, names, weights, missing, weight_column, labels=labels)


def available_memory() -> int:
    """Bytes of memory available now (MemAvailable), or the physical total as a fallback."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def parse_size(text: str) -> int:
    """'2GB', '500M', '1.5 GiB', '123456' -> bytes (powers of 1024 for K, M, G, T)."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([KMGT]?)(I?B)?\s*", text.upper())
    if not found:
        raise UserError(f"cannot read the size {text!r}; write it like 2GB, 500MB or 123456")
    scale = 1024 ** " KMGT".index(found.group(2) or " ")
    return int(float(found.group(1)) * scale)


@dataclass(frozen=True)
class Layout:
    """What a file's head tells of it: its columns, its rows and a row's bytes of CSV
    text (a CSV file's estimated from the lines of its first block, generously: its
    lines may be shorter further on; a compressed file's rows are its line ends, counted
    in one pass), and the bytes a row takes in a table read whole."""

    n_columns: int
    n_rows: int
    row_bytes: int
    text_bytes: int = 0


def layout(path: str, fmt: str) -> Layout | None:
    """The file's Layout, or None if it cannot be read (its reader says why)."""
    try:
        if fmt == "parquet":
            metadata = pq.ParquetFile(path).metadata
            n_rows, n_columns = metadata.num_rows, metadata.num_columns
            groups = range(metadata.num_row_groups)
            stored = sum(metadata.row_group(i).total_byte_size for i in groups)
            return Layout(n_columns, n_rows, max(8 * n_columns, stored // max(1, n_rows)))
        parse = _parse_options(fmt)
        with tables.open_input(path) as f:
            names, data, _ = _header(f, parse, f"'{path}'")
            head = data + f.read(HEAD_BYTES)
    except (OSError, pa.ArrowException, UserError):
        return None
    line = len(head) / max(1, head.count(b"\n"), head.count(b"\r"))
    text_bytes = int(0.75 * line) + 1
    row_bytes = int(max(8 * len(names), 2 * line))
    if tables.compression_for(path):
        n_rows = _line_ends(path)
    else:
        n_rows = os.path.getsize(path) // text_bytes + 1
    return Layout(len(names), n_rows, row_bytes, text_bytes)


def _line_ends(path: str) -> int:
    """The line ends of a compressed text file, decompressed a MB at a time (at least
    its rows: a compressed file's size says little of how much it holds)."""
    count = 1
    with tables.open_input(path) as f:
        while piece := f.read(1 << 20):
            count += max(piece.count(b"\n"), piece.count(b"\r"))
    return count
