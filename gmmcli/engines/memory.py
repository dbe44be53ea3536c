"""How a local command keeps within ``--memory-limit``.

The limit caps the memory that the command's processes allocate beyond what they hold
once their program and libraries are loaded (the import baseline): rows read at once and
what is made of them (a fit's next chunk too, read ahead), the text a CSV reader holds
ahead, writing buffers, the core's blocks of rows and their row features, hierarchical
clustering's matrices, and the pages forked workers make their own. Pages shared with
forked workers count once, as the proportional set size (PSS) counts them. Before any row
is read, a command either finds that the file fits whole (in_memory) or plans its chunks:
how many rows a chunk holds and how many workers a pass has (plan). When even one worker
and a chunk of MIN_CHUNK_ROWS rows do not fit, the limit is too small, and the error gives
the smallest that works.

The sizes are upper bounds of what the code allocates, measured on Linux (test_memory.py
samples the PSS of the process tree under the smallest limit that works).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gmmcli.core.covariance import n_products
from gmmcli.core.em import MAX_TILE_BYTES, rows_per_block
from gmmcli.core.gaps import MAX_LAYOUT_BYTES
from gmmcli.core.model import PREDICTION_TILE_ROWS
from gmmcli.errors import UserError

MB = 1 << 20
MIN_CHUNK_ROWS = 1024  # a chunk narrower than this costs more in calls than it saves
OVERHEAD = 12 * MB  # threads' stacks and allocator arenas, pages of code run the first time
READ_AHEAD = 40  # blocks of CSV text held by pyarrow's streaming reader (32 read ahead)
MIN_READ_BLOCK = 1 << 16  # bytes of CSV text read at once at least (a row may not straddle two)
PIPE_BLOCK_COPIES = 3  # a block of text from a pipe: read, and held by its parse
MIN_BLOCK_BYTES = 1 << 18  # bytes of CSV text a first pass reads at once: at least, at most
MAX_BLOCK_BYTES = 1 << 24
PARQUET_COLUMN_BYTES = 3 * MB  # a column reader's buffer and its decoded page
HC_BYTES_PER_PAIR = 40  # hc's first cost matrix and its temporaries, per pair of leaves
ROW_GROUP_ROWS = 131072  # rows of a Parquet output's row group (gathered before writing)
FORKED_PAGES = 16 * MB  # what a forked process running fits of its own copies of its parent


@dataclass(frozen=True)
class Needs:
    """What a command holds: ``fixed`` bytes whatever the chunks, ``per_row`` bytes for
    each row of a chunk (its text as read too), and ``per_worker`` bytes for each of up to
    ``workers`` workers of a pass; with ``own_chunks`` each worker reads chunks of its own
    (processes fitting grid points of their own)."""

    fixed: int = 0
    per_row: int = 0
    per_worker: int = 0
    workers: int = 1
    own_chunks: bool = False

    def __add__(self, other: Needs) -> Needs:
        return Needs(
            self.fixed + other.fixed,
            self.per_row + other.per_row,
            self.per_worker + other.per_worker,
            max(self.workers, other.workers),
            self.own_chunks or other.own_chunks,
        )


@dataclass(frozen=True)
class Plan:
    """How a command reads: ``chunk_rows`` rows at once, passes shared out over
    ``workers`` workers."""

    chunk_rows: int
    workers: int


def plan(limit: int, needs: Needs, requested_rows: int | None, default_rows: int) -> Plan:
    """The plan that keeps ``needs`` within ``limit`` bytes: the most workers (at most
    ``needs.workers``) that take at most half of what is free and leave room for chunks
    of MIN_CHUNK_ROWS rows, then the rows that fit, at most ``requested_rows`` (or
    ``default_rows``); a UserError naming the smallest limit that works when even one
    worker and MIN_CHUNK_ROWS rows do not fit."""
    free = limit - OVERHEAD - needs.fixed
    for workers in range(max(1, needs.workers), 0, -1):
        held = workers * needs.per_worker
        row = max(1, needs.per_row * (workers if needs.own_chunks else 1))
        if workers == 1 or (held <= free // 2 and free - held >= MIN_CHUNK_ROWS * row):
            break
    rows = (free - held) // row
    if rows < MIN_CHUNK_ROWS:
        raise too_small(limit, limit - free + held + MIN_CHUNK_ROWS * row)
    return Plan(min(requested_rows or default_rows, rows), workers)


def too_small(limit: int, smallest: int) -> UserError:
    shown = shown_size(smallest)
    return UserError(
        f"{{memory_limit}} {shown_size(limit)} is too small for this command and input: it "
        f"needs at least {shown} (rows in chunks of {MIN_CHUNK_ROWS}, one worker); give "
        f"{{memory_limit}} {shown} or more",
        ("memory_limit",),
    )


def shown_size(size: int) -> str:
    """Bytes as the option is written, rounded up to a whole unit: 37MB, 2GB, 800KB."""
    for unit, scale in (("GB", 1 << 30), ("MB", MB), ("KB", 1 << 10)):
        if size >= scale:
            return f"{math.ceil(size / scale)}{unit}"
    return f"{size}B"


def core(
    n_features: int,
    n_components: int,
    workers: int,
    hc_rows: int = 0,
    sample_rows: int = 0,
    forked: bool = False,
    gap_rows: int = 0,
) -> Needs:
    """What EM and its starts hold: per worker, a block of rows centred and queued and
    its row features as the widest pass makes them (the full structure's products, for
    the data's covariance and a start's partition), with K rows of responsibilities,
    and the pages a forked worker makes its own (``forked``: every worker is a process
    with a whole fit of its own) and the layouts of blocks it keeps through missing
    values, of ``gap_rows`` rows at most (gmmcli.core.gaps.LAYOUTS: at most D + 24 bytes a
    row and 24 a missing cell); hc's matrices on ``hc_rows`` leaves; the k-means start's
    sample of ``sample_rows`` rows."""
    block_rows = rows_per_block(n_features)
    values = n_products(n_features) + 5 * n_features + 3 * n_components + 4
    per_worker = block_rows * values * 8 + MAX_TILE_BYTES + FORKED_PAGES * forked
    per_worker += min(MAX_LAYOUT_BYTES, gap_rows * (25 * n_features + 24))
    fixed = HC_BYTES_PER_PAIR * hc_rows**2 + sample_rows * (16 * n_features + 48)
    return Needs(fixed=fixed, per_worker=per_worker, workers=workers, own_chunks=forked)


def features(n_features: int) -> Needs:
    """A chunk's features as float64, its missing-value flags and weights, and the
    column conversions on the way."""
    return Needs(per_row=8 * n_features + 48)


def read_ahead(n_columns: int, n_features: int) -> Needs:
    """The next chunk, read and converted while the core works on this one (a fit's
    passes over a file: stream.read_ahead): its ``n_columns`` columns as read and its
    features; a CSV reader's blocks of text are as many either way."""
    return Needs(per_row=16 * n_columns) + features(n_features)


