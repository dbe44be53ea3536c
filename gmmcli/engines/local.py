"""Passes over rows on this machine, shared out over its cores.

The core sums statistics through a reducer (gmmcli.core.em.Reducer); this is the one
that uses every core. Rows in memory (over about 8 MB, on Linux, where forking is safe:
_fork_safe) go to processes: this one and children forked once per fit (``session``),
which read the rows through shared memory and send back sums of statistics. Other rows
(a file read in chunks, or a process running threads of its own) go to threads, at most
two blocks per thread in flight. Either way the blocks are summed in
the groups and order the core fixes, so the result does not depend on the core count.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import itertools
import multiprocessing
import os
import signal
import sys
import threading
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from contextvars import ContextVar
from dataclasses import dataclass
from multiprocessing import resource_tracker
from typing import TypeVar

from gmmcli.core.em import (
    SERIAL,
    Block,
    BlockFunction,
    InMemoryRows,
    Reducer,
    RowSource,
    add_up,
    group_blocks,
    sum_in_groups,
)
from gmmcli.core.select import one_by_one
from gmmcli.engines.forked import Workers, fork_available, map_forked
from gmmcli.errors import InvalidParameter

S = TypeVar("S")
T = TypeVar("T")
POOL_PREFIX = "gmmcli-blocks"
FORK_MIN_VALUES = 1 << 20  # below about 8 MB of rows a pass is too short to fork for
BLAS_THREAD_VARIABLES = (
    "GMMCLI_THREADS",
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


def default_threads() -> int:
    """Workers for a pass: GMMCLI_THREADS if set; one when called from a thread other than
    the main one (a Dask task, a server's request: that thread is the budget); else the
    cores this process may run on. BLAS is held to one thread while gmmcli computes
    (gmmcli.core.blas), so the two never oversubscribe the cores."""
    chosen = os.environ.get("GMMCLI_THREADS", "")
    if chosen.isdigit():
        return max(1, int(chosen))
    if threading.current_thread() is not threading.main_thread():
        return 1
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def reducer(threads: int | None = None) -> Reducer:
    """The reducer for ``threads`` workers (default: default_threads())."""
    threads = default_threads() if threads is None else threads
    return SERIAL if threads == 1 else Shared(threads)


_KEPT_WORKERS: ContextVar[tuple[RowSource, Workers] | None] = ContextVar(
    "gmmcli_kept_workers", default=None
)


@dataclass(frozen=True)
class Shared:
    """Blocks shared out over ``threads`` workers: forked processes for rows in memory,
    threads for other rows."""

    threads: int

    def sum(self, rows: RowSource, block_stats: BlockFunction) -> T | None:
        group = group_blocks(rows)
        if _worth_forking(rows, group):
            return add_up(self._forked_group_sums(block_stats, rows, group))

        def part_sum(blocks: Iterable[Block], index: int, first_row: int):
            return sum_in_groups(_in_order(block_stats, blocks, self.threads), group)

        return add_up(rows.map_parts(part_sum))

    def _forked_group_sums(self, function, rows: InMemoryRows, group: int) -> Iterator:
        """The sums of ``function(*block)`` over each group of blocks, in order; each process
        (this one and children forked for the pass, or kept by session() when ``function``
        pickles) takes a run of consecutive groups."""
        kept = _KEPT_WORKERS.get()
        if kept is not None and kept[0] is rows:
            per_share = kept[1].map(function)
        else:
            shares = _group_shares(rows, self.threads, group)
            per_share = map_forked(lambda share: _share_sums(function, rows, share), shares)
        return itertools.chain.from_iterable(per_share)

    @contextlib.contextmanager
    def session(self, rows: RowSource) -> Iterator[None]:
        """Within, the passes over ``rows`` with a block function that pickles (a
        module-level function or a partial of one) go to processes forked once here rather
        than once per pass, when sum() would fork for them at all."""
        group = group_blocks(rows)
        kept = _KEPT_WORKERS.get()
        if (kept is not None and kept[0] is rows) or not _worth_forking(rows, group):
            yield  # (an outer session over the same rows keeps its workers)
            return
        shares = _group_shares(rows, self.threads, group)
        with Workers(lambda function, share: _share_sums(function, rows, share), shares) as workers:
            token = _KEPT_WORKERS.set((rows, workers))
            try:
                yield
            finally:
                _KEPT_WORKERS.reset(token)

    def map(self, function: Callable[[S], T], items: Iterable[S]) -> Iterator[T]:
        """``function(item)`` of every item, in order, in the pool's threads."""
        return _in_order(function, ((item,) for item in items), self.threads)


def _worth_forking(rows: RowSource, group: int) -> bool:
    return (
        isinstance(rows, InMemoryRows)
        and rows.X.size >= FORK_MIN_VALUES
        and rows.n_blocks > group
        and fork_available()
        and _fork_safe()
    )


def _fork_safe() -> bool:
    """Whether a forked child can run: in the command line's process (gmmcli.threads
    loaded), whose threads are all gmmcli's; elsewhere only when no thread but gmmcli's
    own runs (a notebook's or a server's threads may hold locks the child would need)."""
    if "gmmcli.threads" in sys.modules:
        return True
    main = threading.main_thread()
    return all(
        thread is main or thread.name.startswith(POOL_PREFIX) for thread in threading.enumerate()
    )


def _group_shares(rows: InMemoryRows, processes: int, group: int) -> list[list[range]]:
    """Each process's run of consecutive groups (as ranges of block indices), the runs as
    even in rows as whole groups allow: a pass lasts as long as its longest run."""
    n_blocks = rows.n_blocks
    groups = [range(start, min(n_blocks, start + group)) for start in range(0, n_blocks, group)]
    processes = min(processes, len(groups))
    groups_per_process = len(rows.X) / processes / (group * rows.block_rows)
    ends = [0]
    for process in range(1, processes):
        even = round(process * groups_per_process)
        ends.append(min(max(ends[-1] + 1, even), len(groups) - processes + process))
    ends.append(len(groups))
    return [groups[start:stop] for start, stop in itertools.pairwise(ends)]


def _share_sums(function, rows: InMemoryRows, share: list[range]) -> list:
    return [add_up(function(*block) for block in rows.blocks(run)) for run in share]


def _in_order(function, blocks, threads):
    """``function(*block)`` of every block, in block order: in the pool when there are
    several threads and blocks, else here."""
    blocks = iter(blocks)
    head = list(itertools.islice(blocks, 2))
    blocks = itertools.chain(head, blocks)
    if len(head) < 2:
        yield from (function(*block) for block in blocks)
        return
    pool = _pool(threads)
    pending: deque = deque()
    try:
        for block in blocks:
            pending.append(pool.submit(function, *block))
            if len(pending) >= 2 * threads:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:  # on an error or when abandoned: let no block run on unseen
        for future in pending:
            future.cancel()
        wait(pending)


@functools.cache
def _pool(threads: int) -> ThreadPoolExecutor:
    """One pool per thread count, kept for the process: a pass starts no threads.

    Its threads are started here, all at once, with the stop signals held: Ctrl-C
    landing while the pool starts a thread (in a pass's first submit) would leave the
    thread unknown to the pool, and the interpreter would wait for it at exit for ever.
    The threads keep the mask, so the signals still go to the main thread.
    """
    with _stops_held():
        pool = ThreadPoolExecutor(threads, thread_name_prefix=POOL_PREFIX)
        all_started = threading.Barrier(threads)  # (each submit then starts a thread)
        wait([pool.submit(all_started.wait) for _ in range(threads)])
    return pool


STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


@contextlib.contextmanager
def _stops_held() -> Iterator[None]:
    """Within, SIGINT, SIGTERM and SIGHUP wait; they take effect when it ends (the first
    to arrive: its handler stops the run).

    They are blocked in this thread, and so in the threads and processes it starts. The
    kernel may still hand one to another thread, and Python then runs its handler in the
    main thread all the same: so, in the main thread, their handlers only note it until
    the end. (Elsewhere Python's handlers do not interrupt this thread anyway.)
    """
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    arrived: list[int] = []
    holding = [True]
    held = {}

    def noting(number: int, frame: object) -> None:
        """Notes a stop while held; after, acts as the handler it replaced."""
        if holding[0]:
            arrived.append(number)
        else:
            held[number](number, frame)

    before = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                if callable(handler := signal.getsignal(signum)):
                    held[signum] = handler
                    signal.signal(signum, noting)
        yield
    finally:
        # A stop that another thread takes while the handlers are put back runs its own
        # handler, which may raise before all are back: a noting one left then acts as
        # the handler it replaced. The handlers go back before the mask, so that a stop
        # waiting here meets its own.
        holding[0] = False
        try:
            for signum, handler in held.items():
                signal.signal(signum, handler)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, before)
        if arrived:
            held[arrived[0]](arrived[0], None)


