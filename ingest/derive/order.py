# (over 400 lines: one merge, whose live and whole-file paths share the held events and the memory bound)
"""Time order: merge the per-source streams of one session by timestamp.

The RTS writes events per capability (and a global buffer) in blocks, so file
order is not time order.  ``Merge`` takes events in arrival order and releases
them in timestamp order; equal times keep arrival order (a stable sort).

Streams: an event's stream is its ``cap`` (``None``, the global buffer, is a
stream of its own).  A stream is *active* once it has shown an event or a block
marker; its *latest* time is the largest event time it has shown, or the
``end_time`` of its last block once the next block marker arrives (a new block
means the previous one is complete), or the start of its new block (its events
come after the marker).

Two modes:

- ``live=False`` (a whole file): nothing is released before ``flush()`` unless
  the memory bound is hit, so a file comes out as exactly a stable sort by time.
- ``live=True``: events are released up to a *frontier*, the largest value so
  far of ``max(watermark, newest - max_lag_ns)``, where the watermark is the
  oldest latest time among the active streams that are not *idle*, and
  ``newest`` the largest time seen.  A stream is idle while its latest time is
  more than ``idle_ns`` behind ``newest`` (Flink's source idleness, in
  eventlog time): a quiet capability or global buffer stops holding the
  watermark back, and holds it again from its next event that is not itself
  that far behind.  The lag bound is the last resort (``idle_ns=None``: no
  stream is ever idle, the lag bound alone moves past a silent one).
  docs/live.md says how the default was chosen.

An event that arrives older than the frontier is released at once, marked
*late* (``late=True`` to the derivers), and counted in ``late_events``.

Live, an event more than ``max_gap_ns`` after the newest so far (a corrupt
time: left in, it would make every later event late) stops the merge: it and
the rest of its batch are not taken, ``jumped`` is that event and
``jump_dropped`` how many were left; the caller ends the stream (``flush``).

Memory bound: every ``check_every`` arrivals, if more than ``max_held`` events
are held, the oldest are released until ``max_held // 2`` remain, and the frontier
moves up to the last one released (later arrivals behind it are late).  At
most ``max_held + check_every`` events are held at any time.

Chunking does not change the result: releases and "late" decisions depend only
on the sequence of events, never on how they were split across ``push`` calls.
Each decision is made per event (late or not, frontier, memory checks);
``push`` only defers the sorting to the end of the batch, which gives the same
sequence as releasing after every event: a late event is placed right after
everything at or before the frontier it missed (it is held under that frontier
as its sort key).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from operator import itemgetter

from protocol import Event, EventType

from . import _native
from .plan import ReleasePlan
from .planned import PlannedHold

BLOCK_MARKER = int(EventType.BLOCK_MARKER)
# announce capabilities (streams) before they show events
STARTUP, CAP_CREATE = int(EventType.STARTUP), int(EventType.CAP_CREATE)
_TYPE = itemgetter(0)  # Event.type
_TIME = itemgetter(2)  # Event.time, and _Late's sort key
_NEG_INF = -(1 << 63)
_POS_INF = 1 << 80  # above any 64-bit time
LATE = -1  # a _Late item's first element, where an event has its type id
_SPECIAL = (BLOCK_MARKER, STARTUP, CAP_CREATE)  # types _core.merge_live leaves to Python


@dataclass(frozen=True)
class OrderSettings:
    live: bool = False
    max_lag_ns: int = 10_000_000_000  # live: never hold an event more than this behind the newest
    idle_ns: int | None = 250_000_000  # live: a stream this far behind the newest stops
    # holding the watermark back (None: never)
    slack_ns: int = 50_000_000  # live: how far a capability's own events may run out of order
    settle_ns: int | None = None  # live: the watermark is trusted once no capability
    # appeared for this long (one yet to show its first block could hold older events);
    # None: idle_ns (a stream not known yet is as good as idle), or max_lag_ns if that is
    # None.  A Startup event (it names every capability) settles it at once
    max_held: int = 500_000  # memory bound (events held); roughly 100 MB of decoded events
    # live: a late event up to this far behind the released events is put in its place
    # and its windows derived again (derive/corrections.py); None: fed late as it comes
    correct_ns: int | None = 10_000_000_000
    correct_events: int = 200_000  # live: released events kept for that, at most
    check_every: int = 4096  # how often (in arrivals) the memory bound is checked


class _Late(tuple):
    """A late event waiting in the sort: (LATE, None, sort key, event)."""

    __slots__ = ()


class Merge:
    """Per-stream timestamp merge.  ``push(events)`` returns the events that can
    be released, in order; late ones come wrapped (see ``unwrap``)."""

    def __init__(self, settings: OrderSettings | None = None):
        s = settings or OrderSettings()
        self.live = s.live
        self.max_lag = s.max_lag_ns
        self.slack = s.slack_ns
        self.idle = _POS_INF if s.idle_ns is None else s.idle_ns
        self.idle_raised = 0  # times a long block raised the idle time (see _block_marker)
        self._idle_at = _POS_INF  # newest time past which the watermark's stream is idle
        self._next_low = _NEG_INF  # at most the oldest latest time of the other active streams
        self.settle = s.settle_ns if s.settle_ns is not None else (
            s.max_lag_ns if s.idle_ns is None else s.idle_ns)
        self._announced = False  # Startup seen: every capability is known
        self._blocks = False  # a block marker seen: events carry their capability
        self._new_stream_at = _NEG_INF  # newest time when a stream last appeared
        self.max_held = s.max_held
        self.check_every = s.check_every
        self._held: list = []  # events (and _Late) in arrival order, sorted lazily
        self._ready: list = []  # released by the memory bound, not yet returned
        self._held_min: int | None = None  # smallest sort key in _held (None: empty, or not known
        # in whole mode before any early release, when it is not needed)
        self._latest: dict = {}  # stream -> latest time
        self._unseen: dict = {}  # announced stream -> when (while its latest is minus infinity)
        self._block: dict = {}  # stream of the last block marker -> its end_time
        self._last_block_stream: int | None | _NoStream = _NO_STREAM  # (a stream is a cap)
        self._min_stream: int | None | _NoStream = _NO_STREAM  # stream holding the watermark
        self._watermark = _NEG_INF
        self._newest = _NEG_INF  # largest event time seen (live mode)
        self._frontier = _NEG_INF
        self._countdown = s.check_every
        self.late_events = 0
        self.evicted = 0  # events released early by the memory bound
        self.max_gap = _POS_INF  # live: a longer jump past the newest stops the merge
        self.jumped: Event | None = None
        self.jump_dropped = 0

    @staticmethod
    def unwrap(item) -> tuple[Event, bool]:
        if item.__class__ is _Late:
            return item[3], True
        return item, False

    @property
    def held(self) -> int:
        return len(self._held) if self._planned is None else self._planned.held

    def push(self, events: Iterable[Event], types: set | None = None) -> list:
        """``types``: the set of type ids in ``events`` (or a superset), if the
        caller has it: it saves a pass over them."""
        if self.live:
            if self.jumped is not None:
                return []
            self._push_live(events if isinstance(events, list) else list(events))
        else:
            self._push_whole(events, types)
        held_min, frontier = self._held_min, self._frontier
        if held_min is not None and held_min <= frontier:
            out = self._release_upto(frontier)
        else:
            out = []
        if self._ready:
            ready, self._ready = self._ready, []
            ready.extend(out)
            out = ready
        return out

    def _push_live(self, events) -> None:
        # (the state the per-event path reads is held in locals; every call that
        # may change it, rare, is preceded by _sync and followed by _cached.  With
        # the compiled core, the common event is taken by _core.merge_live, which
        # works on the same state, and returns each other event to this loop)
        held = self._held
        append = held.append
        latest = self._latest
        get = latest.get
        frontier = self._frontier
        newest = self._newest
        held_min = self._held_min
        max_gap, max_lag, slack = self.max_gap, self.max_lag, self.slack
        jump_at = newest + max_gap if newest != _NEG_INF else _POS_INF
        countdown = self._countdown
        min_stream, next_low, idle_at, watermark, idle, trusted_at = self._cached()
        core = _native.core
        n = len(events)
        i = 0
        while i < n:
            if core is not None:
                st = [frontier, newest, held_min, jump_at, countdown, next_low, idle_at,
                      watermark, idle, trusted_at, max_lag, slack, max_gap, self.check_every,
                      self.max_held]
                took = core.merge_live(events, i, held, latest, min_stream, st, _SPECIAL)
                if took > i:  # (the state is written back when it took any event)
                    frontier, newest, held_min, jump_at, countdown, _, idle_at, watermark = st[:8]
                    i = took
                if i >= n:
                    break
            ev = events[i]
            i += 1
            ty, _, t, cap, _ = ev
            if t > jump_at:
                self.jumped = ev
                # (no earlier event equals it: it would have jumped)
                self.jump_dropped = sum(1 for e in events[i - 1:] if e[0] != BLOCK_MARKER)
                break
            if ty == BLOCK_MARKER:
                self._sync(frontier, newest, watermark, idle_at)
                self._block_marker(ev)
                frontier = self._frontier
                min_stream, next_low, idle_at, watermark, idle, trusted_at = self._cached()
                continue
            if ty == STARTUP or ty == CAP_CREATE:
                self._sync(frontier, newest, watermark, idle_at)
                self._announce(ev)
                min_stream, next_low, idle_at, watermark, idle, trusted_at = self._cached()
            if t < frontier:
                self.late_events += 1
                append(_Late((LATE, None, frontier, ev)))
                if held_min is None or frontier < held_min:
                    held_min = frontier
            else:
                append(ev)
                if held_min is None or t < held_min:
                    held_min = t
            if t > newest:
                newest = t
                jump_at = t + max_gap
            old = get(cap, _NO_STREAM)
            if old is _NO_STREAM:
                latest[cap] = t
                self._new_stream_at = newest
                self._sync(frontier, newest, watermark, idle_at)
                self._recompute_watermark()
                min_stream, next_low, idle_at, watermark, idle, trusted_at = self._cached()
            elif t > old:
                latest[cap] = t
                if cap == min_stream:
                    if t <= next_low:  # still the oldest: no need to look at the others
                        watermark = t
                        idle_at = t + idle
                    else:
                        self._sync(frontier, newest, watermark, idle_at)
                        self._recompute_watermark()
                        min_stream, next_low, idle_at, watermark, idle, trusted_at = \
                            self._cached()
                elif t < next_low and t + idle >= newest:  # idle, speaks again
                    self._sync(frontier, newest, watermark, idle_at)
                    self._recompute_watermark()
                    min_stream, next_low, idle_at, watermark, idle, trusted_at = self._cached()
            if newest > idle_at:  # the watermark's stream went idle
                self._sync(frontier, newest, watermark, idle_at)
                self._recompute_watermark()
                min_stream, next_low, idle_at, watermark, idle, trusted_at = self._cached()
            f = newest - max_lag
            if newest >= trusted_at and watermark - slack > f:
                f = watermark - slack
            if f > frontier:
                frontier = f
            countdown -= 1
            if countdown <= 0:
                countdown = self.check_every
                if len(held) > self.max_held:
                    self._sync(frontier, newest, watermark, idle_at)
                    self._held_min = held_min
                    self._evict()
                    held = self._held
                    append = held.append
                    frontier, held_min = self._frontier, self._held_min
        self._sync(frontier, newest, watermark, idle_at)
        self._held_min = held_min
        self._countdown = countdown

    def _sync(self, frontier: int, newest: int, watermark: int, idle_at: int) -> None:
        self._frontier, self._newest, self._watermark, self._idle_at = (
            frontier, newest, watermark, idle_at)

    def _cached(self) -> tuple:
        """What the live path reads of the watermark state, as it is now; and
        the newest time from which the watermark counts (blocks seen, and every
        capability known: a Startup, or none new for the settle time)."""
        if not self._blocks:
            trusted_at = _POS_INF
        elif self._announced:
            trusted_at = _NEG_INF
        else:
            trusted_at = self._new_stream_at + self.settle
        return (self._min_stream, self._next_low, self._idle_at, self._watermark, self.idle,
                trusted_at)

    _planned: PlannedHold | None = None  # whole mode under a release plan (follow)

    def follow(self, plan: ReleasePlan) -> None:
        """Whole-file mode: release as ``plan`` (a pre-scan of the file, plan.py)
        allows, not only at the end; still exactly a stable sort by time (in
        file order).  The stream comes in the plan's order; again with the same
        file's plan in another order before any block has come.  Live mode has
        its own watermark and ignores it."""
        if not self.live:
            if self._planned is None:
                self._planned = PlannedHold(plan, self.max_held, self.check_every, _Late)
            else:  # the same file's plan, read in another order
                self._planned.reorder(plan)

    def _push_whole(self, events, types: set | None) -> None:
        """Whole-file mode: the frontier moves only when the memory bound
        releases events early, i.e. only at a memory check; so between two
        checks, events are kept in bulk (one pass in C), and only a stretch
        holding an event older than the frontier (late) is looked at one by one.
        Under a plan, ``PlannedHold`` keeps the events and says what goes."""
        if not isinstance(events, list):
            events = list(events)
        planned = self._planned
        if planned is not None:
            out = planned.push(events, types)
            if out:
                self._ready.extend(out)
            self.late_events, self.evicted = planned.late_events, planned.evicted
            return
        if BLOCK_MARKER in (types if types is not None else map(_TYPE, events)):
            events = [ev for ev in events if ev.type != BLOCK_MARKER]
        if not events:
            return
        n = len(events)
        every = self.check_every
        if len(self._held) + n <= self.max_held:
            # no memory check in this batch can find too many held: keep it whole
            # (before any early release nothing is late and nothing released, so
            # neither the smallest time nor the newest is needed)
            frontier = self._frontier
            lo = frontier if frontier == _NEG_INF else min(map(_TIME, events))
            if lo >= frontier:
                self._held.extend(events)
                if frontier != _NEG_INF and (self._held_min is None or lo < self._held_min):
                    self._held_min = lo
                c = self._countdown - n  # the checks passed on the way, then reset
                self._countdown = c if c > 0 else every - (-c) % every
                return
        times = list(map(_TIME, events))
        pos = 0
        while pos < n:
            k = min(self._countdown, n - pos)
            part = events if k == n else events[pos:pos + k]
            part_t = times if k == n else times[pos:pos + k]
            lo = min(part_t)
            frontier = self._frontier
            held_min = self._held_min
            if lo >= frontier:
                self._held.extend(part)
                if held_min is None or lo < held_min:
                    held_min = lo
            else:
                append = self._held.append
                for ev, t in zip(part, part_t):
                    if t < frontier:
                        self.late_events += 1
                        append(_Late((LATE, None, frontier, ev)))
                        t = frontier
                    else:
                        append(ev)
                    if held_min is None or t < held_min:
                        held_min = t
            self._held_min = held_min
            pos += k
            self._countdown -= k
            if self._countdown <= 0:
                self._countdown = every
                if len(self._held) > self.max_held:
                    self._evict()

    def flush(self) -> list:
        """End of stream: everything still held, in order."""
        if self._planned is not None:
            self._ready.extend(self._planned.flush())
        held = self._held
        _native.sort_by_time(held)
        if self._ready:
            self._ready.extend(held)
            held = self._ready
        out = held
        self._held = []
        self._ready = []
        self._held_min = None
        return out

    # -- internals -----------------------------------------------------------------

    def _announce(self, ev: Event) -> None:
        """``Startup`` (n caps) or ``CapCreate``: capabilities that exist but
        may not have shown an event yet hold the watermark back (at minus
        infinity, so only the lag bound moves the frontier) until they do."""
        if not ev.fields:  # (an UnknownEvent: a shorter layout than any known)
            return
        if ev.type == STARTUP:
            self._announced = True
        caps = range(ev.fields[0]) if ev.type == STARTUP else (ev.fields[0],)
        added = False
        for cap in caps:
            if cap not in self._latest:
                self._latest[cap] = _NEG_INF
                self._unseen[cap] = ev.time  # (idle from this time on, as if it spoke)
                added = True
        if added:
            self._recompute_watermark()

    def _block_marker(self, ev: Event) -> None:
        if len(ev.fields) < 2:  # (an UnknownEvent: a shorter layout than any known)
            return
        self._blocks = True
        # a new block means the stream's previous block is complete up to its end_time
        prev = self._last_block_stream
        if prev is not _NO_STREAM:
            end = self._block.pop(prev, None)
            if end is not None and end > self._latest.get(prev, _NEG_INF):
                self._latest[prev] = end
        cap = ev.cap
        end = ev.fields[1]
        self._block[cap] = end
        self._last_block_stream = cap
        # a capability's block spanning more eventlog time than the idle time shows
        # that this program keeps a buffer that long before writing it (GHC 9.0
        # without flushes: 2 MiB at a time): any capability may be that far behind
        # without being quiet, so the idle time grows to the span and a quarter (at
        # most the lag bound); with frequent flushes blocks stay short.  Not the
        # global buffer's: it speaks now and then (a new OS thread, a heap census)
        # and its blocks span whatever time passed; its rare late events are data
        span = end - ev.time
        if span > self.idle and cap is not None:
            raised = min(span + (span >> 2), self.max_lag)
            if raised > self.idle:
                self.idle = raised
                self.idle_raised += 1
                if self.settle < raised:
                    self.settle = raised
        if cap not in self._latest:
            self._new_stream_at = max(self._newest, ev.time)
        # the stream speaks: its block's events come after the marker (an idle one
        # holds the watermark again unless the block began more than idle_ns ago)
        if ev.time > self._latest.get(cap, _NEG_INF):
            self._latest[cap] = ev.time
        self._recompute_watermark()
        lagged = self._newest - self.max_lag
        f = self._watermark - self.slack if (
            self._announced or self._newest - self.settle >= self._new_stream_at) else _NEG_INF
        if lagged > f:
            f = self._newest - self.max_lag
        if f > self._frontier:
            self._frontier = f

    def _recompute_watermark(self) -> None:
        """The oldest latest time among the streams not idle (at least the
        stream of the newest event is not), and when its stream goes idle."""
        latest = self._latest
        bound = self._newest - self.idle
        stream: int | None | _NoStream = _NO_STREAM
        low = next_low = _POS_INF
        for s, t in latest.items():
            if t >= bound:
                if t < low:
                    stream, low, next_low = s, t, low
                elif t < next_low:
                    next_low = t
        if stream is _NO_STREAM:  # (only a block's end time ahead of every event)
            stream = min(latest, key=latest.__getitem__)
            low = next_low = latest[stream]
        idle_at = low + self.idle
        if self._unseen:  # announced, nothing shown yet: at minus infinity until idle
            self._unseen = unseen = {s: at for s, at in self._unseen.items()
                                     if latest[s] == _NEG_INF}
            waiting = [at for at in unseen.values() if at >= bound]
            if waiting:
                stream = next(s for s, at in unseen.items() if at == min(waiting))
                low, next_low, idle_at = _NEG_INF, _NEG_INF, min(waiting) + self.idle
        self._min_stream = stream
        self._next_low = next_low
        self._watermark = low
        self._idle_at = idle_at

    def _release_upto(self, frontier: int) -> list[Event | _Late]:
        held = self._held
        _native.sort_by_time(held)
        cut = bisect_right(held, frontier, key=_TIME)
        out = held[:cut]
        del held[:cut]  # (in place: the events held on are not touched again)
        rest = held
        self._held = rest
        self._held_min = _TIME(rest[0]) if rest else None
        return out

    def _evict(self) -> None:
        """Memory check: the events held beyond the frontier (those at or before
        it are released in any case; they are moved out first, so the count is
        the same however the arrivals were batched).  If more than
        ``max_held``, release the oldest until half of it remain (all of equal
        time together; half, so that the sorting this takes is amortised) and
        raise the frontier to them."""
        held = self._held
        _native.sort_by_time(held)
        cut = bisect_right(held, self._frontier, key=_TIME)
        if len(held) - cut > self.max_held:
            excess = len(held) - cut - self.max_held // 2
            cut_time = _TIME(held[cut + excess - 1])
            if cut_time > self._frontier:
                self._frontier = cut_time
            early = bisect_right(held, self._frontier, key=_TIME)
            self.evicted += early - cut
            cut = early
        if self._ready:
            self._ready.extend(held[:cut])
        else:
            self._ready = held[:cut]
        del held[:cut]  # (in place: the events held on are not touched again)
        rest = held
        self._held = rest
        self._held_min = _TIME(rest[0]) if rest else None


class _NoStream:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<no stream>"


_NO_STREAM = _NoStream()
