"""Rows streamed from a file in chunks: every pass of the core re-reads the file.

Memory stays at a chunk's worth of rows whatever the file's length. Parquet is read batch
by batch (``ParquetFile.iter_batches`` without pre-buffering, which would hold whole row
groups), CSV/TSV with pyarrow's streaming reader, features converted to float64 as they
are read. The core sees the same blocks, in the same order, as from an array in memory
(chunks are re-cut into them), so a streamed fit equals the in-memory one bit for bit.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from gmmcli.core.em import OnePart, in_blocks, rows_per_block
from gmmcli.errors import UserError, one_line
from gmmcli.io import tables

DEFAULT_CHUNK_ROWS = 200_000
CSV_BYTES_PER_VALUE = 20  # a generous guess that turns chunk rows into CSV block bytes


def open_batches(
    path: str,
    fmt: str,
    chunk_rows: int,
    columns: list[str] | None = None,
    float_columns: list[str] = (),
) -> Iterator[pa.RecordBatch]:
    """The file's rows as record batches of about ``chunk_rows`` rows, in file order.

    ``columns`` limits what is read; ``float_columns`` are read as float64 (CSV types are
    otherwise inferred from the first block). pyarrow opens the path (or stdin's
    descriptor) itself, so its reader threads hold no Python objects. Read errors become
    one-line UserErrors.
    """
    name = "stdin" if path == "-" else f"'{path}'"
    source = "/dev/stdin" if path == "-" else path
    try:
        if fmt == "parquet":
            parquet = pq.ParquetFile(source, pre_buffer=False, page_checksum_verification=True)
            yield from parquet.iter_batches(batch_size=chunk_rows, columns=columns)
            return
        width = len(columns) if columns else 8
        block_size = chunk_rows * width * CSV_BYTES_PER_VALUE
        parse = pa_csv.ParseOptions(delimiter="\t" if fmt == "tsv" else ",")
        convert = pa_csv.ConvertOptions(
            include_columns=columns, column_types=dict.fromkeys(float_columns, pa.float64())
        )
        if path == "-":
            yield from _pipe_batches(sys.stdin.buffer, block_size, parse, convert)
            return
        read = pa_csv.ReadOptions(block_size=block_size)
        yield from pa_csv.open_csv(
            source, read_options=read, parse_options=parse, convert_options=convert
        )
    except pa.ArrowInvalid as err:
        raise _conversion_error(err, name) from None
    except (OSError, pa.ArrowException) as err:
        raise UserError(f"cannot read {name}: {one_line(err)}") from None


def _pipe_batches(
    pipe: BinaryIO,
    block_size: int,
    parse: pa_csv.ParseOptions,
    convert: pa_csv.ConvertOptions,
) -> Iterator[pa.RecordBatch]:
    """CSV from a pipe, parsed block by block (pyarrow's own reader needs a seekable file).

    Blocks end at a line end (so a quoted value may not hold one); every block is copied
    into Arrow memory and parsed with the header's names and the first block's types.
    """
    header = pipe.readline()
    names = pa_csv.read_csv(pa.BufferReader(tables.arrow_copy(header + b"\n")), parse_options=parse)
    names = names.column_names if names.num_columns else []
    carry, types = b"", None
    while True:
        data = pipe.read(block_size)
        block = carry + data
        cut = block.rfind(b"\n") + 1 if data else len(block)
        block, carry = block[:cut], block[cut:]
        if block.strip():
            options = pa_csv.ConvertOptions(
                include_columns=convert.include_columns,
                column_types=types or convert.column_types,
            )
            table = pa_csv.read_csv(
                pa.BufferReader(tables.arrow_copy(block)),
                read_options=pa_csv.ReadOptions(column_names=names),
                parse_options=parse,
                convert_options=options,
            )
            types = types or dict(zip(table.column_names, table.schema.types, strict=True))
            yield from table.to_batches()
        if not data:
            return


def file_feature_names(
    path: str,
    fmt: str,
    columns: list[str] | None,
    exclude: list[str],
    weight_column: str | None,
    name: str,
) -> list[str]:
    """The features to read from a file: ``columns``, else what --columns defaults to.

    Parquet: from its schema, every name checked. CSV: from its first block, checked as in
    memory (a number column with a typo is an error); later blocks check ``columns``.
    """
    if fmt == "parquet":
        try:
            schema = pq.read_schema(path)
        except (OSError, pa.ArrowException):
            raise UserError(
                f"{name} is not a valid Parquet file (truncated?); "
                "check the file, or pass {format} if it is not Parquet",
                ("format",),
            ) from None
        return parquet_feature_names(schema, columns, exclude, weight_column, name)
    if columns:
        return columns
    first = next(open_batches(path, fmt, DEFAULT_CHUNK_ROWS), None)
    if first is None:
        raise UserError(f"{name} has no data rows; give a file with at least one row of data")
    table = pa.Table.from_batches([first])
    return tables.select_features(
        table, exclude=exclude, weight_column=weight_column, source=name, require_positive=False
    ).names


def parquet_feature_names(
    schema: pa.Schema,
    columns: list[str] | None,
    exclude: list[str],
    weight_column: str | None,
    name: str,
) -> list[str]:
    """The feature columns of a Parquet file from its schema: ``columns``, else every
    numeric column but ``exclude`` and the weights; every name checked against the schema."""
    chosen = columns or tables.default_feature_names(schema, exclude, weight_column)
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
    """A table file served to the core as blocks of feature rows, re-read on every pass."""

    path: str
    fmt: str
    names: list[str]
    weight_column: str | None = None
    chunk_rows: int = DEFAULT_CHUNK_ROWS
    drop_missing: bool = False
    centre: np.ndarray | None = None
    dtype: type = np.float64
    name: str | None = None  # how messages call the input (default: the path quoted)
    block_rows: int = 0  # rows per block of the core (0: rows_per_block); chunks are re-cut

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

    def features(self) -> Iterator[tables.Features]:
        """Each chunk's features, checked as in memory; row numbers count from the file's start."""
        columns = self.names + ([self.weight_column] if self.weight_column else [])
        first_row = 0
        for batch in open_batches(self.path, self.fmt, self.chunk_rows, columns, columns):
            chunk = tables.select_features(
                pa.Table.from_batches([batch]),
                columns=self.names,
                weight_column=self.weight_column,
                source=self.label,
                first_row=first_row,
                require_positive=False,
            )
            first_row += batch.num_rows
            yield chunk

    def blocks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The complete rows centred, in blocks counted from the first (not by chunk)."""
        centre = np.zeros(self.n_features) if self.centre is None else self.centre
        for X, weights in in_blocks(self._complete_rows(), self.block_rows):
            yield (X - centre).astype(self.dtype, copy=False), weights

    def _complete_rows(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Each chunk's complete rows (or an error) and their weights."""
        positive = False
        for chunk in self.features():
            chunk, _ = tables.require_complete(
                chunk,
                source=self.label,
                drop_missing=self.drop_missing,
                allow_empty=True,
            )
            weights = np.ones(len(chunk.X)) if chunk.weights is None else chunk.weights
            positive = positive or bool((weights > 0).any())
            yield chunk.X, weights
        if self.weight_column and not positive:
            raise tables.no_positive_weight(self.weight_column, self.label)


def read_parquet_features(
    path: str, names: list[str], weight_column: str | None, name: str
) -> tables.Features:
    """A Parquet file's features in one array, read and checked column by column, so that
    reading takes the array plus one column (not the whole table as well)."""
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
    except (OSError, pa.ArrowException) as err:
        raise UserError(f"cannot read {name}: {one_line(err)}") from None
    pa.default_memory_pool().release_unused()  # the columns' memory back to the system
    return tables.Features(X, names, weights, missing, weight_column)


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


def in_memory_bytes(path: str, fmt: str, n_columns: int | None = None) -> int:
    """A generous estimate of what reading the file whole would take (all its columns
    unless ``n_columns`` is given)."""
    if fmt == "parquet":
        metadata = pq.ParquetFile(path).metadata
        return metadata.num_rows * (n_columns or metadata.num_columns) * 8 * 3
    return os.path.getsize(path) * 3
