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

import pickle
from bisect import bisect_right
from dataclasses import dataclass
from operator import itemgetter

from .order import _TIME
from .point import Point, Retraction

_FIRST = itemgetter(0)
# events routed, then fed to the derivers, at a time (the pipeline's slices too):
# few enough that they are still in the CPU cache when the derivers read them
SLICE = 4096
_GONE_MAX = 100_000  # retracted keys remembered (see Corrections._gone)


@dataclass
class Mark:
    """A copy of the derivers taken after ``events[index - 1]`` was fed."""

    index: int  # events before it (in ``Corrections.events``) were fed to the copy
    time: int  # the time of the last of them (minus infinity: none)
    derivers: bytes  # pickled: a copy is made only when a correction starts here
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
        # (kept events before it, point) of every point written since the oldest mark
        # (counted from the first event ever kept: _base events were trimmed since,
        # so a trim only drops the head, and rewrites none)
        self._sent: list[tuple[int, Point]] = []
        self._base = 0
        self.retractions: list[Retraction] = []  # for the store, taken by the pipeline
        # keys retracted lately: one written again must follow its delete (a store
        # deletes once what came before is written, and may have stored the new
        # write by then), so it goes out once more after a second delete
        self._gone: dict[tuple, None] = {}
        # key -> the point a delete writes again after it (``Retraction.then``):
        # kept up to date with later writes of the key, which the delete may follow
        self._then: dict[tuple, Point] = {}

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
        self.marks.append(Mark(n, t, pickle.dumps(derivers, pickle.HIGHEST_PROTOCOL), held))
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
        return pickle.loads(mark.derivers)

    def sent(self, points: list, at: int | None = None) -> None:
        """Points just written (stamped), derived from the first ``at`` kept
        events (default: all so far)."""
        n = (len(self.events) if at is None else at) + self._base
        self._sent.extend([(n, p) for p in points])
        gone, then = self._gone, self._then
        if gone or then:
            for p in points:
                key = _key(p)
                if gone and key in gone:
                    del gone[key]
                    self.retractions.append(self._retraction(key, p))
                if then and key in then:
                    then[key].fields = p.fields

    def sent_held(self, points: list) -> None:
        """The points held back until the identity settled, going out now: each
        derived from the events before the first mark taken after it was made
        (a mark notes how many points were held)."""
        done = 0
        for m in self.marks:
            if m.held is not None and m.held > done:
                self.sent(points[done:m.held], m.index)
                done = m.held
        self.sent(points[done:])

    def _retraction(self, key: tuple, then: Point | None) -> Retraction:
        if then is not None:
            then = Point(then.measurement, then.tags, then.fields, then.time)
            self._then.pop(key, None)
            self._then[key] = then
            while len(self._then) > _GONE_MAX:
                del self._then[next(iter(self._then))]
        m, tags, t = key
        # every tag key the measurement's points written lately have had ("": not
        # this point's), so that the delete takes no point of the same time that
        # has one more tag (those of other times are not touched: time is exact)
        every = dict.fromkeys({k for _, p in self._sent if p.measurement == m
                               for k in p.tags}, "")
        every.update(tags)
        return Retraction(m, every, t, then)

    def resent(self, index: int, points: list, cuts: list[tuple[int, int]]) -> int:
        """A correction replayed the kept events from ``index`` on and wrote
        ``points``; ``cuts``: (points made, kept events fed) at each step of
        the replay.  The points written before from those events that it did
        not write again are stale: counted (the count returned) and to be
        deleted (``retractions``)."""
        sent = self._sent
        at = bisect_right(sent, index + self._base, key=_FIRST)
        new = {_key(p): p for p in points}
        stale = set()
        then: dict[tuple, Point] = {}  # written again without a field it had: delete first
        for _, old in sent[at:]:
            key = _key(old)
            p = new.get(key)
            if p is None:
                stale.add(key)
            elif not p.fields.keys() >= old.fields.keys():
                then[key] = p
        del sent[at:]
        done = 0
        for made, fed in cuts:  # (first: the tag keys of the new points count in the deletes)
            self.sent(points[done:made], fed)
            done = made
        gone = self._gone
        for key in sorted(stale | then.keys()):
            self.retractions.append(self._retraction(key, then.get(key)))
            gone.pop(key, None)  # (then: written after its delete, by the store)
            if key in stale:
                gone[key] = None
        while len(gone) > _GONE_MAX:
            del gone[next(iter(gone))]
        self.stale += len(stale)
        return len(stale)

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
            self._base += cut
            sent = self._sent
            del sent[:bisect_right(sent, self._base, key=_FIRST)]


def _key(p: Point) -> tuple:
    """A point's identity in a store: measurement, tags, time."""
    return p.measurement, tuple(p.tags.items()), p.time
