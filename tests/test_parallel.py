"""Passes shared out over forked processes or threads, and E-steps taken in tiles, give
the statistics of one thread going through the rows."""

import os
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest
from core_helpers import blocks_of

import gmmcli
from gmmcli.core import em
from gmmcli.core.covariance import STACKED_FULL, STACKED_TIED
from gmmcli.core.structures import COVARIANCE_TYPES, SKLEARN_NAMES
from gmmcli.engines import forked, local
from gmmcli.errors import GMMError

pytestmark = pytest.mark.skipif(not forked.fork_available(), reason="fork() is Linux-only here")


def _data(n=6000, d=4, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4, size=(4, d))
    return centres[rng.integers(0, 4, n)] + rng.normal(size=(n, d))


def _fit(X, cov_name, **options):
    return gmmcli.fit(X, 4, covariance_type=cov_name, seed=0, tol=0, max_iter=8, **options)


# (structure, features, the form the E-step takes for 4 components): every structure's
# row-product form, and the stacked forms of full and tied.
FORMS = [
    *((name, 4, COVARIANCE_TYPES[name]) for name in SKLEARN_NAMES),
    ("full", 40, STACKED_FULL),
    ("tied", 40, STACKED_TIED),
]


def _data_in(cov_name, n_features, form, **options):
    assert COVARIANCE_TYPES[cov_name].kernel(4, n_features) is form
    return _data(d=n_features, **options)


@pytest.fixture
def forks_counted(monkeypatch):
    """Fork for passes of any size, in groups of two 256-row blocks. Counts the passes
    forked for (initialisation's) and those sent to workers kept for the EM loop."""
    monkeypatch.setattr(local, "FORK_MIN_VALUES", 0)
    monkeypatch.setattr(em, "GROUP_ROWS", 512)
    calls = {"forked": [], "kept": []}

    def counting(function, shares):
        calls["forked"].append(len(shares))
        return forked.map_forked(function, shares)

    class CountingWorkers(forked.Workers):
        def map(self, task):
            calls["kept"].append(1 + len(self.children))
            return super().map(task)

    monkeypatch.setattr(local, "map_forked", counting)
    monkeypatch.setattr(local, "Workers", CountingWorkers)
    return calls


@pytest.mark.parametrize(("cov_name", "n_features", "form"), FORMS)
def test_forked_passes_give_the_one_thread_fit_exactly(
    cov_name, n_features, form, forks_counted, monkeypatch
):
    X = _data_in(cov_name, n_features, form)
    weights = np.random.default_rng(1).integers(0, 3, len(X)).astype(float)
    monkeypatch.setenv("GMMCLI_THREADS", "1")
    with blocks_of(256):
        alone = _fit(X, cov_name, weights=weights)
        assert forks_counted == {"forked": [], "kept": []}
        monkeypatch.setenv("GMMCLI_THREADS", "3")
        shared = _fit(X, cov_name, weights=weights)
    assert set(forks_counted["forked"]) == {3}  # initialisation's passes
    assert forks_counted["kept"] == [3] * 9  # the EM loop's: 8 iterations and the start
    for name in ("weights", "means", "covariances"):
        np.testing.assert_array_equal(getattr(shared, name), getattr(alone, name))
    assert shared.fit_info.log_likelihood == alone.fit_info.log_likelihood


@pytest.mark.parametrize(("n_rows", "processes"), [(5000, 2), (5000, 3), (1300, 3), (600, 5)])
def test_each_process_takes_consecutive_groups_as_even_in_rows_as_groups_allow(n_rows, processes):
    rows = em.InMemoryRows(np.zeros((n_rows, 2)), np.ones(n_rows), np.zeros(2), block_rows=256)
    shares = local._group_shares(rows, processes, group=2)
    groups = [group for share in shares for group in share]
    assert [b for group in groups for b in group] == list(range(rows.n_blocks))
    assert all(share for share in shares) and len(shares) == min(processes, len(groups))
    sizes = [min(n_rows, 256 * share[-1].stop) - 256 * share[0].start for share in shares]
    assert max(sizes) - min(sizes) <= 512 + n_rows % 512  # a group, and the short last one


