"""The concurrent (non-moving) collector of the old generation (``-xn``).

``nonmoving``: one point per phase, at its begin time, tag ``phase`` (``mark``,
``sync``, ``sweep``), field ``duration_ns`` (end minus begin) and, for a mark,
``marked_objects`` (from ``ConcMarkEnd``).  Begins and ends of one phase are
paired first in, first out (the RTS may post two ``ConcSyncBegin`` before the
two ends); an end without a begin is counted in ``unmatched`` and dropped.

``nonmoving_census``: one point per ``NonmovingHeapCensus`` (one per
allocator, i.e. block size, per census), tag ``block_size`` (bytes), fields
``active_segments``, ``filled_segments``, ``live_blocks`` and ``live_bytes``
(live blocks times block size).  The 13-byte form of the event (GHC 8.10-9.8)
carries the block size as its base-2 logarithm, the 14-byte form (9.10+) in
bytes, and the decoder keeps the raw value; the deriver tells them apart per
stream: a census lists every allocator from the smallest up, and the
logarithms (3, 4, 5, ...) are not multiples of 8 while byte sizes (8, 16,
24, 32, ...) all are, from 32 on unambiguously.  Events seen before the form
is known (at most the first three of the first census) wait for it; at the
end of a stream that never told, byte sizes are assumed.  A census of a block
size past ``2**MAX_LOG2`` (corrupt) or too short to read is dropped (``bad``).
"""

from __future__ import annotations

from collections import deque
from typing import ClassVar

from protocol import Event, EventType

from .base import ByType, DeriveSettings
from .point import Point

MARK_BEGIN, MARK_END, SYNC_BEGIN, SYNC_END, SWEEP_BEGIN, SWEEP_END = (int(t) for t in (
    EventType.CONC_MARK_BEGIN, EventType.CONC_MARK_END, EventType.CONC_SYNC_BEGIN, EventType.CONC_SYNC_END,
    EventType.CONC_SWEEP_BEGIN, EventType.CONC_SWEEP_END))
CENSUS = int(EventType.NONMOVING_HEAP_CENSUS)
# the largest block size (as a base-2 logarithm) taken: the RTS's allocators go up
# to a few KiB; past 2 GiB (with a u32 block count) live_bytes would overflow 64 bits
MAX_LOG2 = 31

# begin id -> phase, end id -> phase
BEGINS = {MARK_BEGIN: "mark", SYNC_BEGIN: "sync", SWEEP_BEGIN: "sweep"}
ENDS = {MARK_END: "mark", SYNC_END: "sync", SWEEP_END: "sweep"}


class NonmovingPhasesDeriver(ByType):
    measurement: ClassVar[str] = "nonmoving"
    wants: ClassVar[frozenset[int]] = frozenset(BEGINS) | frozenset(ENDS)

    def __init__(self, settings: DeriveSettings | None = None):
        self._open: dict[str, deque[int]] = {phase: deque() for phase in BEGINS.values()}
        self.unmatched = 0
        self._handlers = dict.fromkeys(self.wants, self._phase)

    def _phase(self, ev: Event, late: bool) -> list[Point]:
        phase = BEGINS.get(ev.type)
        if phase is not None:
            self._open[phase].append(ev.time)
            return []
        phase = ENDS.get(ev.type)
        if phase is None:
            return []
        starts = self._open[phase]
        if not starts:
            self.unmatched += 1
            return []
        begin = starts.popleft()
        fields: dict = {"duration_ns": ev.time - begin}
        if ev.type == MARK_END and ev.fields:
            fields["marked_objects"] = ev.fields[0]
        return [Point("nonmoving", {"phase": phase}, fields, begin)]

    def flush(self, end: int) -> list[Point]:
        # a phase still running at the end has no duration yet: nothing to write
        for starts in self._open.values():
            starts.clear()
        return []


class NonmovingCensusDeriver(ByType):
    measurement: ClassVar[str] = "nonmoving_census"
    wants: ClassVar[frozenset[int]] = frozenset({CENSUS})

    def __init__(self, settings: DeriveSettings | None = None):
        self._log2: bool | None = None  # block size form, once known
        self._pending: list[Event] = []
        self.bad = 0  # censuses dropped: too short, or a block size no allocator has
        self._handlers = {CENSUS: self._census}

    def _census(self, ev: Event, late: bool) -> list[Point]:
        if len(ev.fields) < 4:  # (an UnknownEvent: a shorter layout than any known)
            self.bad += 1
            return []
        if self._log2 is None:
            raw = ev.fields[0]
            if raw % 8:
                self._log2 = True
            elif raw >= 32:
                self._log2 = False
            else:
                self._pending.append(ev)
                return []
            pending, self._pending = self._pending, []
            pending.append(ev)
            return self._points(pending)
        return self._points((ev,))

    def flush(self, end: int) -> list[Point]:
        if self._log2 is None:
            self._log2 = False
        pending, self._pending = self._pending, []
        return self._points(pending)

    def _points(self, events) -> list[Point]:
        out = []
        for ev in events:
            p = self._point(ev)
            if p is None:
                self.bad += 1
            else:
                out.append(p)
        return out

    def _point(self, ev: Event) -> Point | None:
        raw, active, filled, live = ev.fields[:4]
        if self._log2:
            if raw > MAX_LOG2:
                return None
            size = 1 << raw
        else:
            size = raw
        return Point("nonmoving_census", {"block_size": str(size)}, {
            "active_segments": active, "filled_segments": filled,
            "live_blocks": live, "live_bytes": live * size}, ev.time)