def parquet_reading(n_columns: int) -> Needs:
    """Parquet read in batches: each column's reader, and a batch with its copy."""
    return Needs(fixed=PARQUET_COLUMN_BYTES * n_columns, per_row=16 * n_columns)


def csv_reading(n_columns: int, text_bytes: int, piped: bool = False) -> Needs:
    """CSV read in chunks: the text of each row (``text_bytes``) in every block held at
    once (READ_AHEAD by pyarrow's reader of a file, PIPE_BLOCK_COPIES from a pipe), and
    the parsed rows handed on with their copy."""
    copies = PIPE_BLOCK_COPIES if piped else READ_AHEAD
    fixed = 0 if piped else READ_AHEAD * MIN_READ_BLOCK
    return Needs(fixed=fixed, per_row=copies * text_bytes + 16 * n_columns)


def block_bytes(chunk_rows: int, text_bytes: int, piped: bool = False) -> int:
    """Bytes of CSV text read at once for chunks of ``chunk_rows`` rows (from a file at
    least MIN_READ_BLOCK; a pipe's reader reads on past a longer row)."""
    return chunk_rows * text_bytes if piped else max(MIN_READ_BLOCK, chunk_rows * text_bytes)


def prediction(n_features: int, n_components: int, n_columns: int, fmt: str | None) -> Needs:
    """classify's or score's arrays of a chunk (log-densities, probabilities, the new
    columns and their copies as Arrow), its tiles, and the output's buffers: a Parquet
    output gathers whole row groups of the output's columns before writing them."""
    new = n_components + 2
    tile = PREDICTION_TILE_ROWS * (n_products(n_features) + n_features + 2 * n_components) * 8
    needs = Needs(fixed=2 * tile, per_row=48 * new + 16 * n_features)
    if fmt == "parquet":
        needs += Needs(fixed=3 * ROW_GROUP_ROWS * 8 * (n_columns + new))
    return needs


def reading(fmt: str, n_columns: int, text_bytes: int, piped: bool = False) -> Needs:
    """What reading ``n_columns`` columns in chunks holds (text_bytes: a CSV row's)."""
    if fmt == "parquet":
        return parquet_reading(n_columns)
    return csv_reading(n_columns, text_bytes, piped)


def profile_block(limit: int) -> int:
    """Bytes of CSV text that a first pass (types, row count) reads at once: a sixteenth
    of what the limit leaves, within MIN_BLOCK_BYTES and MAX_BLOCK_BYTES (the pass holds a
    block's text and its table, nothing else)."""
    return int(min(MAX_BLOCK_BYTES, max(MIN_BLOCK_BYTES, (limit - OVERHEAD) // 16)))


def in_memory(limit: int, n_rows: int, needs: Needs) -> int | None:
    """The workers of passes over ``n_rows`` rows held whole with ``needs`` (per row,
    fixed, per worker) within ``limit`` bytes; None if not even one fits."""
    free = limit - OVERHEAD - needs.fixed - n_rows * needs.per_row
    if free < needs.per_worker:
        return None
    return max(1, min(needs.workers, free // max(1, needs.per_worker)))
