"""What every deriver is: a plain object, fed time-ordered events of one
session, returning points.  Derivers do no I/O and hold only per-window and
per-open-interval state.

Contract:
- ``feed(ev)`` is called with events in (eventlog) time order, except "late"
  events that a live merge could not place in order (``late=True``); a deriver
  must not fail on those (count them, or fold them in as it can).
- Returned points carry eventlog time (ns since RTS start) and only the
  deriver's own tags; the pipeline adds ``app``/``host``/``session`` and turns
  the time into Unix time.
- ``flush(end)`` closes open windows at the end of the stream (``end`` is the
  last event time seen) and returns the remaining points.
- ``wants`` lists the event type ids the deriver needs, so that the decoder
  can skip the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol

from protocol import Event

from .point import Point

SECOND = 1_000_000_000


@dataclass(frozen=True)
class DeriveSettings:
    window_ns: int = SECOND  # aggregation window of the per-window measurements
    top_n: int = 10  # busiest thread labels / heap-profile labels kept by name
    other_label: str = "other"


class Deriver(Protocol):
    measurement: ClassVar[str]
    wants: ClassVar[frozenset[int]]

    def feed(self, ev: Event, late: bool = False) -> list[Point]: ...

    def flush(self, end: int) -> list[Point]: ...


def window_start(t: int, window_ns: int) -> int:
    return t - t % window_ns
