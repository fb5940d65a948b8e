"""``sparks``: the per-capability spark counters (``SparkCounters``).

The RTS posts cumulative counters per capability (at every GC, so up to one
event per cap per collection).  To keep to a few points per window, each
window keeps, per capability, the latest counters posted in it (by time; on
equal times the later one wins) and writes them as one point tagged ``cap``,
at the time of that post.  Besides the cumulative values as posted, each
point carries ``*_delta`` fields: the increase since the previous point of the
same capability (from zero for its first), so that summing the deltas of a
cap gives its last cumulative value.  ``remaining`` is a gauge (the sparks in
the pool), not cumulative, and has no delta.  At most ``MAX_CAPS`` capabilities
per stream, as for ``capability``.
"""

from __future__ import annotations

from typing import ClassVar

from protocol import Event, EventType

from .base import ByType, DeriveFault, DeriveSettings, Windows
from .capability import MAX_CAPS
from .point import Point

SPARK_COUNTERS = int(EventType.SPARK_COUNTERS)
# in the order of the decoded event's fields
NAMES = ("created", "dud", "overflowed", "converted", "fizzled", "gcd", "remaining")
CUMULATIVE = NAMES[:6]
DELTAS = tuple(n + "_delta" for n in CUMULATIVE)


class SparksDeriver(ByType):
    measurement: ClassVar[str] = "sparks"
    wants: ClassVar[frozenset[int]] = frozenset({SPARK_COUNTERS})

    def __init__(self, settings: DeriveSettings | None = None):
        s = settings or DeriveSettings()
        self._clock = Windows(s.window_ns)
        self._latest: dict[int | None, Event] = {}  # cap -> latest SparkCounters of this window
        self._prev: dict[int | None, tuple] = {}  # cap -> counters of its previous point
        self.late = 0
        self._seen: set = set()  # capabilities (at most MAX_CAPS: the series of a session)
        self.refused_caps = 0
        self._handlers = {SPARK_COUNTERS: self._counters}

    def _counters(self, ev: Event, late: bool) -> list[Point]:
        if len(ev.fields) < len(NAMES):  # (an UnknownEvent: a shorter layout than any known)
            return []
        if ev.cap not in self._seen:
            if len(self._seen) >= MAX_CAPS:
                self.refused_caps += 1
                return []
            self._seen.add(ev.cap)
        t = ev.time
        clock = self._clock
        out: list[Point] = []
        if t >= clock.end:
            out = clock.advance(t, self._close)
        elif t < clock.start:
            self.late += 1
        cur = self._latest.get(ev.cap)
        if cur is None or t >= cur.time:
            self._latest[ev.cap] = ev
        return out

    def feed_many(self, events, late: bool = False) -> list[Point]:
        """``_counters`` over a run of events, in one loop (a busy log posts
        one per capability per collection: tens of thousands)."""
        out: list[Point] = []
        clock, seen, n_names = self._clock, self._seen, len(NAMES)
        ev = None
        try:
            for ev in events:
                if ev[0] != SPARK_COUNTERS or len(ev[4]) < n_names:
                    continue
                cap, t = ev[3], ev[2]
                if cap not in seen:
                    if len(seen) >= MAX_CAPS:
                        self.refused_caps += 1
                        continue
                    seen.add(cap)
                if t >= clock.end:
                    out.extend(clock.advance(t, self._close))
                elif t < clock.start:
                    self.late += 1
                latest = self._latest  # (a new dict after each window closes)
                cur = latest.get(cap)
                if cur is None or t >= cur[2]:
                    latest[cap] = ev
        except Exception as exc:  # (a bug; the pipeline names the event)
            raise DeriveFault(ev, exc) from exc
        return out

    def flush(self, end: int) -> list[Point]:
        out = self._close(end)
        self._clock.reset()
        return out

    def _close(self, end: int) -> list[Point]:
        out = []
        for cap in sorted(self._latest, key=lambda c: -1 if c is None else c):
            ev = self._latest[cap]
            vals = ev.fields
            fields = dict(zip(NAMES, vals))
            prev = self._prev.get(cap)
            for i, name in enumerate(DELTAS):
                fields[name] = vals[i] - (prev[i] if prev else 0)
            self._prev[cap] = vals
            tags = {"cap": str(cap)} if cap is not None else {}
            out.append(Point("sparks", tags, fields, ev.time))
        self._latest = {}
        return out
