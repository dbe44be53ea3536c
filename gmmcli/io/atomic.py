"""Atomic writes: a temporary file (or folder) beside the target, then renamed into place.

An existing device, pipe or open descriptor (/dev/null, a FIFO, /dev/stdout) is written
through instead, and a symbolic link's target is replaced, the link kept.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import secrets
import shutil
import stat
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from typing import BinaryIO

from gmmcli.errors import FULL, UserError, one_line

DESCRIPTOR = re.compile(r"/dev/(std(in|out|err)|fd/\d+)|/proc/[^/]+/fd/\d+")


def check_output_path(path: str) -> None:
    """A UserError unless a file can be written at ``path``: its folder exists, it is no folder.

    Commands check every output before writing any, so a bad second output leaves no first.
    """
    if writes_through(path):
        return
    _check_parent(path)
    if os.path.isdir(path):
        raise UserError(f"output path '{path}' is a folder; give a file name")


def _check_parent(path: str) -> None:
    if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        raise UserError(
            f"output folder '{os.path.dirname(path) or '.'}' does not exist; create it first"
        )


def writes_through(path: str) -> bool:
    """Whether ``path`` is written in place rather than replaced: an existing device or
    pipe (/dev/null, a FIFO), or an open descriptor (/dev/stdout, /dev/fd/N)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)) or _names_descriptor(path)


def _names_descriptor(path: str) -> bool:
    """Whether ``path`` or a link on the way to its file is /dev/stdout, /dev/fd/N or
    /proc/PID/fd/N (such a path may end at a regular file, which must not be replaced)."""
    for _ in range(40):  # the kernel's limit on a chain of links
        if DESCRIPTOR.fullmatch(os.path.abspath(path)):
            return True
        if not os.path.islink(path):
            return False
        path = os.path.join(os.path.dirname(path), os.readlink(path))
    return False


def check_distinct(outputs: dict[str, str | None], inputs: Iterable[str | None] = ()) -> None:
    """A UserError if an output (keyed by its parameter) is one of ``inputs`` or another
    output: the same file however named. "-" is stdin among inputs, stdout among outputs;
    None is no file; devices and sockets (a terminal, /dev/null) may be shared."""
    seen: dict[object, str] = {}  # identity -> how the message calls the file
    for path in inputs:
        identity = None if path is None else _identity(path, 0)
        if identity is not None:
            seen.setdefault(identity, "stdin" if path == "-" else f"the input '{path}'")
    for parameter, path in outputs.items():
        identity = None if path is None else _identity(path, 1)
        name = "stdout" if path == "-" else f"{{{parameter}}} '{path}'"
        if identity in seen:
            raise UserError(
                f"{name} is the same file as {seen[identity]}; write each output to a file "
                "of its own",
                tuple(outputs),
            )
        if identity is not None:
            seen[identity] = name


def _identity(path: str, descriptor: int) -> object:
    """What ``path`` names ("-": ``descriptor``): an existing file's or pipe's device and
    inode, the resolved name of a new file; None for a device or a socket (one may be both
    read and written: stdin and stdout often share a terminal or a socket)."""
    try:
        info = os.fstat(descriptor) if path == "-" else os.stat(path)
    except OSError:
        return None if path == "-" else os.path.realpath(path)
    shared = stat.S_ISCHR(info.st_mode) or stat.S_ISSOCK(info.st_mode)
    return None if shared else (info.st_dev, info.st_ino)


@contextlib.contextmanager
def atomic_writer(path: str) -> Iterator[BinaryIO]:
    """A binary file that appears at ``path`` only if the block completes.

    On any exception, KeyboardInterrupt included, the temporary file is removed and an
    existing file at ``path`` is left as it was. A device, pipe or descriptor is written
    through (writes_through); a symbolic link's target is replaced, the link kept.
    """
    check_output_path(path)
    try:
        if writes_through(path):
            with open(path, "ab") as handle:
                yield handle
        else:
            with _replacing(os.path.realpath(path) if os.path.islink(path) else path) as handle:
                yield handle
    except OSError as err:
        if isinstance(err, BrokenPipeError) or not _is_ours(err, path):
            raise
        reason = FULL.get(err.errno)
        if reason:
            raise UserError(f"cannot write '{path}': {reason}; make room, then run again") from None
        raise UserError(
            f"cannot write '{path}': {err.strerror or one_line(err)}; check the folder's "
            "permissions and free space"
        ) from None


def _is_ours(err: OSError, path: str) -> bool:
    """Whether ``err`` came from writing ``path`` (a write names no file; the opening and
    renaming name it, its link's target or the temporary file beside that) rather than
    from something the block did, such as reading an input."""
    if err.filename is None:
        return True
    target = os.path.realpath(path)
    prefix = os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.")
    named = os.path.abspath(err.filename)
    return named in (os.path.abspath(path), target) or named.startswith(prefix)


