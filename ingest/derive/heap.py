"""``heap``: heap figures and allocation, one point per window that has any.

As posted by the RTS: ``HeapSize``, ``HeapLive`` and ``BlocksSize`` (bytes;
last value in the window and the window's maximum), ``MemReturn`` (megablocks
current / needed / returned, last in the window).  Allocation: ``HeapAllocated``
is a cumulative per-capability counter; the bytes allocated in a window are the
sum over capabilities of the counter's increases posted in that window (the
first posting of a capability counts from 0, a counter never goes down, so
over a whole log this is the sum of each capability's last value).  Events
too short to carry their figures (an ``UnknownEvent``) only move the clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from protocol import Event, EventType

from . import _native
from .base import SECOND, ByType, DeriveSettings, Windows
from .point import Point

MEM_RETURN, BLOCKS_SIZE = int(EventType.MEM_RETURN), int(EventType.BLOCKS_SIZE)
HEAP_ALLOCATED, HEAP_SIZE = int(EventType.HEAP_ALLOCATED), int(EventType.HEAP_SIZE)
HEAP_LIVE = int(EventType.HEAP_LIVE)
_NONE: tuple = ()
# gauge events -> their name in the fields (``<name>_bytes``, ``<name>_max_bytes``)
GAUGES = {HEAP_SIZE: "size", HEAP_LIVE: "live", BLOCKS_SIZE: "blocks"}
_CORE_TYPES = (HEAP_ALLOCATED, MEM_RETURN)


class HeapDeriver(ByType):
    measurement: ClassVar[str] = "heap"
    wants: ClassVar[frozenset[int]] = frozenset(
        {HEAP_ALLOCATED, HEAP_SIZE, HEAP_LIVE, BLOCKS_SIZE, MEM_RETURN})

    def __init__(self, settings: DeriveSettings | None = None):
        settings = settings or DeriveSettings()
        self._clock = Windows(settings.window_ns)
        self._alloc_last: dict = {}  # cap -> last cumulative allocBytes
        # per-capability counters: without capabilities there is no allocation figure
        self._alloc = settings.caps_known
        self._reset()
        self.late_events = 0
        self._handlers = {HEAP_ALLOCATED: self._allocated_ev if self._alloc else self._roll_ev,
                          MEM_RETURN: self._mem_ev}
        for ty in GAUGES:  # (bound methods, not closures: a deepcopy's are its own)
            self._handlers[ty] = self._gauge_ev

    def _reset(self) -> None:
        self._any = False
        self._allocated = 0
        self._gauges: dict[str, list] = {}  # name -> [last, max] of this window
        self._mem: tuple | None = None  # (current, needed, returned) mblocks

    def feed_many(self, events: Sequence[Event], late: bool = False) -> list[Point]:
        """The compiled loop (``_core.heap``) for allocation and gauges inside
        the window, the handlers for the rest (window ends, ``MemReturn``)."""
        core = _native.core
        if core is None or late or not self._alloc:
            return ByType.feed_many(self, events, late)
        if events.__class__ is not list and events.__class__ is not tuple:
            events = list(events)
        out: list[Point] = []
        n, i = len(events), 0
        while True:
            i, allocated, any_ = core.heap(events, i, self._clock.end, self._alloc_last, self._gauges,
                                           GAUGES, _CORE_TYPES)
            self._allocated += allocated
            if any_:
                self._any = True
            if i >= n:
                return out
            out += ByType.feed_many(self, events[i:i + 1], late)
            i += 1

    def flush(self, end: int) -> list[Point]:
        if not self._clock.started:
            return []
        return self._close(end)

    # -- windows -----------------------------------------------------------------

    def _close(self, end: int) -> list[Point]:
        """The window's point (if any event came in it)."""
        if not self._any:
            return []
        f: dict = {"allocated_bytes": self._allocated,
                   "alloc_rate_bytes_per_s": self._allocated * SECOND / self._clock.size} \
            if self._alloc else {}
        for name in GAUGES.values():
            g = self._gauges.get(name)
            if g is not None:
                f[f"{name}_bytes"], f[f"{name}_max_bytes"] = g
        if self._mem is not None:
            f["mblocks_current"], f["mblocks_needed"], f["mblocks_returned"] = self._mem
        out = [Point("heap", {}, f, self._clock.start)]
        self._reset()
        return out

    def _roll(self, t: int):
        clock = self._clock
        return clock.advance(t, self._close) if t >= clock.end else _NONE

    # -- handlers ----------------------------------------------------------------

    def _roll_ev(self, ev: Event, late: bool):
        return self._roll(ev.time)

    def _allocated_ev(self, ev: Event, late: bool):
        out = self._roll(ev.time)
        if len(ev.fields) < 2:  # (an UnknownEvent: a shorter layout than any known)
            return out
        value = ev.fields[1]
        last = self._alloc_last.get(ev.cap, 0)
        if value > last:
            self._allocated += value - last
            self._alloc_last[ev.cap] = value
        elif late:
            self.late_events += 1
        self._any = True
        return out

    def _gauge_ev(self, ev: Event, late: bool):
        """A gauge's last value (late events do not set it) and maximum."""
        out = self._roll(ev.time)
        if len(ev.fields) < 2:
            return out
        name = GAUGES[ev.type]
        v = ev.fields[1]
        g = self._gauges.get(name)
        if late:
            self.late_events += 1
            if g is None:
                self._gauges[name] = [v, v]
            elif v > g[1]:
                g[1] = v
        elif g is None:
            self._gauges[name] = [v, v]
        else:
            g[0] = v
            if v > g[1]:
                g[1] = v
        self._any = True
        return out

    def _mem_ev(self, ev: Event, late: bool):
        out = self._roll(ev.time)
        if len(ev.fields) < 4:
            return out
        if late:
            self.late_events += 1
            if self._mem is not None:
                return out
        self._mem = ev.fields[1:4]
        self._any = True
        return out
