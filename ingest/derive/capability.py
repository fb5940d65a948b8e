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
nothing happened still get their points (all idle, or all in one state).  At
most ``MAX_CAPS`` capabilities per stream are followed (the events of others
are counted in ``refused_caps``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from protocol import Event, EventType

from . import _native
from .base import Batched, DeriveSettings, Windows
from .point import Point

RUN_THREAD, STOP_THREAD = int(EventType.RUN_THREAD), int(EventType.STOP_THREAD)
START_GC, END_GC = int(EventType.GC_START), int(EventType.GC_END)
CAP_CREATE, CAP_DELETE = int(EventType.CAP_CREATE), int(EventType.CAP_DELETE)
# capabilities per session (and so series): more than any machine GHC runs on has
# cores; a crafted stream naming all 65,536 would make that many points per window
MAX_CAPS = 1024
MUT, GC, IDLE = 2, 3, 4  # state: the index in a capability's record of the time spent in it
_STATE: list[int | None]
# event type -> the state it puts its capability in (None: not a transition)
_STATE = [None] * 64
_STATE[RUN_THREAD], _STATE[STOP_THREAD], _STATE[START_GC], _STATE[END_GC] = MUT, IDLE, GC, IDLE
_CORE_TYPES = (RUN_THREAD, STOP_THREAD, START_GC, END_GC)  # _core.c: to MUT, IDLE, GC, IDLE


class CapabilityDeriver(Batched):
    measurement: ClassVar[str] = "capability"
    wants: ClassVar[frozenset[int]] = frozenset(
        {RUN_THREAD, STOP_THREAD, START_GC, END_GC, CAP_CREATE, CAP_DELETE})

    def __init__(self, settings: DeriveSettings | None = None):
        self._clock = Windows((settings or DeriveSettings()).window_ns)
        self._caps: dict[int, list] = {}  # cap -> [state, since, mut, gc, idle]
        self._gone: dict[int, list] = {}  # deleted during the current window
        self._tags: dict[int, str] = {}  # every capability seen -> its tag
        self.late_events = 0
        self.refused_caps = 0  # events of capabilities past MAX_CAPS

    def feed_many(self, events: Sequence[Event], late: bool = False) -> list:
        """The compiled loop (``_core.capability``) where it can, the Python
        loop for each event it leaves (window ends, new capabilities, ...)."""
        core = _native.core
        if core is None or late:
            return self._feed_many_py(events, late)
        if events.__class__ is not list and events.__class__ is not tuple:
            events = list(events)
        out: list = []
        n, i = len(events), 0
        while True:
            i = core.capability(events, i, self._clock.end, self._caps, _CORE_TYPES)
            if i >= n:
                return out
            out += self._feed_many_py(events[i:i + 1])
            i += 1

    def _feed_many_py(self, events: Sequence[Event], late: bool = False) -> list:
        """The reference loop."""
        if late:  # a late event would rewrite a capability's past: ignored
            self.late_events += len(events)
            return []
        out: list = []
        clock = self._clock
        we = clock.end
        caps = self._caps
        state_of = _STATE
        for ty, _, t, cap, fields in events:
            state = state_of[ty]
            if state is not None:
                if cap is None:
                    continue
                if t >= we:
                    out.extend(clock.advance(t, self._close, caps.__len__))
                    we = clock.end
                rec = caps.get(cap)
                if rec is None:
                    rec = self._rec(cap, t)
                    if rec is None:
                        continue
                rec[rec[0]] += t - rec[1]
                rec[0] = state
                rec[1] = t
                continue
            if t >= we:
                out.extend(clock.advance(t, self._close, caps.__len__))
                we = clock.end
            if not fields:  # (an UnknownEvent: a shorter layout than any known)
                continue
            if ty == CAP_CREATE:
                self._rec(fields[0], t)
            elif ty == CAP_DELETE:
                rec = caps.pop(fields[0], None)
                if rec is not None:
                    rec[rec[0]] += t - rec[1]
                    rec[1] = t
                    self._gone[fields[0]] = rec
        return out

    def flush(self, end: int) -> list[Point]:
        clock = self._clock
        if not clock.started:
            return []
        return self._close(min(max(end, clock.start), clock.end))

    # -- windows -------------------------------------------------------------------

    def _close(self, upto: int) -> list[Point]:
        """The window's points, its time credited up to ``upto``."""
        ws = self._clock.start
        out: list[Point] = []
        for cap, rec in self._caps.items():
            rec[rec[0]] += upto - rec[1]
            rec[1] = upto
            self._emit(cap, rec, ws, out)
        for cap, rec in self._gone.items():
            self._emit(cap, rec, ws, out)
        self._gone.clear()
        return out

    def _emit(self, cap: int, rec: list, ws: int, out: list) -> None:
        mut, gc, idle = rec[MUT], rec[GC], rec[IDLE]
        if mut or gc or idle:
            tag = self._tags.get(cap)
            if tag is None:
                tag = self._tags[cap] = str(cap)
            out.append(Point("capability", {"cap": tag},
                             {"mutator_ns": mut, "gc_ns": gc, "idle_ns": idle}, ws))
        rec[MUT] = rec[GC] = rec[IDLE] = 0

    def _rec(self, cap: int, t: int) -> list | None:
        """The record of ``cap`` (opened at ``t`` if new); None past ``MAX_CAPS``."""
        rec = self._caps.get(cap)
        if rec is None:
            rec = self._gone.pop(cap, None)
            if rec is None:
                if len(self._tags) >= MAX_CAPS and cap not in self._tags:
                    self.refused_caps += 1
                    return None
                self._tags.setdefault(cap, str(cap))
                rec = [IDLE, t, 0, 0, 0]
            else:
                rec[0], rec[1] = IDLE, t
            self._caps[cap] = rec
        return rec