def check_jobs(jobs: object) -> None:
    if not (isinstance(jobs, int) and jobs >= 1):
        raise InvalidParameter("jobs", jobs, "a whole number of at least 1")


def task_map(jobs: int) -> Callable[[Callable[[S], T], Sequence[S]], Iterator[tuple[int, T]]]:
    """A map over independent tasks (select-k's grid points) run in ``jobs`` processes
    with one BLAS thread each: it yields (index, result) as each task finishes; in order,
    here, for 1 job.

    Where forking is safe (_fork_safe) the processes are forked, inheriting the one BLAS
    thread the caller holds (gmmcli.core.blas): they read the tasks and their rows through
    the pages they share with this one (a frozen heap, so that its pages stay shared), and
    only results are copied. Otherwise they are fresh processes, to which each task is sent.
    """
    check_jobs(jobs)
    if jobs == 1:
        return one_by_one

    def in_processes(function: Callable[[S], T], tasks: Sequence[S]) -> Iterator[tuple[int, T]]:
        processes = min(jobs, len(tasks))
        if processes == 0:
            return
        if not (fork_available() and _fork_safe()):
            with _process_pool(processes, "spawn") as pool:
                numbered = functools.partial(_numbered, function)
                yield from pool.imap_unordered(numbered, enumerate(tasks))
            return
        global _FORKED_TASKS
        _FORKED_TASKS = (function, tasks)
        gc.freeze()
        try:
            with _process_pool(processes, "fork") as pool:
                yield from pool.imap_unordered(_forked_task, range(len(tasks)))
        finally:
            gc.unfreeze()
            _FORKED_TASKS = None

    return in_processes


