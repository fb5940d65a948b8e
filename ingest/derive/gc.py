"""``gc``: one point per garbage collection.

A collection is a stop-the-world interval: it opens with a ``StartGC`` on any
capability while no capability is in GC, and closes when the last capability
in it posts its ``EndGC``; its pause is that interval's length, i.e. the wall
time during which at least one capability was in that collection (the union of
the caps' StartGC..EndGC intervals).  Summed over collections this is the
union over the whole log (the summary's ``gc.pause_union_ns``).

Its statistics come from the ``GCStatsGHC`` the GC leader posts (one per
collection), which may carry a time a little after the leader's ``EndGC`` and
so after the interval closed: a closed collection waits for its statistics
until they come, the next collection opens, or the stream ends.  A collection
whose statistics never came (a GHC 7.0 log has no ``GCStatsGHC``; a killed
log may lose them) is written without them; a ``GCStatsGHC`` with no interval
to go to is written with ``pause_ns`` 0.  ``HeapInfoGHC`` gives the number of
generations (major: ``gen == gens - 1``).  ``RequestSeqGC``/``RequestParGC``
(the request) and ``GlobalSyncGC`` (all capabilities stopped) give ``sync_ns``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from protocol import Event, EventType

from . import _native
from .base import ByType, DeriveFault, DeriveSettings
from .point import Point

REQUEST_SEQ_GC, REQUEST_PAR_GC = int(EventType.REQUEST_SEQ_GC), int(EventType.REQUEST_PAR_GC)
START_GC, END_GC = int(EventType.GC_START), int(EventType.GC_END)
HEAP_INFO_GHC, GC_STATS_GHC = int(EventType.HEAP_INFO_GHC), int(EventType.GC_STATS_GHC)
GLOBAL_SYNC_GC = int(EventType.GC_GLOBAL_SYNC)
_NONE: tuple = ()
_CORE_TYPES = (START_GC, END_GC, GC_STATS_GHC, GLOBAL_SYNC_GC, REQUEST_PAR_GC, REQUEST_SEQ_GC)


class _Collection:
    __slots__ = ("start", "end", "caps", "stats", "request_t", "request", "sync_t")
    end: int  # set when the collection closes, before _point reads it
    request_t: int | None
    request: str | None  # "par" | "seq"

    def __init__(self, start: int, request: tuple[int, str] | None):
        self.start = start
        self.caps = 0
        self.stats: tuple | None = None  # the GCStatsGHC fields
        self.request_t, self.request = request if request is not None else (None, None)
        self.sync_t: int | None = None


class GcDeriver(ByType):
    measurement: ClassVar[str] = "gc"
    wants: ClassVar[frozenset[int]] = frozenset(
        {START_GC, END_GC, REQUEST_SEQ_GC, REQUEST_PAR_GC, HEAP_INFO_GHC, GC_STATS_GHC,
         GLOBAL_SYNC_GC})

    def __init__(self, settings: DeriveSettings | None = None):
        self._in_gc: dict = {}  # cap -> StartGC time, caps now in GC
        self._cur: _Collection | None = None  # open collection
        self._pending: _Collection | None = None  # closed, waiting for its GCStatsGHC
        # (t, "par"|"seq") of the last request outside a collection
        self._request: tuple[int, str] | None = None
        self._gens: int | None = None
        self.late_events = 0
        self.unmatched_end = 0
        self.collections = 0
        self._handlers = {
            START_GC: self._start, END_GC: self._end, GC_STATS_GHC: self._stats,
            GLOBAL_SYNC_GC: self._sync, REQUEST_PAR_GC: self._request_par,
            REQUEST_SEQ_GC: self._request_seq, HEAP_INFO_GHC: self._heap_info}

    def feed_many(self, events: Sequence[Event], late: bool = False) -> list[Point]:
        """The compiled loop (``_core.gc``) for a collection's life (open,
        capabilities in and out, statistics, sync, request, close) and its
        point (``_point``'s twin in C, for collections holding what
        well-formed events give); the handlers for the rest."""
        core = _native.core
        if core is None or late:
            return ByType.feed_many(self, events, late)
        if events.__class__ is not list and events.__class__ is not tuple:
            events = list(events)
        out: list[Point] = []
        handlers, in_gc = self._handlers, self._in_gc
        n, i = len(events), 0
        while i < n:
            i = core.gc(self, events, i, in_gc, _Collection, _CORE_TYPES, out, Point)
            if i >= n:
                break
            ev = events[i]
            h = handlers.get(ev[0])
            if h is not None:
                try:
                    got = h(ev, late)
                except Exception as exc:  # (a bug; the pipeline names the event)
                    raise DeriveFault(ev, exc) from exc
                if got:
                    out.extend(got)
            i += 1
        return out

    def flush(self, end: int) -> list[Point]:
        out = []
        if self._pending is not None:
            out.append(self._point(self._pending))
            self._pending = None
        cur = self._cur
        if cur is not None:  # still in GC at the end of the stream: close it there
            cur.end = max(end, cur.start)
            out.append(self._point(cur))
            self._cur = None
            self._in_gc.clear()
        return out

    # -- handlers --------------------------------------------------------------

    def _start(self, ev: Event, late: bool):
        if late:
            self.late_events += 1
            return _NONE
        in_gc = self._in_gc
        out: tuple | list[Point] = _NONE
        if not in_gc:
            if self._pending is not None:
                out = [self._point(self._pending)]
                self._pending = None
            self._cur = _Collection(ev.time, self._request)
            self._request = None
        cap = ev.cap
        if cap is None:  # capability unknown (monitor protocol): count the starts
            in_gc[None] = in_gc.get(None, 0) + 1
            self._cur.caps += 1  # type: ignore[union-attr]  # open: made above, or caps in GC
        elif cap not in in_gc:
            in_gc[cap] = ev.time
            self._cur.caps += 1  # type: ignore[union-attr]  # open: made above, or caps in GC
        return out

    def _end(self, ev: Event, late: bool):
        if late:
            self.late_events += 1
            return _NONE
        in_gc = self._in_gc
        cap = ev.cap
        if cap is None and in_gc.get(None, 0) > 1:
            in_gc[None] -= 1       # another capability without a name is still in it
            return _NONE
        if in_gc.pop(cap, None) is None:
            self.unmatched_end += 1
            return _NONE
        if in_gc:
            return _NONE
        cur = self._cur
        self._cur = None
        if cur is None:  # (cannot be: a capability was in GC, so a collection was open)
            return _NONE
        cur.end = ev.time
        if cur.stats is not None:
            return [self._point(cur)]
        self._pending = cur
        return _NONE

    def _stats(self, ev: Event, late: bool):
        if len(ev.fields) < 8:  # (an UnknownEvent: a shorter layout than any known)
            return _NONE
        cur = self._cur
        if cur is not None and cur.stats is None:
            cur.stats = ev.fields
            return _NONE
        pending = self._pending
        if pending is not None:
            pending.stats = ev.fields
            self._pending = None
            return [self._point(pending)]
        # statistics with no interval to go to (its StartGC/EndGC were lost or late)
        lone = _Collection(ev.time, None)
        lone.end = ev.time
        lone.stats = ev.fields
        return [self._point(lone)]

    def _sync(self, ev: Event, late: bool):
        cur = self._cur
        if cur is not None and cur.sync_t is None and not late:
            cur.sync_t = ev.time
        return _NONE

    def _request_par(self, ev: Event, late: bool):
        if not late and self._cur is None:
            self._request = (ev.time, "par")
        return _NONE

    def _request_seq(self, ev: Event, late: bool):
        if not late and self._cur is None:
            self._request = (ev.time, "seq")
        return _NONE

    def _heap_info(self, ev: Event, late: bool):
        if len(ev.fields) > 1:
            self._gens = ev.fields[1]
        return _NONE

    # -- output ----------------------------------------------------------------

    def _point(self, c: _Collection) -> Point:
        self.collections += 1
        fields: dict = {"pause_ns": c.end - c.start, "caps": c.caps}
        tags: dict = {}
        if c.request_t is not None and c.sync_t is not None:
            fields["sync_ns"] = c.sync_t - c.request_t
        if c.request is not None:
            fields["request"] = c.request
        st = c.stats
        if st is not None:
            # heapCapset gen copied slop frag parNThreads parMaxCopied parTotCopied parBalancedCopied
            gen = st[1]
            tags["gen"] = str(gen)
            if self._gens is not None:
                tags["kind"] = "major" if gen == self._gens - 1 else "minor"
            fields["copied_bytes"] = st[2]
            fields["slop_bytes"] = st[3]
            fields["frag_bytes"] = st[4]
            n = st[5]
            fields["par_threads"] = n
            fields["par_max_copied_bytes"] = st[6]
            tot = st[7]
            fields["par_tot_copied_bytes"] = tot
            balanced = st[8] if len(st) > 8 else None
            if balanced is not None:
                fields["par_balanced_copied_bytes"] = balanced
                if n > 1 and tot > 0:
                    fields["balance"] = balanced / tot
        return Point("gc", tags, fields, c.start)
