"""The derivers' compiled loops (``_core.c``), or None: not compiled, or
``LIVEPROF_PURE_PYTHON`` set (the pure Python derivers are the reference; the
switch is read once, at import, as the decoder's).  Derivers read
``_native.core`` per ``feed_many`` call, so a test may set it to None to run
the reference in the same process."""

from __future__ import annotations

import os
from operator import itemgetter
from types import ModuleType

_TIME = itemgetter(2)
core: ModuleType | None
try:
    if os.environ.get("LIVEPROF_PURE_PYTHON"):
        raise ImportError
    from . import _core as core
except ImportError:
    core = None


def sort_by_time(items: list) -> None:
    """Sort events (and the merge's late items) in place, stably, by their
    time (``item[2]``): ``core.sort_by_time`` (a natural merge sort in C) unless
    pure Python is asked for or an item has a time it does not take (past 64
    bits); ``list.sort`` then, the same order."""
    if core is None or not core.sort_by_time(items):
        items.sort(key=_TIME)
