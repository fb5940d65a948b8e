"""The whole-file merge's held events under a release plan (plan.py;
``Merge.follow``)."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Collection
from itertools import chain
from operator import itemgetter

from ._native import sort_by_time
from .plan import BLOCK_MARKER, ReleasePlan

_TYPE = itemgetter(0)  # Event.type
_TIME = itemgetter(2)  # Event.time (and a late item's sort key, order._Late)
_FIRST = itemgetter(0)
_NEG_INF = -(1 << 63)
_POS_INF = 1 << 80  # above any 64-bit time


class PlannedHold:
    """The whole-file merge's held events under a plan (``Merge.follow``):
    ``push(events)`` returns what can go, in order (late ones wrapped, as
    ``Merge`` makes them), ``flush()`` the rest.  The stream must come in the
    plan's order (``ReleasePlan.chunks``).

    Held: the arrivals of the block being read, in order, and earlier blocks'
    in sorted runs, one per block (each sorted once, cut from the front at
    each release), so a release costs about what it releases; equal times go
    by the blocks' places in the file, then by arrival.  The frontier:
    everything at or before it, held or known, is out; a later arrival older
    than it is late (only if the RTS broke the block rule), wrapped and
    released at the next release right after what it missed.  The memory
    bound is ``Merge``'s: at a check (every ``check_every`` arrivals) more than
    ``max_held`` held releases the oldest until half remain, known ones with
    them."""

    def __init__(self, plan: ReleasePlan, max_held: int, check_every: int, late: type):
        self._order = plan.order
        self._bounds = plan.bounds
        # known block -> its events neither released nor arrived, sorted by time
        self._pool: dict[int, list] = {k: sorted(evs, key=_TIME) for k, evs in plan.known}
        self._known = frozenset(self._pool)
        self._arrived: list = []
        self._runs: list[tuple[int, list]] = []  # (file index of the block, its events held)
        self._count = 0  # held: arrivals and runs
        self.frontier = _NEG_INF
        self._read = -1  # markers read, less one
        self._block = -1  # the file index of the block being read (-1: before the first)
        self._in_known = False
        self.max_held = max_held
        self.check_every = check_every
        self._countdown = check_every
        self._late = late
        self.late_events = 0
        self.evicted = 0

    @property
    def held(self) -> int:
        return self._count

    def reorder(self, plan: ReleasePlan) -> None:
        """Read the blocks in ``plan``'s order instead (the same file's plan;
        before any block marker)."""
        if self._read >= 0:
            raise ValueError("the blocks' order is set once a block marker has arrived")
        self._order, self._bounds = plan.order, plan.bounds

    def push(self, events: list, types: Collection[int] | None) -> list:
        out: list = []
        if BLOCK_MARKER in (types if types is not None else map(_TYPE, events)):
            ids = list(map(_TYPE, events))
            at = 0
            while True:
                try:
                    i = ids.index(BLOCK_MARKER, at)
                except ValueError:
                    break
                if i > at:
                    self._arrive(events[at:i], out)
                self._marker(out)
                at = i + 1
            if at < len(events):
                self._arrive(events[at:], out)
        elif events:
            self._arrive(events, out)
        return out

    def flush(self) -> list:
        """End of stream: everything held, and known events whose block never
        came (the file was read short of what the pre-scan saw)."""
        out: list = []
        self._release(_POS_INF, out)
        return out

    # -- internals -----------------------------------------------------------------

    def _marker(self, out: list) -> None:
        self._sorted_arrivals()
        self._read = j = self._read + 1
        if j < len(self._order):
            self._block = k = self._order[j]
            f = self._bounds[j] - 1
            if f > self.frontier:
                self._release(f, out)
        else:  # (more blocks than the pre-scan saw: no more releases, the rest at the end)
            self._block = k = len(self._order) + j
        self._in_known = k in self._known
        if self._in_known:  # its events come now: the rest are arrivals
            del self._pool[k]

    def _arrive(self, events: list, out: list) -> None:
        """Events arrive (their lateness is looked at when they are sorted,
        ``_sorted_arrivals``: the frontier stays as they found it until then)."""
        if self._in_known:  # the copies of those released already (at or before the frontier)
            frontier = self.frontier
            events = [ev for ev in events if ev[2] > frontier]
        n = len(events)
        if not n:
            return
        every = self.check_every
        if self._count + n <= self.max_held:  # no memory check on the way can find too many
            self._arrived.extend(events)
            self._count += n
            c = self._countdown - n  # the checks passed on the way, then reset
            self._countdown = c if c > 0 else every - (-c) % every
            return
        pos = 0
        while pos < n:
            k = min(self._countdown, n - pos)
            self._arrived.extend(events[pos:pos + k])
            self._count += k
            pos += k
            self._countdown -= k
            if self._countdown <= 0:
                self._countdown = every
                if self._count > self.max_held:
                    self._evict(out)

    def _sorted_arrivals(self) -> None:
        """The arrivals so far of the block being read join its sorted run.  An
        arrival older than the frontier (only if the RTS broke the block rule)
        is late: wrapped, with the frontier as its sort key (right after what
        it missed)."""
        arrived = self._arrived
        if not arrived:
            return
        self._arrived = []
        run = list(arrived)
        sort_by_time(run)
        frontier = self.frontier
        if _TIME(run[0]) < frontier:
            late = self._late
            run = [late((-1, None, frontier, ev)) if ev[2] < frontier else ev for ev in arrived]
            self.late_events += sum(1 for ev in arrived if ev[2] < frontier)
            sort_by_time(run)
        runs = self._runs
        if runs and runs[-1][0] == self._block:  # (its earlier arrivals, after an eviction)
            run = _merge([runs.pop()[1], run])
        runs.append((self._block, run))

    def _evict(self, out: list) -> None:
        """As ``Merge._evict``: the events held at or before the frontier (late
        ones) go; of the others, if more than ``max_held``, the oldest go until
        half remain (all of equal time together), and the frontier rises to
        them."""
        self._sorted_arrivals()
        frontier = self.frontier
        times = sorted(chain.from_iterable(map(_TIME, r) for _, r in self._runs))
        cut = bisect_right(times, frontier)
        if len(times) - cut > self.max_held:
            excess = len(times) - cut - self.max_held // 2
            cut_time = times[cut + excess - 1]
            if cut_time > frontier:
                self.evicted += bisect_right(times, cut_time) - cut
                frontier = cut_time
        if cut or frontier > self.frontier:
            self._release(frontier, out)

    def _release(self, frontier: int, out: list) -> None:
        """Everything held or known at or before ``frontier`` goes, in order:
        by time, then by the blocks' places in the file (and the first
        arrivals, before any block: the pipeline's start-up events, first),
        then by arrival."""
        self._sorted_arrivals()
        self.frontier = frontier
        parts = []
        released = 0
        for k, r in self._runs:
            if _TIME(r[0]) <= frontier:
                cut = bisect_right(r, frontier, key=_TIME)
                released += cut
                parts.append((k, r[:cut]))
                del r[:cut]  # (in place: what stays is not touched again)
        for k, r in self._pool.items():
            if r and _TIME(r[0]) <= frontier:
                cut = bisect_right(r, frontier, key=_TIME)
                parts.append((k, r[:cut]))
                del r[:cut]
        if released:
            self._count -= released
            self._runs = [kr for kr in self._runs if kr[1]]
        if len(parts) == 1:
            out.extend(parts[0][1])
        elif parts:
            parts.sort(key=_FIRST)
            out.extend(_merge([r for _, r in parts]))



def _merge(runs: list[list]) -> list:
    """Sorted runs as one: by time, equal times in the order of the runs."""
    one = list(chain.from_iterable(runs))
    sort_by_time(one)
    return one
