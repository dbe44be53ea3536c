"""Rows kept on the workers of a Dask cluster (the optional extra ``gmmcli[dask]``).

The Parquet files' row groups are gathered into partitions (from the files' footers, so
every partition knows its first row in the input) and each partition is read with pyarrow
and turned into float64 arrays once, on the worker that holds it. Every pass of the core then sends
one small function per partition; each partition returns its partial sufficient
statistics, which the client adds up in partition order. No rows travel to the client
but the few that initialisation picks (the seeding sample, candidate rows). If a worker
dies, Dask recomputes its partitions from the files and the pass goes on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import dask
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from distributed import Client, Future, LocalCluster

from gmmcli.core.em import InMemoryRows, PartFunction, T, rows_per_block
from gmmcli.core.gaps import LAYOUTS
from gmmcli.errors import UserError, one_line
from gmmcli.io import tables
from gmmcli.io.atomic import atomic_folder

PARQUET_SUFFIXES = (".parquet", ".pq", ".parq")
PARTITION_BYTES = 128 * 2**20  # row groups are gathered into partitions of about this size


@contextlib.contextmanager
def connect(scheduler: str) -> Iterator[Client]:
    """A client of the scheduler at ADDRESS, or of a LocalCluster for 'local[:N]' (N
    worker processes with one thread each, on loopback; N defaults to the cores)."""
    if scheduler == "local" or scheduler.startswith("local:"):
        count = scheduler.partition(":")[2] or str(os.cpu_count() or 1)
        if not count.isdigit() or int(count) < 1:
            raise UserError(
                f"{{scheduler}} {scheduler!r}: write local:N with N at least 1", ("scheduler",)
            )
        with (
            LocalCluster(
                n_workers=int(count),
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
                # a task's failure reaches the client, which says it (in one line for a
                # user's mistake): the workers do not log it too, with their traceback
                silence_logs=logging.CRITICAL,
            ) as local,
            Client(local) as client,
        ):
            yield client
        return
    try:
        client = Client(scheduler)  # waits Dask's distributed.comm.timeouts.connect
    except (OSError, ValueError) as err:
        raise UserError(
            f"cannot reach the Dask scheduler at {scheduler!r} ({one_line(err, limit=None)}); "
            "start one with "
            "'dask scheduler', or use {scheduler} local:N",
            ("scheduler",),
        ) from None
    with client:
        yield client


def parquet_files(path: str) -> list[str]:
    """The Parquet files of a file, a folder (searched recursively) or a glob, sorted."""
    if os.path.isdir(path):
        found = [
            os.path.join(folder, name)
            for folder, _, names in os.walk(path)
            for name in names
            if name.endswith(PARQUET_SUFFIXES) and not name.startswith((".", "_"))
        ]
    elif os.path.isfile(path):
        found = [path]
    else:
        found = [name for name in glob.glob(path, recursive=True) if os.path.isfile(name)]
    if not found:
        raise UserError(
            f"no Parquet files at '{path}'; the dask engine reads a Parquet file, a folder "
            "of them or a glob such as 'data/*.parquet'"
        )
    not_parquet = [name for name in found if not name.endswith(PARQUET_SUFFIXES)]
    if not_parquet:
        raise UserError(
            f"'{not_parquet[0]}' is not a Parquet file; the dask engine reads Parquet only: "
            "convert the data to Parquet (.parquet, .pq or .parq) first"
        )
    return sorted(found)


def check_schemas(files: list[str], name: str, columns: list[str] | None) -> None:
    """A UserError naming the first file that lacks ``columns`` (None: the first file's
    columns) or has other types for them than the first file."""
    schemas = [file_schema(path) for path in files]

    def types(schema: pa.Schema) -> list:
        if columns is None:
            return [(field.name, field.type) for field in schema]
        found = set(schema.names)
        return [(c, schema.field(c).type if c in found else None) for c in columns]

    for path, schema in zip(files, schemas, strict=True):
        if types(schema) != types(schemas[0]):
            raise UserError(
                f"'{path}' has other columns or types than '{files[0]}' in {name}; give "
                "files of one schema"
            )


def file_schema(path: str) -> pa.Schema:
    try:
        return pq.read_schema(path)
    except (OSError, pa.ArrowException):
        raise UserError(f"'{path}' is not a valid Parquet file (truncated?); check it") from None


@dataclass(frozen=True)
class ParquetFiles:
    """Parquet files the workers read: their paths (parquet_files()), how messages call
    them, and the size partitions gather row groups into."""

    paths: list[str]
    name: str = "the input"
    partition_bytes: int = PARTITION_BYTES

    def check_schemas(self, columns: list[str] | None) -> None:
        """check_schemas() of the files for ``columns``."""
        check_schemas(self.paths, self.name, columns)

    def partitions(self, columns: list[str] | None) -> list[Partition]:
        """The files' row groups gathered into partitions of about ``partition_bytes`` of
        ``columns`` (all if None) each, in order, from the files' footers."""
        parts, first_row = [], 0
        for path in self.paths:
            metadata = _metadata(path)
            groups, size, rows = [], 0, 0
            for index in range(metadata.num_row_groups):
                group = metadata.row_group(index)
                chunks = (group.column(j) for j in range(group.num_columns))
                nbytes = sum(
                    chunk.total_uncompressed_size
                    for chunk in chunks
                    if columns is None or chunk.path_in_schema in columns
                )
                if groups and size + nbytes > self.partition_bytes:
                    parts.append(Partition(path, tuple(groups), first_row))
                    first_row, groups, size, rows = first_row + rows, [], 0, 0
                groups.append(index)
                size, rows = size + nbytes, rows + group.num_rows
            if groups:
                parts.append(Partition(path, tuple(groups), first_row))
                first_row += rows
        if not parts:
            raise UserError(f"{self.name} has no data rows; give at least one row of data")
        return parts


