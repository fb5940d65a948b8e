"""``capability``: per capability per window, nanoseconds in the mutator, in GC
and idle.

Each capability is in one state at a time, set by its own events: mutator from
``RunThread`` to ``StopThread``, GC from ``StartGC`` to ``EndGC``, idle
otherwise.  A capability exists from its ``CapCreate`` (or its first event,
whichever comes first: a killed log has no ``CapCreate``) to its
``CapDelete`` (or the end of the stream).  Time is credited to the state it
was spent in and split at window boundaries, so for every window
``mutator_ns + gc_ns + idle_ns`` is the time the capability existed in it:
the window length, except in its first and last window.  Windows in which
nothing happened still get their points (all idle, or all in one state).
"""

from __future__ import annotations

from typing import ClassVar

from protocol import Event

from .base import DeriveSettings
from .point import Point

RUN_THREAD, STOP_THREAD, START_GC, END_GC = 1, 2, 9, 10
CAP_CREATE, CAP_DELETE = 45, 46
MUT, GC, IDLE = 0, 1, 2  # state; the window's time in state s is rec[2 + s]
_NONE: tuple = ()


class CapabilityDeriver:
    measurement: ClassVar[str] = "capability"
    wants: ClassVar[frozenset[int]] = frozenset(
        {RUN_THREAD, STOP_THREAD, START_GC, END_GC, CAP_CREATE, CAP_DELETE})

    def __init__(self, settings: DeriveSettings | None = None):
        self._window = (settings or DeriveSettings()).window_ns
        self._ws: int | None = None
        self._we = 0
        self._caps: dict[int, list] = {}  # cap -> [state, since, mut, gc, idle]
        self._gone: dict[int, list] = {}  # deleted during the current window
        self._tags: dict[int, str] = {}
        self.late_events = 0
        self._handlers = {
            RUN_THREAD: self._transition_to(MUT), STOP_THREAD: self._transition_to(IDLE),
            START_GC: self._transition_to(GC), END_GC: self._transition_to(IDLE),
            CAP_CREATE: self._create, CAP_DELETE: self._delete}

    def handlers(self) -> dict:
        return self._handlers

    def feed(self, ev: Event, late: bool = False):
        h = self._handlers.get(ev.type)
        return h(ev, late) if h else _NONE

    def flush(self, end: int) -> list[Point]:
        if self._ws is None:
            return []
        end = max(end, self._ws)
        out: list = []
        self._close_window(min(end, self._we), out)
        return out

    # -- windows -------------------------------------------------------------------

    def _advance(self, t: int) -> list:
        """Close every window that ends at or before ``t``."""
        out: list = []
        if self._ws is None:
            self._ws = t - t % self._window
            self._we = self._ws + self._window
            return out
        window = self._window
        while t >= self._we:
            self._close_window(self._we, out)
            self._ws = self._we
            self._we += window
            if not self._caps:  # nothing exists: jump straight to t's window
                self._ws = t - t % window
                self._we = self._ws + window
        return out

    def _close_window(self, upto: int, out: list) -> None:
        ws = self._ws
        for cap, rec in self._caps.items():
            rec[2 + rec[0]] += upto - rec[1]
            rec[1] = upto
            self._emit(cap, rec, ws, out)
        for cap, rec in self._gone.items():
            self._emit(cap, rec, ws, out)
        self._gone.clear()

    def _emit(self, cap: int, rec: list, ws: int, out: list) -> None:
        mut, gc, idle = rec[2], rec[3], rec[4]
        if mut or gc or idle:
            tag = self._tags.get(cap)
            if tag is None:
                tag = self._tags[cap] = str(cap)
            out.append(Point("capability", {"cap": tag},
                             {"mutator_ns": mut, "gc_ns": gc, "idle_ns": idle}, ws))
        rec[2] = rec[3] = rec[4] = 0

    def _rec(self, cap: int, t: int) -> list:
        rec = self._caps.get(cap)
        if rec is None:
            rec = self._gone.pop(cap, None)
            if rec is None:
                rec = [IDLE, t, 0, 0, 0]
            else:
                rec[0], rec[1] = IDLE, t
            self._caps[cap] = rec
        return rec

    # -- handlers ----------------------------------------------------------------

    def _transition_to(self, state: int):
        """The handler of an event that puts its capability in ``state``."""
        caps = self._caps

        def handler(ev: Event, late: bool):
            cap = ev.cap
            if late or cap is None:
                if late:
                    self.late_events += 1
                return _NONE
            t = ev.time
            out = self._advance(t) if t >= self._we or self._ws is None else _NONE
            rec = caps.get(cap) or self._rec(cap, t)
            rec[2 + rec[0]] += t - rec[1]
            rec[0] = state
            rec[1] = t
            return out

        return handler

    def _create(self, ev: Event, late: bool):
        if late:
            self.late_events += 1
            return _NONE
        t = ev.time
        out = self._advance(t) if (self._ws is None or t >= self._we) else _NONE
        self._rec(ev.fields[0], t)
        return out

    def _delete(self, ev: Event, late: bool):
        if late:
            self.late_events += 1
            return _NONE
        t = ev.time
        out = self._advance(t) if (self._ws is None or t >= self._we) else _NONE
        cap = ev.fields[0]
        rec = self._caps.pop(cap, None)
        if rec is not None:
            rec[2 + rec[0]] += t - rec[1]
            rec[1] = t
            self._gone[cap] = rec
        return out
