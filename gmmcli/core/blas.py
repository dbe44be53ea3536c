"""BLAS held to one thread while gmmcli computes.

gmmcli shares a pass's blocks over the cores itself (gmmcli.engines.local); a BLAS that
also spreads each product over every core would only oversubscribe them, and on the small
products of a block it spends more time starting its threads than multiplying. So a fit
or a prediction holds BLAS to one thread for its duration and gives it back after, in
whatever process it runs (a notebook, a Dask worker, a web server), through threadpoolctl.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator

_lock = threading.Lock()
_holders = 0
_limit = None  # threadpoolctl's limit while there are holders


@functools.cache
def _controller():
    """The process's BLAS libraries, found once (a few tens of milliseconds)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController().select(user_api="blas")


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """Within, BLAS runs on one thread; nested or concurrent holders share one limit,
    lifted when the last leaves."""
    global _holders, _limit
    with _lock:
        if _holders == 0:
            _limit = _controller().limit(limits=1)
        _holders += 1
    try:
        yield
    finally:
        with _lock:
            _holders -= 1
            if _holders == 0:
                _limit.restore_original_limits()
