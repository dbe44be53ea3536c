"""Work shared out over processes forked for one pass, for rows held in this process.

Threads share numpy's work only as far as the GIL lets them: with blocks small enough to
stay in cache, numpy's calls are short and the threads mostly wait for each other. A child
forked for the pass shares the parent's memory (copy-on-write; the rows are only read),
runs its share of the pass and sends back what it computed, so nothing but the results is
copied. Only on Linux, where fork() is the normal way to start a process.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import BinaryIO, TypeVar

S = TypeVar("S")
T = TypeVar("T")


def fork_available() -> bool:
    return sys.platform.startswith("linux") and hasattr(os, "fork")


def map_forked(function: Callable[[S], T], shares: Sequence[S]) -> list[T]:
    """``[function(share) for share in shares]``: the first share here, each other one in a
    child process forked for it. ``function`` must not change state the parent relies on
    (a child's changes stay in the child). An exception in a child is raised here."""
    children: list[tuple[int, BinaryIO]] = []
    try:
        for share in shares[1:]:
            children.append(_start(function, share))
        results = [function(shares[0])]
        for _, reader in children:
            results.append(_result(reader))
        return results
    finally:
        for pid, reader in children:
            reader.close()
            _reap(pid)


def _start(function: Callable[[S], T], share: S) -> tuple[int, BinaryIO]:
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():  # Python 3.12+ warns of fork() beside other threads
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: never returns, never runs the parent's exit handlers
        status = 0
        try:
            os.close(read_end)
            try:
                outcome = (True, function(share))
            except BaseException as error:
                outcome = (False, error)
            with os.fdopen(write_end, "wb") as out:
                _dump(outcome, out)
        except BaseException:
            status = 1
        finally:
            os._exit(status)
    os.close(write_end)
    return pid, os.fdopen(read_end, "rb")


def _dump(outcome: tuple[bool, object], out: BinaryIO) -> None:
    try:
        payload = pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # an exception that does not pickle: keep its text
        payload = pickle.dumps((False, RuntimeError(repr(outcome[1]))))
    out.write(payload)


def _result(reader: BinaryIO):
    try:
        ok, value = pickle.load(reader)
    except EOFError:
        raise RuntimeError("a worker process ended without a result") from None
    if not ok:
        raise value
    return value


def _reap(pid: int) -> None:
    """Wait for a child; one still running (the parent is unwinding) is killed first."""
    done, _ = os.waitpid(pid, os.WNOHANG)
    if done == 0:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