def test_small_data_is_not_forked_for(monkeypatch):
    monkeypatch.setenv("GMMCLI_THREADS", "2")
    calls = []
    monkeypatch.setattr(local, "map_forked", lambda *args: calls.append(args))
    with blocks_of(256):
        _fit(_data(), "full")
    assert calls == []


def test_threads_give_the_one_thread_fit_exactly(monkeypatch):
    """Threads (for rows that are not forked for) and one thread agree exactly too: the
    pool's results are summed in block order, whichever thread finishes first."""
    monkeypatch.setattr(em, "GROUP_ROWS", 768)
    X = _data(seed=2)
    monkeypatch.setenv("GMMCLI_THREADS", "1")
    with blocks_of(256):
        alone = _fit(X, "full")
        monkeypatch.setenv("GMMCLI_THREADS", "2")
        threaded = _fit(X, "full")
    np.testing.assert_array_equal(threaded.covariances, alone.covariances)


def _fails_in_share(share):
    if share == 2:
        raise GMMError("bad block in share 2")
    return share * 10


def test_an_error_in_a_child_is_raised_here():
    assert forked.map_forked(_fails_in_share, [1, 3]) == [10, 30]
    with pytest.raises(GMMError, match="bad block in share 2"):
        forked.map_forked(_fails_in_share, [1, 2, 3])


def test_a_child_that_dies_is_an_error_not_a_hang():
    def dies(share):
        if share:
            os._exit(3)
        return share

    with pytest.raises(RuntimeError, match="ended without a result"):
        forked.map_forked(dies, [0, 1])


def test_an_error_here_leaves_no_child_behind(monkeypatch):
    def fails_here(share):
        if share == 0:
            raise ValueError("here")
        return share

    started = []
    fork = os.fork

    def recording():
        pid = fork()
        if pid:
            started.append(pid)
        return pid

    monkeypatch.setattr(os, "fork", recording)
    with pytest.raises(ValueError, match="here"):
        forked.map_forked(fails_here, [0, 1])
    (pid,) = started
    with pytest.raises(ChildProcessError):  # reaped already
        os.waitpid(pid, os.WNOHANG)


@pytest.mark.parametrize(("cov_name", "n_features", "form"), FORMS)
def test_tiles_change_nothing_but_rounding(cov_name, n_features, form, monkeypatch):
    X = _data_in(cov_name, n_features, form, n=3000, seed=3)
    with blocks_of(3000):
        whole = _fit(X, cov_name)
        monkeypatch.setattr(em, "SMALL_PRODUCT", 0)
        monkeypatch.setattr(em, "MIN_TILE_ROWS", 333)  # tiles of 256 rows, the last of 184
        tiled = _fit(X, cov_name)
    np.testing.assert_allclose(tiled.means, whole.means, rtol=1e-11, atol=1e-11)
    # Off-diagonal entries near zero carry the rounding of the largest entry.
    scale = np.abs(whole.covariances).max()
    np.testing.assert_allclose(tiled.covariances, whole.covariances, rtol=1e-11, atol=1e-11 * scale)
    np.testing.assert_allclose(tiled.fit_info.log_likelihood, whole.fit_info.log_likelihood)


IDENTITY = {
    "full": lambda k, d: np.broadcast_to(np.eye(d), (k, d, d)).copy(),
    "tied": lambda k, d: np.eye(d),
    "diag": lambda k, d: np.ones((k, d)),
    "spherical": lambda k, d: np.ones(k),
}