def _metadata(path: str) -> pq.FileMetaData:
    try:
        return pq.ParquetFile(path).metadata
    except (OSError, pa.ArrowException):
        raise UserError(f"'{path}' is not a valid Parquet file (truncated?); check it") from None


@dataclass(frozen=True)
class Partition:
    """Row groups of one file, read as one partition: rows ``first_row`` on of the input."""

    path: str
    row_groups: tuple[int, ...]
    first_row: int

    def read(self, columns: list[str] | None) -> pa.Table:
        """The partition's ``columns`` (all if None), on a worker."""
        parquet = pq.ParquetFile(self.path, pre_buffer=False, page_checksum_verification=True)
        return parquet.read_row_groups(list(self.row_groups), columns=columns, use_threads=False)


@dataclass
class ClusterRows:
    """Feature rows held on the workers, one (X, weights) pair per partition. A pass's
    function runs in each partition's task, so sum over them with the SERIAL reducer:
    Dask's own threads and processes share out the cores (gmmcli.inputs does so)."""

    client: Client
    parts: list[Future]  # (X, weights, rows dropped, classes or None) of every partition
    first_rows: list[int]
    n_features: int
    n_rows: int
    dropped: int = 0
    centre: np.ndarray | None = None
    dtype: type = np.float64
    block_rows: int = 0  # 0: rows_per_block(n_features)

    def __post_init__(self) -> None:
        self.block_rows = self.block_rows or rows_per_block(self.n_features)

    @property
    def n_parts(self) -> int:
        return len(self.parts)

    def centred(self, centre: np.ndarray, dtype: type = np.float64) -> ClusterRows:
        return dataclasses.replace(self, centre=centre, dtype=dtype)

    def map_parts(self, function: PartFunction) -> list[T]:
        centre = np.zeros(self.n_features) if self.centre is None else self.centre
        futures = self.client.map(
            _run_part,
            self.parts,
            range(self.n_parts),
            self.first_rows,
            function=function,
            centre=centre,
            dtype=self.dtype,
            block_rows=self.block_rows,
            pure=False,
        )
        return _gather(self.client, futures, "the data")


def _gather(client: Client, futures: list[Future], name: str) -> list:
    """The futures' results; a file that fails to read on a worker is a one-line error."""
    try:
        return client.gather(futures)
    except (OSError, pa.ArrowException) as err:
        raise UserError(f"reading {name} on the cluster failed: {one_line(err)}") from None


