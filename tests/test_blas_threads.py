"""BLAS held to one thread while gmmcli computes, in any process, and given back after;
passes shared over threads where forking is not safe, and over nothing inside another
thread (a Dask task, a server's request)."""

import sys
import threading

import numpy as np
import pytest
from core_helpers import blocks_of
from threadpoolctl import threadpool_info, threadpool_limits

import gmmcli
from gmmcli.core import em
from gmmcli.core import model as model_module
from gmmcli.core.blas import one_blas_thread
from gmmcli.engines import forked, local


def _blas_threads() -> set[int]:
    return {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}


def _data(n=4000, d=3):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, d)) + rng.integers(0, 3, (n, 1)) * 5


def test_held_to_one_thread_while_nested_holders_last_then_given_back():
    with threadpool_limits(2, user_api="blas"):
        with one_blas_thread():
            assert _blas_threads() == {1}
            with one_blas_thread():
                assert _blas_threads() == {1}
            assert _blas_threads() == {1}
        assert _blas_threads() == {2}


@pytest.mark.parametrize("call", ["fit", "predict"])
def test_the_api_holds_blas_to_one_thread_during_a_call(call, monkeypatch):
    """A user's session with two BLAS threads: one thread during a fit's iterations (seen
    from its callback) and during classify's, two again after."""
    X = _data()
    seen = []
    with threadpool_limits(2, user_api="blas"):
        model = gmmcli.fit(X, 3, seed=0, on_iteration=lambda *_: seen.append(_blas_threads()))
        if call == "predict":
            seen.clear()
            original = model_module.log_joint

            def spying(*args, **kwargs):
                seen.append(_blas_threads())
                return original(*args, **kwargs)

            monkeypatch.setattr(model_module, "log_joint", spying)
            gmmcli.classify(X, model)
            assert seen
            model.predict_proba(X)  # the model's own method too
        after = _blas_threads()
    assert seen and all(threads == {1} for threads in seen)
    assert after == {2}


def test_in_another_thread_passes_run_in_that_thread(monkeypatch):
    monkeypatch.delenv("GMMCLI_THREADS", raising=False)
    found = []
    worker = threading.Thread(target=lambda: found.append(local.default_threads()))
    worker.start()
    worker.join()
    assert found == [1]
    assert local.default_threads() >= 1


@pytest.mark.skipif(not forked.fork_available(), reason="fork() is Linux-only here")
def test_beside_a_foreign_thread_passes_go_to_threads_not_forks(monkeypatch):
    """Outside the command line a thread of someone else's (a notebook's) may hold a lock
    a forked child needs: the passes go to threads instead, and give the same model."""
    monkeypatch.setattr(local, "FORK_MIN_VALUES", 0)
    monkeypatch.setattr(em, "GROUP_ROWS", 512)
    monkeypatch.delitem(sys.modules, "gmmcli.threads", raising=False)
    forks = []
    monkeypatch.setattr(local, "map_forked", lambda *args: forks.append(args))
    monkeypatch.setattr(local, "Workers", lambda *args: forks.append(args))
    X = _data()
    monkeypatch.setenv("GMMCLI_THREADS", "1")
    with blocks_of(256):
        alone = gmmcli.fit(X, 3, seed=0, max_iter=5, tol=0)
        monkeypatch.setenv("GMMCLI_THREADS", "2")
        stop = threading.Event()
        foreign = threading.Thread(target=stop.wait, name="a-notebook-thread")
        foreign.start()
        try:
            assert not local._fork_safe()
            shared = gmmcli.fit(X, 3, seed=0, max_iter=5, tol=0)
        finally:
            stop.set()
            foreign.join()
    assert forks == []
    np.testing.assert_array_equal(shared.covariances, alone.covariances)
    np.testing.assert_array_equal(shared.means, alone.means)


def test_a_models_own_predictions_share_their_tiles_over_the_local_engine(monkeypatch):
    """Once the API is used, predict_proba and the like run their runs of tiles through
    the local engine's reducer (threads over the cores), to the same bytes as here."""
    monkeypatch.setattr(model_module, "PREDICTION_RUN_ROWS", 256)
    X = _data()
    model = gmmcli.fit(X, 3, seed=0)
    monkeypatch.setenv("GMMCLI_THREADS", "1")
    alone = model.predict_proba(X), model.score_samples(X)
    monkeypatch.setenv("GMMCLI_THREADS", "2")
    threads = []
    original = local.Shared.map

    def counting(self, function, items):
        threads.append(self.threads)
        return original(self, function, items)

    monkeypatch.setattr(local.Shared, "map", counting)
    shared = model.predict_proba(X), model.score_samples(X)
    assert threads == [2, 2]
    for one, other in zip(alone, shared, strict=True):
        np.testing.assert_array_equal(one, other)
