"""Derivers by measurement name: which measurements a pipeline can turn on.

``REGISTRY`` maps a measurement name to its deriver class (constructed with a
``DeriveSettings``).  Modules that may not exist yet are imported guarded: every
class in them with a ``measurement`` name, ``wants`` and ``feed`` is registered
under that name, so a module defining several derivers (spans + markers)
registers them all.
"""

from __future__ import annotations

import importlib

from .capability import CapabilityDeriver
from .gc import GcDeriver
from .heap import HeapDeriver
from .session_info import SessionDeriver

REGISTRY: dict[str, type] = {
    "session": SessionDeriver,
    "gc": GcDeriver,
    "heap": HeapDeriver,
    "capability": CapabilityDeriver,
}

# written alongside; registered when present
OPTIONAL_MODULES = ("threads", "spans", "sparks", "heap_profile", "nonmoving")


def _is_deriver(obj) -> bool:
    return (isinstance(obj, type) and isinstance(getattr(obj, "measurement", None), str)
            and hasattr(obj, "wants") and callable(getattr(obj, "feed", None))
            and callable(getattr(obj, "flush", None)))


def _register_optional() -> None:
    for name in OPTIONAL_MODULES:
        try:
            module = importlib.import_module(f"{__package__}.{name}")
        except ImportError:
            continue
        for attr in sorted(vars(module)):
            obj = getattr(module, attr)
            if _is_deriver(obj) and obj.__module__ == module.__name__:
                REGISTRY.setdefault(obj.measurement, obj)


_register_optional()


def names() -> list[str]:
    return list(REGISTRY)
