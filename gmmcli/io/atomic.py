"""Atomic writes: a temporary file (or folder) beside the target, then renamed into place."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from typing import BinaryIO

from gmmcli.errors import UserError


def check_output_path(path: str) -> None:
    """A UserError unless a file can be written at ``path``: its folder exists, it is no folder.

    Commands check every output before writing any, so a bad second output leaves no first.
    """
    if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        raise UserError(
            f"output folder '{os.path.dirname(path) or '.'}' does not exist; create it first"
        )
    if os.path.isdir(path):
        raise UserError(f"output path '{path}' is a folder; give a file name")


@contextlib.contextmanager
def atomic_writer(path: str) -> Iterator[BinaryIO]:
    """A binary file that appears at ``path`` only if the block completes.

    On any exception, KeyboardInterrupt included, the temporary file is removed and an
    existing file at ``path`` is left as it was.
    """
    check_output_path(path)
    folder = os.path.dirname(os.path.abspath(path))
    try:
        handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed below, kept on success)
            dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp", delete=False
        )
    except OSError as err:
        raise UserError(f"cannot write in '{folder}': {err.strerror}") from None
    try:
        os.chmod(handle.name, _file_mode(path))
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, path)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(handle.name)
        if isinstance(err, OSError) and not isinstance(err, BrokenPipeError):
            raise UserError(
                f"cannot write '{path}': {err.strerror}; check the folder's permissions and "
                "free space"
            ) from None
        raise


def _file_mode(path: str) -> int:
    """The mode an existing file at ``path`` has, or what a new file gets under the umask."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return 0o666 & ~_umask()


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_writer(path) as handle:
        handle.write(data)


def check_output_folder(path: str) -> None:
    """A UserError unless a folder can be made (or replaced) at ``path``."""
    if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        raise UserError(
            f"output folder '{os.path.dirname(path) or '.'}' does not exist; create it first"
        )
    if os.path.exists(path) and not os.path.isdir(path):
        raise UserError(
            f"output path '{path}' is a file; this output is a folder of Parquet files, "
            "give a folder name"
        )


@contextlib.contextmanager
def atomic_folder(path: str) -> Iterator[str]:
    """A folder (its name yielded) that appears at ``path`` only if the block completes.

    It is filled beside ``path`` under a temporary name; an existing folder at ``path`` is
    moved aside, the new one renamed into place, then the old one removed. On any
    exception the temporary folder is removed and ``path`` is left as it was.
    """
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise UserError(
            f"output folder '{os.path.dirname(path) or '.'}' does not exist; create it first"
        )
    if os.path.isfile(path):
        raise UserError(f"output path '{path}' is a file; this output is a folder of Parquet files")
    name = os.path.basename(os.path.abspath(path))
    try:
        building = tempfile.mkdtemp(dir=parent, prefix=f".{name}.", suffix=".tmp")
        os.chmod(building, 0o777 & ~_umask())
    except OSError as err:
        raise UserError(f"cannot write in '{parent}': {err.strerror}") from None
    try:
        yield building
        old = None
        if os.path.isdir(path):
            old = tempfile.mkdtemp(dir=parent, prefix=f".{name}.", suffix=".old")
            os.replace(path, old)
        os.rename(building, path)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
