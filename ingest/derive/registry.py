"""Derivers by measurement name: which measurements a pipeline can turn on.

``REGISTRY`` maps a measurement name to its deriver class (constructed with a
``DeriveSettings``), in the order ``--measurements`` lists them.  Every deriver
module is imported plainly: one that fails to import (a syntax error, a missing
dependency) stops the program with an ``ImportError`` naming that module,
rather than its measurements quietly going missing from every stream.
"""

from __future__ import annotations

from .capability import CapabilityDeriver
from .gc import GcDeriver
from .heap import HeapDeriver
from .heap_profile import HeapProfileDeriver
from .nonmoving import NonmovingCensusDeriver, NonmovingPhasesDeriver
from .session_info import SessionDeriver
from .spans import MarkersDeriver, SpansDeriver
from .sparks import SparksDeriver
from .threads import ThreadsDeriver

REGISTRY: dict[str, type] = {cls.measurement: cls for cls in (
    SessionDeriver, GcDeriver, HeapDeriver, CapabilityDeriver, ThreadsDeriver, MarkersDeriver,
    SpansDeriver, SparksDeriver, HeapProfileDeriver, NonmovingCensusDeriver,
    NonmovingPhasesDeriver)}


def names() -> list[str]:
    return list(REGISTRY)