# Files written within replaced_together(), to be renamed into place at its end.
_PENDING: ContextVar[list[tuple[str, str]] | None] = ContextVar("gmmcli_pending", default=None)


@contextlib.contextmanager
def replaced_together() -> Iterator[None]:
    """Within: the files atomic_writer() writes are renamed into place together when the
    block completes, and none of them if it fails (a command's outputs all or none).
    Within another, the outer one renames them."""
    if _PENDING.get() is not None:
        yield
        return
    pending: list[tuple[str, str]] = []
    token = _PENDING.set(pending)
    try:
        yield
    except BaseException:
        for name, _ in pending:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)
        raise
    finally:
        _PENDING.reset(token)
    try:
        for name, path in pending:
            os.replace(name, path)
    except BaseException:  # a signal between two renames: the others are made still
        for name, path in pending:
            with contextlib.suppress(FileNotFoundError):
                os.replace(name, path)
        raise


@contextlib.contextmanager
def _replacing(path: str) -> Iterator[BinaryIO]:
    """A temporary file beside ``path``, renamed over it if the block completes (at the
    end of replaced_together() when within) and removed if not: a signal's exception too,
    wherever it lands (the name is chosen before the file is made)."""
    name = _beside(path, "tmp")
    try:
        descriptor = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.chmod(name, _file_mode(path))
        with open(descriptor, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        pending = _PENDING.get()
        if pending is None:
            os.replace(name, path)
        else:
            pending.append((name, path))
    except BaseException as err:
        if not isinstance(err, FileExistsError):  # (that file is not this run's)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)
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
FILE_SUFFIXES = (".csv", ".tsv", ".gz", ".zst", ".bz2", ".parquet", ".pq", ".parq", ".json")


def check_output_folder(path: str, inputs: Iterable[str] = ()) -> None:
    """A UserError unless a folder of part files can be made, or replaced, at ``path``.

    Its parent must exist; an existing folder there (not a link) may hold only part files
    (what an earlier run wrote: it is replaced whole, so nothing else may be lost); and it
    must neither be, hold nor lie inside one of ``inputs``. A name with a table's
    extension, or an earlier output moved aside by a run stopped while replacing it
    (atomic_folder), is refused.
    """
    _check_parent(path)
    suffix = os.path.splitext(path)[1]
    if suffix.lower() in FILE_SUFFIXES:
        raise UserError(
            f"output '{path}' is named like a file, but a folder of Parquet files (one per "
            f"partition) will be written there; give a folder name without '{suffix}'"
        )
    _check_leftovers(path)
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
    exception, a signal's wherever it lands, the temporary folder is removed and ``path``
    is left as it was (the names are chosen first, so that the state tells what to undo).
    """
    check_output_folder(path)
    building, old = _beside(path, "tmp"), _beside(path, "old")
    try:
        os.mkdir(building)
        yield building
        if os.path.isdir(path):
            os.rename(path, old)
        os.rename(building, path)
    except BaseException as err:
        shutil.rmtree(building, ignore_errors=True)
        kept = ""
        if os.path.isdir(old) and not os.path.exists(path):
            try:
                os.rename(old, path)
            except OSError:
                kept = f"; the folder that was there is kept as '{old}'"
        if not (isinstance(err, OSError) and err.filename in (building, path)):
            raise  # the block's own error, or a signal's
        raise UserError(f"cannot write '{path}': {err.strerror or err}{kept}") from None
    shutil.rmtree(old, ignore_errors=True)


def _beside(path: str, kind: str) -> str:
    """A new hidden name beside ``path``: '.NAME.RANDOM.KIND'."""
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f".{name}.{secrets.token_hex(8)}.{kind}")


def _check_leftovers(path: str) -> None:
    """A UserError naming a folder that atomic_folder moved aside beside ``path`` and a
    stopped run left there, with how to recover."""
    parent, name = os.path.split(os.path.abspath(path))
    leftovers = sorted(glob.glob(os.path.join(glob.escape(parent), f".{glob.escape(name)}.*.old")))
    if not leftovers:
        return
    old = os.path.join(os.path.dirname(path), os.path.basename(leftovers[0]))
    if os.path.exists(path):
        raise UserError(
            f"'{old}' is left from a run stopped while replacing '{path}', which is whole; "
            "remove it, then run again"
        )
    raise UserError(
        f"'{old}' holds the earlier output of '{path}' (a run was stopped while replacing it); "
        f"rename it back to '{path}' or remove it, then run again"
    )