def _run_part(part, index, first_row, *, function, centre, dtype, block_rows):
    """``function`` of a partition's blocks, where it lies. A worker outlives the fit, so
    it keeps no block layouts for the next pass (LAYOUTS)."""
    X, weights, _, classes = part
    blocks = InMemoryRows(X, weights, centre, dtype, block_rows, classes).blocks()
    try:
        return function(blocks, index, first_row)
    finally:
        LAYOUTS.clear()


def load_rows(
    client: Client,
    files: ParquetFiles,
    names: list[str],
    *,
    weight_column: str | None = None,
    missing: str = "refuse",
    labels: tuple[str, list[str]] | None = None,
) -> ClusterRows:
    """Read the files on the workers and keep their feature rows there (checked as in
    memory; messages name the partition and the row in it); with ``labels`` (the label
    column and the class names), each row's class too."""
    columns = names + ([weight_column] if weight_column else [])
    name = files.name
    read = columns + ([labels[0]] if labels else [])
    arrays = [
        dask.delayed(_part_arrays)(partition, index, names, weight_column, missing, name, labels)
        for index, partition in enumerate(files.partitions(read))
    ]
    futures = client.compute(arrays)
    shapes = _gather(client, client.map(_shape, futures, pure=False), name)
    lengths = [length for length, _ in shapes]
    return ClusterRows(
        client,
        futures,
        np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(int).tolist(),
        len(names),
        int(sum(lengths)),
        sum(dropped for _, dropped in shapes),
    )


def _part_arrays(partition, index, names, weight_column, missing, name, labels):
    """(features, weights, rows dropped, classes or None) of one partition, the first two
    as float64 arrays."""
    source = f"partition {index} of {name}"
    columns = names + ([weight_column] if weight_column else [])
    table = partition.read(columns + ([labels[0]] if labels else []))
    features = tables.select_features(
        table, columns=names, weight_column=weight_column, source=source, require_positive=False
    )
    if labels:
        features = dataclasses.replace(
            features, labels=tables.label_column(table, labels[0], source)
        )
    features, dropped = tables.require_complete(
        features, source=source, missing=missing, allow_empty=True
    )
    weights = np.ones(len(features.X)) if features.weights is None else features.weights
    classes = None if not labels else tables.class_codes(features.labels, labels[1])
    return features.X, weights, dropped, classes


def file_labels(client: Client, files: ParquetFiles, column: str) -> list[str]:
    """The distinct labels of the files' label column, read on the workers."""
    found = [
        dask.delayed(_part_labels)(partition, column, f"partition {index} of {files.name}")
        for index, partition in enumerate(files.partitions([column]))
    ]
    return sorted(set().union(*_gather(client, client.compute(found), files.name)))


def _part_labels(partition, column: str, source: str) -> set[str]:
    labels = tables.label_column(partition.read([column]), column, source)
    return set(labels.drop_null().to_pylist())


def _shape(part) -> tuple[int, int]:
    X, _, dropped, _ = part
    return len(X), dropped


def write_parts(
    client: Client,
    files: ParquetFiles,
    transform: Callable[[pa.Table, int, int], tuple[pa.Table, T]],
    folder: str | None,
    *,
    columns: list[str] | None = None,
    accept: Callable[[list[T]], None] = lambda results: None,
) -> list[T]:
    """``transform(table, index, first_row)`` of every partition on the workers, results
    in order.

    With ``folder``, each partition's table is written there as part-NNNNN.parquet: into
    a temporary folder beside it first, renamed into place when every part is written
    and ``accept(results)`` has not raised.
    """
    partitions = files.partitions(columns)
    with contextlib.ExitStack() as stack:
        target = stack.enter_context(atomic_folder(folder)) if folder else None
        tasks = [
            dask.delayed(_transform_part)(partition, index, columns, transform, target)
            for index, partition in enumerate(partitions)
        ]
        results = _gather(client, client.compute(tasks), files.name)
        accept(results)
        return results


def _transform_part(partition, index, columns, transform, folder):
    table, result = transform(partition.read(columns), index, partition.first_row)
    if folder is not None:
        tables.write_table(table, os.path.join(folder, f"part-{index:05d}.parquet"), "parquet")
    return result
