"""Work shared out over forked processes, for rows held in this process.

Threads share numpy's work only as far as the GIL lets them: with blocks small enough to
stay in cache, numpy's calls are short and the threads mostly wait for each other. A
forked child shares the parent's memory (copy-on-write; the rows are only read), runs its
share of a pass and sends back what it computed, so nothing but tasks and results is
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
    with Workers(lambda task, share: function(share), shares, once=True) as workers:
        return workers.map(None)


class Workers:
    """Children forked once, each running ``run(task, share)`` on its own share, task
    after task.

    ``map(task)`` returns ``[run(task, share) for share in shares]``, the first share run
    here. With ``once`` the children are forked by ``map`` for its one task; otherwise
    they are forked here and each task is pickled to them, so later passes need no fork.
    A context manager: leaving it ends the children.
    """

    def __init__(self, run: Callable[[object, S], T], shares: Sequence[S], once: bool = False):
        self.run, self.share, self.once = run, shares[0], once
        self.others = shares[1:]
        self.children: list[tuple[int, BinaryIO, BinaryIO | None]] = []
        if not once:
            try:
                for share in self.others:
                    self._fork(share, _SERVE)
            except BaseException:
                self.close()
                raise

    def _fork(self, share: S, task) -> None:
        """A child for ``share`` that runs ``task`` once, or serves tasks (``_SERVE``)."""
        serving = task is _SERVE
        results_read, results_write = os.pipe()
        tasks_read, tasks_write = os.pipe() if serving else (None, None)
        with warnings.catch_warnings():  # Python 3.12+ warns of fork() beside other threads
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # the child: never returns, never runs the parent's exit handlers
            status = 0
            try:
                for _, reader, sender in self.children:  # the other children's pipes
                    reader.close()
                    if sender is not None:
                        sender.close()
                os.close(results_read)
                with os.fdopen(results_write, "wb") as out:
                    if serving:
                        os.close(tasks_write)
                        with os.fdopen(tasks_read, "rb") as tasks:
                            self._serve(tasks, out, share)
                    else:
                        _send(out, self._outcome(task, share))
            except BaseException:
                status = 1
            finally:
                os._exit(status)
        os.close(results_write)
        sender = None
        if serving:
            os.close(tasks_read)
            sender = os.fdopen(tasks_write, "wb")
        self.children.append((pid, os.fdopen(results_read, "rb"), sender))

    def _serve(self, tasks: BinaryIO, out: BinaryIO, share: S) -> None:
        """A child's loop: a result for every task until the parent closes the pipe."""
        while True:
            try:
                task = pickle.load(tasks)
            except EOFError:
                return
            _send(out, self._outcome(task, share))

    def _outcome(self, task, share: S) -> tuple[bool, object]:
        try:
            return True, self.run(task, share)
        except BaseException as error:
            return False, error

    def map(self, task) -> list[T]:
        try:
            if self.once:
                for share in self.others:
                    self._fork(share, task)
            else:
                payload = pickle.dumps(task, protocol=pickle.HIGHEST_PROTOCOL)
                for _, _, sender in self.children:
                    sender.write(payload)
                    sender.flush()
            results = [self.run(task, self.share)]
            for _, reader, _ in self.children:
                results.append(_receive(reader))
            return results
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for pid, reader, sender in self.children:
            if sender is not None:
                sender.close()
            reader.close()
            _reap(pid)
        self.children = []

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


_SERVE = object()


def _send(out: BinaryIO, outcome: tuple[bool, object]) -> None:
    try:
        payload = pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # an exception that does not pickle: keep its text
        payload = pickle.dumps((False, RuntimeError(repr(outcome[1]))))
    out.write(payload)
    out.flush()


def _receive(reader: BinaryIO):
    try:
        ok, value = pickle.load(reader)
    except EOFError:
        raise RuntimeError("a worker process ended without a result") from None
    if not ok:
        raise value
    return value


def _reap(pid: int) -> None:
    """Wait for a child; one still running (idle, or the parent is unwinding) is killed."""
    done, _ = os.waitpid(pid, os.WNOHANG)
    if done == 0:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
