"""What every deriver is: a plain object, fed time-ordered events of one
session, returning points.  Derivers do no I/O and hold only per-window and
per-open-interval state.

Contract:
- ``feed(ev)`` is called with events in (eventlog) time order, except "late"
  events that a live merge could not place in order (``late=True``); a deriver
  must not fail on those (count them, or fold them in as it can).
- ``feed_many(events, late)`` is the same for a run of events (all late or all
  not), with the same result as feeding them one by one; the pipeline calls
  it once per deriver per slice of released events, with just the events the
  deriver wants (a deriver must not keep the list itself, it is reused).
  ``Batched`` gives ``feed`` to a deriver written as ``feed_many``; ``ByType``
  gives both to one written as a handler per event type.
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
from typing import Callable, ClassVar, Protocol, Sequence

from protocol import Event

from .point import Point

SECOND = 1_000_000_000


@dataclass(frozen=True)
class DeriveSettings:
    window_ns: int = SECOND  # aggregation window of the per-window measurements
    top_n: int = 10  # labels kept by name per window (threads, spans) or census (heap_profile)
    other_label: str = "other"
    # False for streams whose events carry no capability (the monitor protocol drops
    # it): the per-capability measurements (capability, sparks, heap allocation)
    # cannot be computed and are left out rather than made up
    caps_known: bool = True


class Deriver(Protocol):
    measurement: ClassVar[str]
    wants: ClassVar[frozenset[int]]

    def feed(self, ev: Event, late: bool = False) -> list[Point]: ...

    def feed_many(self, events: Sequence[Event], late: bool = False) -> list[Point]: ...

    def flush(self, end: int) -> list[Point]: ...


def top_n_with_other(acc: dict[str, list[int]], n: int, other: str) -> list[tuple[str, list[int]]]:
    """The ``n`` entries with the largest first value (ties by name), the rest
    summed element-wise under ``other`` (merged with a real label of that name)."""
    if len(acc) <= n:
        return sorted(acc.items())
    ranked = sorted(acc.items(), key=lambda kv: (-kv[1][0], kv[0]))
    kept = dict(ranked[:n])
    rest = [0] * len(ranked[0][1])
    for _, vals in ranked[n:]:
        for i, v in enumerate(vals):
            rest[i] += v
    if other in kept:
        rest = [a + b for a, b in zip(kept[other], rest)]
    kept[other] = rest
    return sorted(kept.items())


def window_start(t: int, window_ns: int) -> int:
    return t - t % window_ns


class Batched:
    """``feed`` for a deriver whose work is in ``feed_many``."""

    wants: ClassVar[frozenset[int]]

    def feed(self, ev: Event, late: bool = False) -> list[Point]:
        return self.feed_many((ev,), late) if ev.type in self.wants else []

    def feed_many(self, events: Sequence[Event], late: bool = False) -> list[Point]:
        raise NotImplementedError


class ByType:
    """``feed``/``feed_many`` for a deriver whose events are few: one handler
    per event type, ``self._handlers[type](ev, late)`` returning points or
    nothing."""

    _handlers: dict

    def feed(self, ev: Event, late: bool = False) -> list[Point]:
        h = self._handlers.get(ev.type)
        return list(h(ev, late) or ()) if h is not None else []

    def feed_many(self, events: Sequence[Event], late: bool = False) -> list[Point]:
        handlers = self._handlers
        out: list[Point] = []
        for ev in events:
            h = handlers.get(ev[0])
            if h is not None:
                got = h(ev, late)
                if got:
                    out.extend(got)
        return out


class Windows:
    """The window clock of a per-window deriver: the current window is
    ``[start, end)``, aligned on multiples of ``size``; ``end`` is -1 until
    the first event opens the first window (so ``t >= end`` is the one test a
    deriver makes per event before calling ``advance``)."""

    __slots__ = ("size", "start", "end")

    def __init__(self, size: int):
        self.size = size
        self.start = self.end = -1

    @property
    def started(self) -> bool:
        return self.end != -1

    def reset(self) -> None:
        self.start = self.end = -1

    def open_at(self, t: int) -> None:
        self.start = window_start(t, self.size)
        self.end = self.start + self.size

    def advance(self, t: int, close: Callable[[int], list[Point]],
                carry: Callable[[], bool] | None = None) -> list[Point]:
        """Close every window that ends at or before ``t``: ``close(end)``
        credits what is open up to the window end and returns the window's
        points.  If ``carry()`` (something is still open) the next window
        follows the closed one, else the clock jumps to ``t``'s window.  The
        first call only opens ``t``'s window."""
        if self.end == -1:
            self.open_at(t)
            return []
        out: list[Point] = []
        while t >= self.end:
            end = self.end
            out.extend(close(end))
            if carry is not None and carry():
                self.start, self.end = end, end + self.size
            else:
                self.open_at(t)
        return out
