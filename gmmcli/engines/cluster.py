"""Rows kept on the workers of a Dask cluster (the optional extra ``gmmcli[dask]``).

The Parquet input is read with ``dask.dataframe.read_parquet`` and each partition turned
into float64 arrays once, on the worker that holds it. Every pass of the core then sends
one small function per partition; each partition returns its partial sufficient
statistics, which the client adds up in partition order. No rows travel to the client.
If a worker dies, Dask recomputes its partitions from the files and the pass goes on.
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
import dask.dataframe as dd
import numpy as np
import pyarrow as pa
from distributed import Client, Future, LocalCluster

from gmmcli.core.em import DEFAULT_BLOCK_ROWS, InMemoryRows, PartFunction, T
from gmmcli.errors import UserError
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
            raise UserError(f"--scheduler {scheduler!r}: write local:N with N at least 1")
        with (
            LocalCluster(
                n_workers=int(count),
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
                silence_logs=logging.ERROR,
            ) as local,
            Client(local) as client,
        ):
            yield client
        return
    try:
        client = Client(scheduler)  # waits Dask's distributed.comm.timeouts.connect
    except (OSError, ValueError) as err:
        raise UserError(
            f"cannot reach the Dask scheduler at {scheduler!r} ({' '.join(str(err).split())}); "
            "start one with "
            "'dask scheduler', or use --scheduler local:N"
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


def _partitions(files: list[str], columns: list[str] | None, partition_bytes: int):
    frame = dd.read_parquet(
        files, columns=columns, split_row_groups="adaptive", blocksize=partition_bytes
    )
    return frame.to_delayed()


@dataclass
class ClusterRows:
    """Feature rows held on the workers, one (X, weights) pair per partition."""

    client: Client
    parts: list[Future]  # (X, weights, rows dropped) of every partition
    first_rows: list[int]
    n_features: int
    n_rows: int
    dropped: int = 0
    centre: np.ndarray | None = None
    dtype: type = np.float64
    block_rows: int = DEFAULT_BLOCK_ROWS

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
        return self.client.gather(futures)


def _run_part(part, index, first_row, *, function, centre, dtype, block_rows):
    X, weights, _ = part
    return function(InMemoryRows(X, weights, centre, block_rows, dtype).blocks(), index, first_row)


def load_rows(
    client: Client,
    files: list[str],
    names: list[str],
    *,
    weight_column: str | None = None,
    drop_missing: bool = False,
    name: str = "the input",
    block_rows: int = DEFAULT_BLOCK_ROWS,
    partition_bytes: int = PARTITION_BYTES,
) -> ClusterRows:
    """Read the files on the workers and keep their feature rows there (checked as in
    memory; messages name the partition and the row in it)."""
    columns = names + ([weight_column] if weight_column else [])
    partitions = _partitions(files, columns, partition_bytes)
    arrays = [
        dask.delayed(_part_arrays)(partition, index, names, weight_column, drop_missing, name)
        for index, partition in enumerate(partitions)
    ]
    futures = client.compute(arrays)
    shapes = client.gather(client.map(_shape, futures, pure=False))
    lengths = [length for length, _ in shapes]
    return ClusterRows(
        client,
        futures,
        np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(int).tolist(),
        len(names),
        int(sum(lengths)),
        sum(dropped for _, dropped in shapes),
        block_rows=block_rows,
    )


def _part_arrays(frame, index, names, weight_column, drop_missing, name):
    """(features, weights, rows dropped) of one partition, as float64 arrays."""
    source = f"partition {index} of {name}"
    features = tables.select_features(
        pa.Table.from_pandas(frame, preserve_index=False),
        columns=names,
        weight_column=weight_column,
        source=source,
        require_positive=False,
    )
    features, dropped = tables.require_complete(
        features, source=source, drop_missing=drop_missing, allow_empty=True
    )
    weights = np.ones(len(features.X)) if features.weights is None else features.weights
    return features.X, weights, dropped


def _shape(part) -> tuple[int, int]:
    X, _, dropped = part
    return len(X), dropped


def write_parts(
    client: Client,
    files: list[str],
    transform: Callable[[pa.Table, int], tuple[pa.Table, T]],
    folder: str | None,
    *,
    columns: list[str] | None = None,
    accept: Callable[[list[T]], None] = lambda results: None,
    partition_bytes: int = PARTITION_BYTES,
) -> list[T]:
    """``transform(table, index)`` of every partition on the workers, results in order.

    With ``folder``, each partition's table is written there as part-NNNNN.parquet: into
    a temporary folder beside it first, renamed into place when every part is written
    and ``accept(results)`` has not raised.
    """
    partitions = _partitions(files, columns, partition_bytes)
    with contextlib.ExitStack() as stack:
        target = stack.enter_context(atomic_folder(folder)) if folder else None
        tasks = [
            dask.delayed(_transform_part)(partition, index, transform, target)
            for index, partition in enumerate(partitions)
        ]
        results = client.gather(client.compute(tasks))
        accept(results)
        return results


def _transform_part(frame, index, transform, folder):
    table, result = transform(pa.Table.from_pandas(frame, preserve_index=False), index)
    if folder is not None:
        tables.write_table(table, os.path.join(folder, f"part-{index:05d}.parquet"), "parquet")
    return result