@pytest.mark.parametrize("n_components", [2, 50])
@pytest.mark.parametrize("n_features", [2, 10, 50, 200])
@pytest.mark.parametrize("cov_name", SKLEARN_NAMES)
def test_tiles_fit_the_small_products_or_hold_enough_rows(cov_name, n_features, n_components):
    cov = COVARIANCE_TYPES[cov_name]
    covariances = IDENTITY[cov_name](n_components, n_features)
    params = em.Params(
        np.full(n_components, 1 / n_components),
        np.zeros((n_components, n_features)),
        covariances,
        cov.precision_cholesky(covariances),
    )
    prepared = em.Prepared.of(params, cov)
    rows = em.tile_rows(prepared, n_features)
    tile_bytes = rows * prepared.kernel.n_row_features(n_features) * 8
    assert rows >= 1
    assert tile_bytes <= em.MAX_TILE_BYTES or rows == 1
    capped = tile_bytes > em.MAX_TILE_BYTES // 2 or rows == em.rows_per_block(n_features)
    size = prepared.coef.size
    if em.MIN_SMALL_TILE_ROWS * size <= em.SMALL_PRODUCT:  # small products are in reach:
        assert rows * size <= em.SMALL_PRODUCT  # the tile keeps to them,
        assert (rows + 1) * size > em.SMALL_PRODUCT or capped  # as large as they allow
    else:
        assert rows == em.MIN_TILE_ROWS or capped


def test_kept_workers_run_task_after_task():
    def run(task, share):
        if task == "fail" and share == 1:
            raise GMMError("bad task")
        return task * share

    with forked.Workers(run, [0, 1, 2]) as workers:
        assert workers.map(3) == [0, 3, 6]
        assert workers.map(5) == [0, 5, 10]  # the same children, a new task
        pids = [pid for pid, _, _ in workers.children]
        with pytest.raises(GMMError, match="bad task"):
            workers.map("fail")
    for pid in pids:
        with pytest.raises(ChildProcessError):  # all reaped
            os.waitpid(pid, os.WNOHANG)


def test_a_reducers_map_keeps_the_order_of_its_items():
    """Shared.map runs items in the pool's threads (here more items than threads, of
    uneven lengths), yet yields their results in order, as SERIAL.map does."""
    items = [(i * 7919) % 23 for i in range(40)]

    def slow_square(i):
        np.linalg.svd(np.ones((8 * i + 1, 8)))  # uneven work
        return i * i

    expected = [i * i for i in items]
    assert list(em.SERIAL.map(slow_square, items)) == expected
    assert list(local.Shared(2).map(slow_square, items)) == expected


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="POSIX signal masks")
def test_a_pools_threads_start_at_once_with_the_stop_signals_blocked():
    """Ctrl-C landing while a pass's first submit starts a thread left the thread unknown
    to the pool, and the interpreter hung at exit: every thread starts with the pool, each
    unable to take a stop signal (they go to the main thread)."""
    local._pool.cache_clear()  # (a pool of 5 threads made by another test is not kept)
    before = set(threading.enumerate())
    pool = local._pool(5)
    started = set(threading.enumerate()) - before
    assert len([t for t in started if t.name.startswith("gmmcli-blocks")]) == 5
    masks = [pool.submit(signal.pthread_sigmask, signal.SIG_BLOCK, []) for _ in range(5)]
    for mask in masks:
        assert {signal.SIGINT, signal.SIGTERM, signal.SIGHUP} <= mask.result()
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, [])


STOP_DURING_POOL_START = """
import multiprocessing, os, signal, threading, time
from multiprocessing.pool import Pool
from gmmcli.engines import local
from gmmcli.stopping import Stopped, handle_signals

handle_signals()
if METHOD == "spawn":
    local._fork_safe = lambda: False
threading.Thread(target=time.sleep, args=(5,), daemon=True).start()  # can take a signal
started = Pool._repopulate_pool

def stop_once_workers_exist(pool):
    started(pool)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.5)  # the kernel hands it to the thread not blocking it

Pool._repopulate_pool = stop_once_workers_exist
try:
    list(local.task_map(2)(abs, [-1, -2, -3]))
except Stopped:
    print("stopped; workers left:", len(multiprocessing.active_children()))
"""