def _numbered(function: Callable[[S], T], numbered_task: tuple[int, S]) -> tuple[int, T]:
    index, task = numbered_task
    return index, function(task)


_FORKED_TASKS: tuple[Callable, Sequence] | None = None  # what a forked pool's children run


@contextlib.contextmanager
def _process_pool(processes: int, method: str) -> Iterator[multiprocessing.pool.Pool]:
    """A pool of ``processes`` workers started by ``method`` ("fork" or "spawn", the
    latter with one BLAS thread each), ended on leaving.

    It is built and entered with the stop signals held: a stop raised while Pool()
    starts its threads would leave a pool nobody ends, whose thread replaces the workers
    the interpreter's exit kills; a replacement then waits for ever on the task queue's
    lock that a killed worker held.
    """
    fresh = contextlib.nullcontext()
    if method == "spawn":
        fresh = _single_threaded_blas()
        resource_tracker.ensure_running()  # (started later, it would unblock the signals)
    with contextlib.ExitStack() as stack:
        with _stops_held(), fresh, warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # 3.12+: fork() beside threads
            context = multiprocessing.get_context(method)
            pool = stack.enter_context(context.Pool(processes, _quiet_worker))
        yield pool


def _quiet_worker() -> None:
    """A pool's worker ends quietly when its pool ends it (SIGTERM), and leaves Ctrl-C
    and a closed terminal to its parent, which ends the pool; it takes the signals its
    parent blocked while starting it."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def _forked_task(index: int):
    function, tasks = _FORKED_TASKS
    return index, function(tasks[index])


@contextlib.contextmanager
def _single_threaded_blas() -> Iterator[None]:
    """An environment in which new processes start with one BLAS thread each."""
    saved = {name: os.environ.get(name) for name in BLAS_THREAD_VARIABLES}
    os.environ.update(dict.fromkeys(BLAS_THREAD_VARIABLES, "1"))  # GMMCLI_THREADS among them
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
