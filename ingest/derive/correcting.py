"""The pipeline's corrections (docs/live.md, "Late events"): a mixin of
``Pipeline``, which holds the state it uses; the kept events and copies are a
``Corrections`` (corrections.py).  ``_run`` is the pipeline's way in for
released events: without late ones they are dispatched as usual
(``_run_plain``) and kept; late ones are put in their place and the derivers
run again from the copy before the oldest (``_correct``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .corrections import SLICE, Corrections, Mark
from .faults import _show, log
from .order import _Late
from .point import Point, Retraction

if TYPE_CHECKING:
    from .order import Merge


class Correcting:
    # the state it works on, held by the Pipeline (declared here for the type checker only)
    merge: Merge
    derivers: list[Any]
    stream_fault: str | None
    _fix: Corrections | None
    _late_seen: int
    _beyond_logged: bool
    _stale_logged: bool
    _held: list[Point] | None
    _route: list
    _out: list
    _wanting: dict[int, list[Any]]
    _wanting_at: dict[int, list[int]]

    def _run_plain(self, items: list, stamp: bool = True) -> list[Point]:
        raise NotImplementedError

    def _drain(self, points: list) -> None:
        raise NotImplementedError

    def _stamp(self, points: list[Point]) -> list[Point]:
        raise NotImplementedError

    def _who(self) -> str:
        raise NotImplementedError

    def take_retractions(self) -> list[Retraction]:
        """Points written before that corrections moved since the last call
        (live streams; docs/live.md): a store deletes them once they are written."""
        fix = self._fix
        if fix is None or not fix.retractions:
            return []
        out, fix.retractions = fix.retractions, []
        return out

    def _run(self, items: list, stamp: bool = True) -> list[Point]:
        """Dispatch released events; live, keep them for corrections and put
        each late one in its place (``_correct``)."""
        fix = self._fix
        if fix is None or not items:
            return self._run_plain(items, stamp)
        if self.merge.late_events == self._late_seen:  # no late item among them
            return self._run_kept(items, stamp)
        # late items: the others are derived as usual, then the late ones put in
        # their place and the derivers run again once, from the copy before the oldest
        lates = [item for item in items if item.__class__ is _Late]
        self._late_seen += len(lates)
        run = [item for item in items if item.__class__ is not _Late] if len(lates) < len(
            items) else []
        out = self._run_kept(run, stamp) if run else []
        return out + self._correct(lates, stamp)

    def _run_kept(self, items: list, stamp: bool) -> list[Point]:
        """Released events, none late: dispatched, kept, and the points they
        gave noted as written (the held ones with the events they came from)."""
        fix = self._fix
        assert fix is not None
        held = self._held
        out = self._run_plain(items, stamp)
        self._keep(items)
        if stamp and out:
            if held is not None and self._held is None:  # settled: the held ones go out
                fix.sent_held(out[:len(held)])
                fix.sent(out[len(held):])
            else:
                fix.sent(out)
        return out

    def _keep(self, items: list) -> None:
        fix = self._fix
        if fix is not None and self.stream_fault is None:
            fix.add(items)
            if fix.due():
                fix.mark(self.derivers, None if self._held is None else len(self._held))

    def _correct(self, lates: list[_Late], stamp: bool) -> list[Point]:
        """Late events: put in their place among the kept events and the
        derivers run again from the copy taken before the oldest; the points of
        that run (every window since, corrected) are written again.  Those
        beyond the correction window are fed late, as without corrections."""
        fix = self._fix
        assert fix is not None
        start: Mark | None = None
        beyond: list = []
        for item in lates:
            ev = item[3]
            found = fix.find(ev.time) if self.stream_fault is None else None
            if found is None:
                beyond.append(item)
                continue
            mark, pos = found
            fix.events.insert(pos, ev)
            fix.corrected += 1
            if start is None or mark.index < start.index:
                start = mark
        cuts: list[tuple[int, int]] = []
        points: list[Point] = self._replay(start, cuts) if start is not None else []
        if self._held is not None and start is not None:  # not settled: held points replaced
            if start.held is not None:
                del self._held[start.held:]
            self._held.extend(points)
            points = []
        elif stamp and start is not None:
            points = self._stamp(points)
            stale = fix.resent(start.index, points, cuts)
            if stale and not self._stale_logged:
                self._stale_logged = True
                log.info("%sa late event moved %d point(s) already written to another "
                         "series or time: deleted from the store once written (counted in "
                         "stale_points; docs/live.md)", self._who(), stale)
        if beyond:
            fix.beyond += len(beyond)
            if not self._beyond_logged:
                self._beyond_logged = True
                log.warning("%sa late event beyond the correction window (%s): its windows "
                            "keep what was written; counted in uncorrected_events",
                            self._who(), _show(beyond[0]))
            points += self._run_plain(beyond, stamp)
        return points

    def _replay(self, mark: Mark, cuts: list[tuple[int, int]]) -> list[Point]:
        """Restore the derivers copied at ``mark`` and feed them the kept events
        from there on, taking marks on the way; their points.  ``cuts`` gets
        (points made, events fed) after each slice."""
        fix = self._fix
        assert fix is not None
        self._install(fix.restart(mark))
        points: list[Point] = []
        events = fix.events
        route = self._route
        self._out = points
        n = len(events)
        for lo in range(mark.index, n, SLICE):
            hi = min(lo + SLICE, n)
            for e in events[lo:hi]:
                for append in route[e[0]]:
                    append(e)
            self._drain(points)
            cuts.append((len(points), hi))
            if hi < n and events[hi - 1].time >= fix.next_at:
                fix.mark(self.derivers, None if self._held is None or mark.held is None
                         else mark.held + len(points), hi)
        for p in points:  # (an alert sink does not alert twice on a collection: docs/alerts.md)
            p.meta["rewrite"] = True
        fix.replayed += n - mark.index
        if fix.due():
            fix.mark(self.derivers, None if self._held is None or mark.held is None
                     else mark.held + len(points))
        return points

    def _install(self, derivers: list) -> None:
        """Derivers restored from a copy take the place of the current ones."""
        self.derivers = derivers
        self._wanting = {ty: [derivers[i] for i in at] for ty, at in self._wanting_at.items()}

