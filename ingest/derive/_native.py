"""The derivers' compiled loops (``_core.c``), or None: not compiled, or
``LIVEPROF_PURE_PYTHON`` set (the pure Python derivers are the reference; the
switch is read once, at import, as the decoder's).  Derivers read
``_native.core`` per ``feed_many`` call, so a test may set it to None to run
the reference in the same process."""

from __future__ import annotations

import os
from types import ModuleType

core: ModuleType | None
try:
    if os.environ.get("LIVEPROF_PURE_PYTHON"):
        raise ImportError
    from . import _core as core
except ImportError:
    core = None
