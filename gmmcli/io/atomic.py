"""Atomic writes: a temporary file (or folder) beside the target, then renamed into place."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from gmmcli.errors import UserError


def check_output_path(path: str) -> None:
    """A UserError unless a file can be written at ``path``: its folder exists, it is no folder.

    Commands check every output before writing any, so a bad second output leaves no first.
    """
    _check_parent(path)
    if os.path.isdir(path):
        raise UserError(f"output path '{path}' is a folder; give a file name")


def _check_parent(path: str) -> None:
    if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        raise UserError(
            f"output folder '{os.path.dirname(path) or '.'}' does not exist; create it first"
        )


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


PART_FILE = re.compile(r"part-\d+\.parquet")  # the files of a folder output


def check_output_folder(path: str, inputs: Iterable[str] = ()) -> None:
    """A UserError unless a folder of part files can be made, or replaced, at ``path``.

    Its parent must exist; an existing folder there (not a link) may hold only part files
    (what an earlier run wrote: it is replaced whole, so nothing else may be lost); and it
    must neither be, hold nor lie inside one of ``inputs``.
    """
    _check_parent(path)
    if os.path.islink(path) or (os.path.exists(path) and not os.path.isdir(path)):
        raise UserError(
            f"output path '{path}' is a file or a link; this output is a folder of Parquet "
            "files, give a folder name"
        )
    if os.path.isdir(path):
        try:
            others = sorted(
                entry.name
                for entry in os.scandir(path)
                if not (PART_FILE.fullmatch(entry.name) and entry.is_file(follow_symlinks=False))
            )
        except OSError as err:
            raise UserError(f"cannot read the output folder '{path}': {err.strerror}") from None
        if others:
            raise UserError(
                f"output folder '{path}' holds '{others[0]}', which gmmcli did not write; "
                "give a new or empty folder (an existing one is replaced whole)"
            )
    target = os.path.realpath(path)
    for source in inputs:
        real = os.path.realpath(source)
        if real == target or real.startswith(target + os.sep) or target.startswith(real + os.sep):
            raise UserError(
                f"output folder '{path}' overlaps the input '{source}'; write it elsewhere"
            )


@contextlib.contextmanager
def atomic_folder(path: str) -> Iterator[str]:
    """A folder (its name yielded) that appears at ``path`` only if the block completes.

    It is filled beside ``path`` under a temporary name; an existing folder at ``path`` is
    moved aside, the new one renamed into place, then the old one removed. On any
    exception the temporary folder is removed and ``path`` is left as it was.
    """
    check_output_folder(path)
    parent = os.path.dirname(os.path.abspath(path))
    name = os.path.basename(os.path.abspath(path))
    try:
        building = tempfile.mkdtemp(dir=parent, prefix=f".{name}.", suffix=".tmp")
        os.chmod(building, 0o777 & ~_umask())
    except OSError as err:
        raise UserError(f"cannot write in '{parent}': {err.strerror}") from None
    try:
        yield building
        old = _move_aside(path, parent, name)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    try:
        os.rename(building, path)
    except OSError as err:
        shutil.rmtree(building, ignore_errors=True)
        kept = ""
        if old is not None:
            try:
                os.replace(old, path)
            except OSError:
                kept = f"; the folder that was there is kept as '{old}'"
        raise UserError(f"cannot write '{path}': {err.strerror or err}{kept}") from None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _move_aside(path: str, parent: str, name: str) -> str | None:
    """An existing folder at ``path`` moved to a temporary name beside it (that name)."""
    if not os.path.isdir(path):
        return None
    old = None
    try:
        old = tempfile.mkdtemp(dir=parent, prefix=f".{name}.", suffix=".old")
        os.replace(path, old)
    except OSError as err:
        if old is not None:
            with contextlib.suppress(OSError):
                os.rmdir(old)
        raise UserError(f"cannot replace '{path}': {err.strerror or err}") from None
    return old