@pytest.mark.skipif(not forked.fork_available(), reason="forked select-k workers")
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_stop_while_the_select_k_pool_starts_ends_its_workers(method):
    """A stop raised while Pool() started its threads (caught by another thread, its
    handler run here) left a pool nobody ended; at exit its thread replaced the killed
    workers, and a replacement waited for ever on a lock a killed worker held."""
    script = f"METHOD = {method!r}\n{STOP_DURING_POOL_START}"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.stdout == "stopped; workers left: 0\n", done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="POSIX signal masks")
def test_a_stop_held_takes_effect_at_the_end_even_when_another_thread_takes_it():
    script = (
        "import os, signal, threading, time\n"
        "from gmmcli.engines import local\n"
        "threading.Thread(target=time.sleep, args=(5,), daemon=True).start()\n"
        "try:\n"
        "    with local._stops_held():\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "        time.sleep(0.3)\n"
        "        print('held')\n"
        "except KeyboardInterrupt:\n"
        "    print('then raised')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.stdout == "held\nthen raised\n", done.stderr


STOP_AS_HANDLERS_COME_BACK = """
import os, signal
from gmmcli.engines import local
from gmmcli.stopping import Stopped, handle_signals

handle_signals()
before = {signum: signal.getsignal(signum) for signum in local.STOP_SIGNALS}
put_back = signal.signal
ran = []

def put_back_then_stopped(signum, handler):
    previous = put_back(signum, handler)
    if handler is before.get(signum) and not ran:  # a stop of this signal now
        ran.append(signum)
        A_STOP_HERE
    return previous

def acts(handler, signum):
    try:
        handler(signum, None)
    except (Stopped, KeyboardInterrupt) as stop:
        return type(stop).__name__
    return "nothing"

signal.signal = put_back_then_stopped
try:
    with local._stops_held():
        pass
except (Stopped, KeyboardInterrupt) as stop:
    print(type(stop).__name__ == acts(before[ran[0]], ran[0]))
signal.signal = put_back
print(not local.STOP_SIGNALS & signal.pthread_sigmask(signal.SIG_BLOCK, []))
print(all(acts(signal.getsignal(s), s) == acts(before[s], s) for s in local.STOP_SIGNALS))
"""


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="POSIX signal masks")
@pytest.mark.parametrize(
    "stop",
    [
        "os.kill(os.getpid(), signum)",  # it waits, blocked in this (the only) thread
        "signal.getsignal(signum)(signum, None)",  # another thread took it: its handler runs
    ],
)
def test_a_stop_as_the_handlers_come_back_leaves_them_acting_as_before(stop):
    """The mask was restored before the handlers: a stop then could meet its handler, put
    back already, which raised; the handlers not yet back only noted stops, for good, and
    (taken by another thread in the loop) the mask stayed blocked."""
    script = STOP_AS_HANDLERS_COME_BACK.replace("A_STOP_HERE", stop)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.stdout == "True\nTrue\nTrue\n", done.stdout + done.stderr


MASK_AT_SPAWN = """
import signal
from multiprocessing.pool import Pool
from gmmcli.engines import local

built = Pool.__init__

def noting_the_mask(pool, *args, **kwargs):
    built(pool, *args, **kwargs)
    held = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    print(sorted(s.name for s in local.STOP_SIGNALS if s in held))

Pool.__init__ = noting_the_mask
local._fork_safe = lambda: False
print(list(local.task_map(2)(abs, [-1, -2])) != [])
"""


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="POSIX signal masks")
def test_a_spawned_pool_starts_with_every_stop_signal_held():
    """Python's resource tracker, started by the pool's first lock, unblocks SIGINT and
    SIGTERM in the thread that starts it: it runs before the signals are held."""
    done = subprocess.run(
        [sys.executable, "-c", MASK_AT_SPAWN], capture_output=True, text=True, timeout=60
    )
    assert done.stdout == "['SIGHUP', 'SIGINT', 'SIGTERM']\nTrue\n", done.stderr
