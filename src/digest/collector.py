"""Collect less often while a send holds many short-lived, cycle-free objects."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

# A batch's personalisations and request body, and the rows of a list streaming into the ledger, are tens of
# objects per recipient that live for a moment; with CPython's default first-generation threshold (700) the
# collector rescans them again and again. They hold no cycles, so a higher threshold costs no memory.
GC_THRESHOLD = 10_000


@contextmanager
def collect_less_often() -> Iterator[None]:
    """Raise the first-generation threshold for the block; the previous thresholds come back after it."""
    thresholds = gc.get_threshold()
    gc.set_threshold(GC_THRESHOLD, *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
