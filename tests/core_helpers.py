"""Test helpers for the core: shared by the modules that test blocks and tiles."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from gmmcli.core import em


@contextlib.contextmanager
def blocks_of(rows: int) -> Iterator[None]:
    """Within: every row source cuts its rows into blocks of ``rows`` rows."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(em, "MIN_BLOCK_ROWS", rows)
        patch.setattr(em, "MAX_BLOCK_ROWS", rows)
        yield
