# (over 400 lines: one path from events to stamped points, identity and routing, top to bottom)
"""One session's way from decoded events to anchored, tagged points:
time order (``order.Merge``) -> derivers -> wall-clock time and identity tags.

``Pipeline.feed(events)`` takes events in arrival (file) order, in batches of
any size, and returns points; ``close()`` ends the stream.  The points are the
same however the events are batched (the merge decides per event, each deriver
sees one sequence): each measurement's points come in the same order, while
how the points of different measurements interleave depends on the batches.
``wants`` is every event type id the pipeline and its derivers use (block
markers in live mode or under a plan): build the decoder as ``Decoder(only=pipeline.wants)``.

Dispatch: the released events are taken in slices of ``_SLICE``; a slice is
routed by type id into one bucket per deriver, then each deriver takes its
bucket in one ``feed_many`` call (a late event first empties the buckets, then
goes alone), so the per-event work is a tight loop inside each deriver.

Identity (tags on every point, see docs/schema.md):

- ``app``: the configured name, else the program name (basename of the first
  ``ProgramArgs`` argument), else ``unknown``;
- ``host``: as given (the peer or machine); left out when empty;
- ``session``: the configured id, else a hash of the process id and the
  ``WallClockTime`` sample (stable for a stream, the same on every replay of
  it), else of app, host and the fallback start time.

Points are held back until the identity and clock are settled: the
``WallClockTime``, ``OsProcessPid`` and ``ProgramArgs`` events have all been
seen, or the stream has gone ``identity_wait_ns`` of eventlog time past its
first event, or ``max_held_events`` events have been through, or it ends.
Then the clock uses the WallClockTime sample or falls back to
``start_wall_ns`` (clock.py).

``preamble``: start-up events found by a pre-scan of a file (the CLI passes the
first ``WallClockTime``, ``ProgramArgs``, ``OsProcessPid``/``ParentPid``,
``RtsIdentifier`` and ``HeapInfoGHC``).  GHC < 9.2 writes the global buffer
holding them at exit, i.e. at the end of the file; a big file outgrows the
merge's memory bound long before, so without the pre-scan they would arrive
late (no clock, no program name, no major/minor).  They are merged first and
their copies in the stream are dropped, so every event is seen once.
``plan``: what the same pre-scan found of the file's blocks (plan.py): the
whole-file merge releases as it allows instead of holding everything to the
end (block markers are then decoded too); the file must then be fed in the
plan's order (``plan.chunks()``, as ``Session.read`` does).

Faults (docs/schema.md; ``faults.FaultGuard``): a jump in time (between
released events, in time order; live, also past the newest arrived) longer
than ``settings.max_gap_ns``, or a time beyond any real eventlog's
(``faults.MAX_TIME``), is a *stream fault*: the stream's points end at the
event before it, the rest of the stream is dropped and counted, and the fault
is logged and kept in ``stream_fault``.  A deriver that raises (a bug: every
deriver takes whatever the decoder returns) loses only its own measurement
from there on: logged, naming the event, and kept in ``deriver_faults``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from protocol import Event, EventType

from . import _native
from .base import DeriveSettings
from .clock import WALL_CLOCK_TIME, Clock
from .correcting import Correcting
from .corrections import SLICE as _SLICE
from .corrections import Corrections
from .faults import FaultGuard, _show
from .order import _TYPE, BLOCK_MARKER, CAP_CREATE, LATE, STARTUP, Merge, OrderSettings, _Late
from .plan import ReleasePlan
from .point import Point
from .registry import REGISTRY

PROGRAM_ARGS, OS_PID = int(EventType.PROGRAM_ARGS), int(EventType.OSPROCESS_PID)
_OWN = frozenset({BLOCK_MARKER, WALL_CLOCK_TIME, PROGRAM_ARGS, OS_PID})
PER_CAPABILITY = frozenset({"capability", "sparks"})  # need each event's capability
_LIVE = frozenset({STARTUP, CAP_CREATE})  # the live merge learns the capabilities from them
_BIT = {WALL_CLOCK_TIME: 1, OS_PID: 2, PROGRAM_ARGS: 4}
_TYPE_IDS = 1 << 16  # event type ids are 16-bit


@dataclass(frozen=True)
class Identity:
    app: str | None = None  # None: from the stream
    host: str = ""
    session: str | None = None  # None: derived from the stream
    start_wall_ns: int | None = None  # fallback Unix time of eventlog time 0


@dataclass
class PipelineStats:
    events: int = 0  # events derived (a stream fault's dropped ones are not)
    points: int = 0
    late_events: int = 0
    evicted_events: int = 0
    corrected_events: int = 0  # late events put in their place, their windows written again
    uncorrected_events: int = 0  # late events beyond the correction window (docs/live.md)
    stale_points: int = 0  # points written before a correction that it moved elsewhere
    clock: str | None = None
    stream_fault: str | None = None  # why the stream's points ended early
    dropped_events: int = 0  # events after a stream fault
    deriver_faults: dict = field(default_factory=dict)  # measurement -> why it ended
    labels_folded: dict = field(default_factory=dict)  # measurement -> entries put in other
    extra: dict = field(default_factory=dict)


class Pipeline(FaultGuard, Correcting):
    def __init__(self, settings: DeriveSettings | None = None, identity: Identity | None = None,
                 derivers: Sequence[str] | None = None, order: OrderSettings | None = None,
                 identity_wait_ns: int = 1_000_000_000, max_held_events: int = 200_000,
                 preamble: Sequence[Event] = (), plan: ReleasePlan | None = None):
        self.settings = settings or DeriveSettings()
        self.identity = identity or Identity()
        names = list(REGISTRY) if derivers is None else list(derivers)
        unknown = [n for n in names if n not in REGISTRY]
        if unknown:
            raise ValueError(f"unknown measurement(s): {', '.join(unknown)}; "
                             f"known: {', '.join(REGISTRY)}")
        if not self.settings.caps_known:
            names = [n for n in names if n not in PER_CAPABILITY]
        self.derivers = [REGISTRY[n](self.settings) for n in names]
        self.merge = Merge(order)
        self.merge.max_gap = self.settings.max_gap_ns
        self.clock = Clock(self.identity.start_wall_ns)
        self._wait = identity_wait_ns
        self._max_held = max_held_events
        self._scan: list = [0, None, 0]  # settle scan: seen bits, first time, events
        # routing (see the module doc): per slice, each deriver's events go to a
        # bucket of its own, in order, taken in one feed_many call
        self._buckets: list[list] = [[] for _ in self.derivers]
        self._own_bucket: list = []  # the pipeline's own (identity) events
        self._own = {WALL_CLOCK_TIME: self._wall_clock, PROGRAM_ARGS: self._program_args,
                     OS_PID: self._on_pid}
        appends: dict = {ty: [self._own_bucket.append] for ty in self._own}
        self._wanting: dict = {}  # type id -> derivers that want it
        self._wanting_at: dict = {}  # type id -> their indexes in self.derivers
        for i, (d, bucket) in enumerate(zip(self.derivers, self._buckets)):
            for ty in d.wants:
                appends.setdefault(ty, []).append(bucket.append)
                self._wanting.setdefault(ty, []).append(d)
                self._wanting_at.setdefault(ty, []).append(i)
        # type id -> the appends of its buckets; the last entry, index LATE (-1),
        # is the route of a _Late item
        self._route: list = [()] * (_TYPE_IDS + 1)
        for ty, a in appends.items():
            self._route[ty] = tuple(a)
        self._route[LATE] = (self._late,)
        self._out: list = []  # points of the batch being dispatched
        # block markers only matter to a live merge (a whole file is sorted)
        self.wants = frozenset(appends) | (_OWN | _LIVE if self.merge.live
                                           else _OWN - {BLOCK_MARKER})
        self._last: int | None = None
        self._held: list[Point] | None = []  # None once identity is settled
        self._tags: dict[str, str] | None = None
        self._program: str | None = None
        self._pid: int | None = None
        self._events = 0
        self._points = 0
        self._closed = False
        self._max_gap = self.settings.max_gap_ns
        self.stream_fault: str | None = None
        self.deriver_faults: dict[str, str] = {}
        self._dropped = 0
        # events known ahead of the stream (a file's pre-scan): merged first; their
        # copies in the stream, matched by (type, time, cap), are dropped
        self._preamble = {(ev.type, ev.time, ev.cap) for ev in preamble}
        self._preamble_types = frozenset(ev.type for ev in preamble)
        self.plan: ReleasePlan | None = None  # the plan followed: feed the file in its order
        if plan is not None and not self.merge.live:  # a file's plan: the merge needs the blocks
            self.wants |= {BLOCK_MARKER}
            self.follow(plan)
        if preamble:
            self.merge.push([ev for ev in preamble if ev.type != BLOCK_MARKER])
        # live: late events correct what was derived (corrections.py)
        o = order or OrderSettings()
        self._fix: Corrections | None = None
        self._late_seen = 0  # late items met so far (merge.late_events: arrived)
        self._beyond_logged = False
        self._stale_logged = False
        if self.merge.live and o.correct_ns:
            self._fix = Corrections(o.correct_ns, self.settings.window_ns, o.correct_events)
            self._fix.mark(self.derivers, 0)

    # -- public ------------------------------------------------------------------

    def follow(self, plan: ReleasePlan) -> None:
        """The file will come in ``plan``'s order (again: before any block came)."""
        self.plan = plan
        self.merge.follow(plan.only(self.wants, self._preamble))

    def feed(self, events: Iterable[Event]) -> list[Point]:
        if not isinstance(events, list):
            events = list(events)
        if self.stream_fault is not None:
            self._dropped += sum(1 for ev in events if ev[0] != BLOCK_MARKER)
            return []
        # the batch's types, in one pass (in C) over events fresh from the decoder
        # (each further pass costs about as much: they no longer fit in the cache)
        core = _native.core
        types = core.types(events) if core is not None else set(map(_TYPE, events))
        if self._preamble and not self._preamble_types.isdisjoint(types):
            events = self._drop_preamble(events)
        out = self._run(self.merge.push(events, types))
        if self.merge.jumped is not None:  # live: a jump stopped the merge
            out += self._run(self.merge.flush())
            self._arrival_fault()
        return out

    def _drop_preamble(self, events: list) -> list[Event]:
        types, seen = self._preamble_types, self._preamble
        keep = []
        for ev in events:
            if ev.type in types:
                key = (ev.type, ev.time, ev.cap)
                if key in seen:
                    seen.discard(key)
                    continue
            keep.append(ev)
        return keep

    def close(self, join: Callable[[int | None], int | None] | None = None) -> list[Point]:
        """End of the stream: the last points.  ``join``: called with the
        last released event time (None: no event), returns the time the
        derivers end at instead (ingest/split.py: the later of two processes'
        pipelines, each deriving some measurements of one file)."""
        if self._closed:
            return []
        self._closed = True
        # settled: what the merge still holds goes out as in feed() (stamped, and a
        # correction among it tracked); else it joins the held points
        settled = self._held is None
        points = self._run(self.merge.flush(), stamp=settled)
        last = self._last if join is None else join(self._last)
        end = last if last is not None else 0
        tail: list[Point] = []
        for i, d in enumerate(self.derivers):
            try:
                tail.extend(d.flush(end))
            except Exception as exc:
                self._deriver_fault(i, exc, None, "at the end of the stream")
        if settled:
            tail = self._stamp(tail)
            if self._fix is not None:  # (one retracted before goes out again after its delete)
                self._fix.sent(tail)
            return points + tail
        if self._held is not None:
            self._held.extend(points)
            self._held.extend(tail)
            points = self._held
            self._settle()
        return self._stamp(points)

    @property
    def stats(self) -> PipelineStats:
        late = self.merge.late_events
        folded = {d.measurement: d.folded for d in self.derivers if hasattr(d, "folded")}
        fix = self._fix
        return PipelineStats(self._events, self._points, late, self.merge.evicted,
                             fix.corrected if fix else 0, fix.beyond if fix else 0,
                             fix.stale if fix else 0,
                             self.clock.source, self.stream_fault, self._dropped,
                             dict(self.deriver_faults), folded)

    @property
    def tags(self) -> dict[str, str] | None:
        return self._tags

    # -- internals -----------------------------------------------------------------

    def _run_plain(self, items: list, stamp: bool = True) -> list[Point]:
        """Dispatch released events.  While the identity is not settled, points
        are held; the event after which it settles is found by a scan of the
        events themselves (so the batching cannot change it).  ``stamp=False``
        (at close) leaves stamping and settling to the caller."""
        if not items:
            return []
        if self.stream_fault is not None:
            self._dropped += len(items)
            return []
        self._events += len(items)
        n = len(items)
        done: list[Point] = []
        start = 0
        if self._held is not None:
            cut = self._settle_index(items) if stamp else None
            if cut is None:
                self._dispatch(items, 0, n, self._held)
                return []
            self._dispatch(items, 0, cut, self._held)
            held = self._held
            self._settle()
            done = self._stamp(held)
            start = cut
        if start >= n:
            return done
        points: list[Point] = []
        self._dispatch(items, start, n, points)
        if not stamp:
            return points
        points = self._stamp(points)
        return done + points if done else points

    def _settle_index(self, items: list) -> int | None:
        """Scan for the event that settles the identity: the WallClockTime,
        OsProcessPid and ProgramArgs all seen, or ``identity_wait_ns`` of
        eventlog time since the first event, or ``max_held_events`` events.
        Returns the index after it, or None if not in ``items``."""
        scan = self._scan
        seen, first, count = scan
        wait, limit = self._wait, self._max_held
        for i, ev in enumerate(items):
            if ev.__class__ is _Late:
                ev = ev[3]
            else:
                if first is None:
                    first = ev.time
                elif ev.time - first >= wait:
                    scan[:] = seen, first, count + i + 1
                    return i + 1
            ty = ev.type
            if ty == WALL_CLOCK_TIME or ty == OS_PID or ty == PROGRAM_ARGS:
                seen |= _BIT[ty]
                if seen == 7:
                    scan[:] = seen, first, count + i + 1
                    return i + 1
            if count + i + 1 >= limit:
                scan[:] = seen, first, count + i + 1
                return i + 1
        scan[:] = seen, first, count + len(items)
        return None

    def _dispatch(self, items: list, start: int, stop: int, points: list) -> None:
        """Feed ``items[start:stop]`` to the derivers: routed to per-deriver
        buckets, each taken in one ``feed_many``; a late item first empties the
        buckets, then goes to its derivers alone (so every deriver sees its
        events in the released order).  A slice is first checked for a time
        jump (``_jump``): the events from one on are not fed."""
        if self.stream_fault is not None:
            return
        route = self._route
        self._out = points
        for lo in range(start, stop, _SLICE):
            hi = min(lo + _SLICE, stop)
            cut = self._jump(items, lo, hi)
            core = _native.core
            if core is not None:  # (the same loop, compiled)
                core.route(items, lo, cut, route)
            else:
                for ev in (items if lo == 0 and cut == len(items) else items[lo:cut]):
                    for append in route[ev[0]]:
                        append(ev)
            self._drain(points)
            if cut < hi:
                self._stream_fault(items, cut)
                break

    def _drain(self, points: list) -> None:
        own = self._own_bucket
        if own:
            for ev in own:
                self._own[ev.type](ev, False)
            own.clear()
        for i, (d, bucket) in enumerate(zip(self.derivers, self._buckets)):
            if bucket:
                try:
                    out = d.feed_many(bucket, False)
                except Exception as exc:
                    self._deriver_fault(i, exc, bucket)
                    out = None
                bucket.clear()
                if out:
                    points.extend(out)

    def _late(self, item: _Late) -> None:
        """A late item, met while routing: what is routed so far goes first."""
        points = self._out
        self._drain(points)
        ev = item[3]
        own = self._own.get(ev.type)
        if own is not None:
            own(ev, True)
        for d in self._wanting.get(ev.type, ()):
            try:
                out = d.feed_many((ev,), True)
            except Exception as exc:
                self._deriver_fault(self.derivers.index(d), exc, None, f"at late {_show(ev)}")
                out = None
            if out:
                points.extend(out)

    def _settle(self) -> None:
        self._held = None
        self.clock.fall_back()
        ident = self.identity
        app = ident.app or self._program or "unknown"
        session = ident.session
        if not session:
            wc = self.clock.wall_clock
            if wc is not None:
                key = f"{self._pid}:{wc[1]}:{wc[2]}"
            else:
                key = f"{app}:{ident.host}:{self.clock.offset}"
            session = hashlib.sha1(key.encode()).hexdigest()[:16]
        self._tags = {"app": app, "host": ident.host, "session": session}

    def _stamp(self, points: list[Point]) -> list[Point]:
        offset = self.clock.offset
        tags = self._tags
        assert offset is not None and tags is not None  # set by _settle, before any stamping
        for p in points:
            p.time += offset
            p.tags.update(tags)
        self._points += len(points)
        return points

    # the pipeline's own handlers (identity)

    def _wall_clock(self, ev: Event, late: bool) -> None:
        if self._held is not None:
            self.clock.observe(ev)
        return None

    def _program_args(self, ev: Event, late: bool) -> None:
        if self._program is None and len(ev.fields) > 1:
            args = ev.fields[1]
            if args and args[0]:
                self._program = args[0].replace("\\", "/").rsplit("/", 1)[-1]
        return None

    def _on_pid(self, ev: Event, late: bool) -> None:
        if self._pid is None and len(ev.fields) > 1:
            self._pid = ev.fields[1]
        return None
