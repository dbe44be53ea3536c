"""select-k's grid table on disk, with the fingerprint of the data and options that made
its rows: in a Parquet table's schema metadata, or in TABLE.meta.json beside a CSV or TSV
table. Both are replaced together, atomically, each time the table is written.
"""

from __future__ import annotations

import hashlib
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq

from gmmcli.errors import UserError
from gmmcli.io import tables
from gmmcli.io.atomic import atomic_write_bytes, replaced_together, writes_through

METADATA_KEY = b"gmmcli.select-k"
HASHED_BYTES = 1 << 20  # a file's first and last MB are hashed


def file_fingerprint(path: str) -> dict[str, object]:
    """The size, modification time and SHA-256 of the first and last MB of a file."""
    with open(path, "rb") as f:
        info = os.fstat(f.fileno())
        first = hashlib.sha256(f.read(HASHED_BYTES)).hexdigest()
        f.seek(max(0, info.st_size - HASHED_BYTES))
        last = hashlib.sha256(f.read(HASHED_BYTES)).hexdigest()
    return {
        "size": info.st_size,
        "modified_ns": info.st_mtime_ns,
        "first_mb_sha256": first,
        "last_mb_sha256": last,
    }


def meta_path(path: str) -> str:
    """Where a CSV or TSV table's fingerprint is kept."""
    return f"{path}.meta.json"


def fingerprint_file(path: str) -> str | None:
    """The file beside a CSV or TSV table that holds its fingerprint (None for Parquet,
    which keeps it inside, and for a table that cannot be read back)."""
    if not read_back(path) or tables.format_for(path, None, for_output=True) == "parquet":
        return None
    return meta_path(path)


def read_back(path: str) -> bool:
    """Whether a table written to ``path`` can be read again: not stdout ("-"), a device
    or a pipe."""
    return path != "-" and not writes_through(path)


def write_grid(columns: dict[str, list], path: str, fingerprint: dict) -> None:
    """The grid's ``columns`` written to ``path`` (stdout for "-") with ``fingerprint``
    where it can be read back."""
    table = pa.table(columns)
    if not read_back(path):
        tables.write_table(table, path)
        return
    text = json.dumps(fingerprint, sort_keys=True, indent=1) + "\n"
    beside = fingerprint_file(path)
    with replaced_together():
        if beside is None:
            tables.write_table(table.replace_schema_metadata({METADATA_KEY: text}), path)
        else:
            tables.write_table(table, path)
            atomic_write_bytes(beside, text.encode())


def read_grid(path: str) -> tuple[dict[str, list], dict | None]:
    """The columns of the grid table at ``path`` and its fingerprint (None if it has
    none); a class column (select-k with labels) as text, as written."""
    table = tables.read_table(path, name=f"'{path}'", text="class")
    if tables.format_for(path, None) == "parquet":
        text = (pq.read_schema(path).metadata or {}).get(METADATA_KEY)
    else:
        try:
            with open(meta_path(path), "rb") as f:
                text = f.read()
        except FileNotFoundError:
            text = None
    try:
        fingerprint = None if text is None else json.loads(text)
    except ValueError:
        raise UserError(
            f"the fingerprint of '{path}' is not valid JSON; run without {{resume}} to start over",
            ("resume",),
        ) from None
    return table.to_pydict(), fingerprint
