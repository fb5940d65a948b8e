"""Late events are data (issue 14, docs/live.md "Late events"): a live
pipeline keeps the events it released over the last ``span_ns`` of eventlog
time and a copy of its derivers every ``every_ns``, so that an event arriving
behind the frontier can be put in its place and the derivers run again from
the copy taken before it.  The points of that run are written again: a window
already written gets its corrected values under the same series and
timestamp (InfluxDB keeps the last write of a point), and the run ends with
the derivers in the state an import of the same bytes would have them in.

A late event older than the oldest copy (more than ``span_ns`` behind, or
beyond what ``max_events`` of kept events covers) is *beyond* correction: it
goes to the derivers marked late as before (they count it or fold it in as
they can) and is counted in ``beyond``.

Cost: the kept events are references to the decoded events (no copy), at
most ``max_events`` of them past the oldest copy; a copy of the derivers is
made once per ``every_ns`` of eventlog time, when a batch of released events
crosses it.  A correction replays the kept events from the copy it starts
at, about ``every_ns`` worth plus how late the event was.
"""

from __future__ import annotations

import copy
from bisect import bisect_right
from dataclasses import dataclass
from operator import itemgetter

from .order import _TIME

_FIRST = itemgetter(0)


@dataclass
class Mark:
    """A copy of the derivers taken after ``events[index - 1]`` was fed."""

    index: int  # events before it (in ``Corrections.events``) were fed to the copy
    time: int  # the time of the last of them (minus infinity: none)
    derivers: list
    held: int | None  # points the pipeline held back (identity not settled) then; None: settled


class Corrections:
    def __init__(self, span_ns: int, every_ns: int, max_events: int):
        self.span = span_ns
        self.every = max(1, every_ns)
        self.max_events = max_events
        self.events: list = []  # released events in time order, since the oldest mark
        self.marks: list[Mark] = []
        self.next_at = -(1 << 63)  # a mark is due once released events reach this time
        self.corrected = 0  # late events put in their place
        self.beyond = 0  # late events too old to be
        self.replayed = 0  # events fed again by corrections
        self.stale = 0  # points written that a correction moved to another series or time
        # (kept events before it, key) of every point written since the oldest mark
        self._sent: list[tuple[int, tuple]] = []

    def add(self, items: list) -> None:
        """Released events (none late), in order, just fed to the derivers."""
        self.events.extend(items)

    def due(self) -> bool:
        events = self.events
        return bool(events) and (events[-1].time >= self.next_at or len(events)
                                 - (self.marks[-1].index if self.marks else 0)
                                 >= self.max_events // 4)

    def mark(self, derivers: list, held: int | None, upto: int | None = None) -> None:
        """Copy the derivers as they are after the first ``upto`` kept events
        (default: all) were fed; then, unless in a replay (``upto`` given),
        drop the marks (and kept events) no correction can start from any more."""
        events = self.events
        n = len(events) if upto is None else upto
        t = events[n - 1].time if n else -(1 << 63)
        self.marks.append(Mark(n, t, copy.deepcopy(derivers), held))
        self.next_at = t - t % self.every + self.every
        if upto is None:
            self._trim(t)

    def find(self, t: int) -> tuple[Mark, int] | None:
        """The newest mark a late event at ``t`` can be replayed from, and the
        place of the event among the kept ones (after those at or before ``t``:
        where a stable sort by time puts an event that arrived after them)."""
        events = self.events
        pos = bisect_right(events, t, key=_TIME)
        for mark in reversed(self.marks):
            # (its time: of the last event fed before it, which may be trimmed)
            if mark.index <= pos and t >= mark.time:
                return mark, pos
        return None

    def restart(self, mark: Mark) -> list:
        """Forget the marks after ``mark``; a copy of its derivers to replay into
        (the mark stays, for later corrections)."""
        i = self.marks.index(mark)
        del self.marks[i + 1:]
        t = mark.time
        self.next_at = t - t % self.every + self.every if t > -(1 << 62) else t
        return copy.deepcopy(mark.derivers)

    def sent(self, points: list) -> None:
        """Points just written (stamped), derived from the kept events so far."""
        n = len(self.events)
        self._sent.extend((n, (p.measurement, tuple(p.tags.items()), p.time)) for p in points)

    def resent(self, index: int, points: list) -> int:
        """A correction replayed the kept events from ``index`` on and wrote
        ``points``: the points written before from those events that it did
        not write again are stale (counted; returned)."""
        sent = self._sent
        at = bisect_right(sent, index, key=_FIRST)
        new = {(p.measurement, tuple(p.tags.items()), p.time) for p in points}
        stale = sum(1 for _, key in sent[at:] if key not in new)
        del sent[at:]
        self.sent(points)
        self.stale += stale
        return stale

    def _trim(self, now: int) -> None:
        marks = self.marks
        # the oldest mark kept is the newest one at or before now - span
        keep_from = 0
        for i, m in enumerate(marks):
            if m.time <= now - self.span:
                keep_from = i
        while len(marks) - keep_from > 1 and len(self.events) - marks[keep_from].index \
                > self.max_events:
            keep_from += 1
        if keep_from:
            del marks[:keep_from]
        cut = marks[0].index
        if cut:
            del self.events[:cut]
            for m in marks:
                m.index -= cut
            sent = self._sent
            del sent[:bisect_right(sent, cut, key=_FIRST)]
            self._sent = [(i - cut, key) for i, key in sent]
