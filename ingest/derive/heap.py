"""``heap``: heap figures and allocation, one point per window that has any.

As posted by the RTS: ``HeapSize``, ``HeapLive`` and ``BlocksSize`` (bytes;
last value in the window and the window's maximum), ``MemReturn`` (megablocks
current / needed / returned, last in the window).  Allocation: ``HeapAllocated``
is a cumulative per-capability counter; the bytes allocated in a window are the
sum over capabilities of the counter's increases posted in that window (the
first posting of a capability counts from 0, a counter never goes down, so
over a whole log this is the sum of each capability's last value).
"""

from __future__ import annotations

from typing import ClassVar

from protocol import Event

from .base import SECOND, DeriveSettings
from .point import Point

MEM_RETURN, BLOCKS_SIZE = 90, 91
HEAP_ALLOCATED, HEAP_SIZE, HEAP_LIVE = 49, 50, 51
_NONE: tuple = ()


class HeapDeriver:
    measurement: ClassVar[str] = "heap"
    wants: ClassVar[frozenset[int]] = frozenset(
        {HEAP_ALLOCATED, HEAP_SIZE, HEAP_LIVE, BLOCKS_SIZE, MEM_RETURN})

    def __init__(self, settings: DeriveSettings | None = None):
        self._window = (settings or DeriveSettings()).window_ns
        self._ws: int | None = None  # current window start
        self._we = 0
        self._alloc_last: dict = {}  # cap -> last cumulative allocBytes
        self._reset()
        self.late_events = 0

    def _reset(self) -> None:
        self._any = False
        self._allocated = 0
        self._size = self._size_max = None
        self._live = self._live_max = None
        self._blocks = self._blocks_max = None
        self._mem = None

    def handlers(self) -> dict:
        return {HEAP_ALLOCATED: self._allocated_ev, HEAP_SIZE: self._size_ev,
                HEAP_LIVE: self._live_ev, BLOCKS_SIZE: self._blocks_ev,
                MEM_RETURN: self._mem_ev}

    def feed(self, ev: Event, late: bool = False):
        h = self.handlers().get(ev.type)
        return h(ev, late) if h else _NONE

    def flush(self, end: int) -> list[Point]:
        if self._ws is None or not self._any:
            return []
        out = [self._point()]
        self._reset()
        return out

    # -- windows -----------------------------------------------------------------

    def _roll(self, t: int):
        """Close the current window if ``t`` is past it; returns its point(s)."""
        out = _NONE
        if self._any:
            out = [self._point()]
            self._reset()
        self._ws = t - t % self._window
        self._we = self._ws + self._window
        return out

    def _point(self) -> Point:
        f: dict = {"allocated_bytes": self._allocated,
                   "alloc_rate_bytes_per_s": self._allocated * SECOND / self._window}
        if self._size is not None:
            f["size_bytes"] = self._size
            f["size_max_bytes"] = self._size_max
        if self._live is not None:
            f["live_bytes"] = self._live
            f["live_max_bytes"] = self._live_max
        if self._blocks is not None:
            f["blocks_bytes"] = self._blocks
            f["blocks_max_bytes"] = self._blocks_max
        if self._mem is not None:
            f["mblocks_current"], f["mblocks_needed"], f["mblocks_returned"] = self._mem
        return Point("heap", {}, f, self._ws)

    # -- handlers ----------------------------------------------------------------

    def _allocated_ev(self, ev: Event, late: bool):
        t = ev.time
        out = self._roll(t) if (self._ws is None or t >= self._we) else _NONE
        value = ev.fields[1]
        last = self._alloc_last.get(ev.cap, 0)
        if value > last:
            self._allocated += value - last
            self._alloc_last[ev.cap] = value
        elif late:
            self.late_events += 1
        self._any = True
        return out

    def _size_ev(self, ev: Event, late: bool):
        t = ev.time
        out = self._roll(t) if (self._ws is None or t >= self._we) else _NONE
        v = ev.fields[1]
        if late:
            self.late_events += 1
        else:
            self._size = v
        if self._size_max is None or v > self._size_max:
            self._size_max = v
            if self._size is None:
                self._size = v
        self._any = True
        return out

    def _live_ev(self, ev: Event, late: bool):
        t = ev.time
        out = self._roll(t) if (self._ws is None or t >= self._we) else _NONE
        v = ev.fields[1]
        if late:
            self.late_events += 1
        else:
            self._live = v
        if self._live_max is None or v > self._live_max:
            self._live_max = v
            if self._live is None:
                self._live = v
        self._any = True
        return out

    def _blocks_ev(self, ev: Event, late: bool):
        t = ev.time
        out = self._roll(t) if (self._ws is None or t >= self._we) else _NONE
        v = ev.fields[1]
        if late:
            self.late_events += 1
        else:
            self._blocks = v
        if self._blocks_max is None or v > self._blocks_max:
            self._blocks_max = v
            if self._blocks is None:
                self._blocks = v
        self._any = True
        return out

    def _mem_ev(self, ev: Event, late: bool):
        t = ev.time
        out = self._roll(t) if (self._ws is None or t >= self._we) else _NONE
        if late:
            self.late_events += 1
            if self._mem is not None:
                return out
        self._mem = ev.fields[1:4]
        self._any = True
        return out
