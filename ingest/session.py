"""One stream's way from bytes to points and an end state, for every caller.

The service's streams (``streams.Stream``, for every source and upload),
``liveprof derive``, ``import``, ``monitor`` and ``dump`` all read an
eventlog the same way, so it is written once, here:

- ``settings_from(options, ...)`` is the one conversion of the derive
  settings (``config.DeriveConfig``, or the ``derive`` command's flags) into
  what the pipeline takes: ``DeriveSettings``, ``OrderSettings`` (live or
  whole-file time order) and ``Identity`` (tags, fallback clock), bundled as
  a ``SessionSettings``.
- ``Session``: decoder (``Decoder(only=pipeline.wants)``) -> time order ->
  derivers -> stamping (``derive.pipeline.Pipeline``).  ``feed(chunk)``
  returns points, ``close()`` the last ones and sets ``end``.  It counts
  bytes, events (``counts.py``: decoded or skipped, block markers left out),
  decoded events and points.  ``Session.for_file`` pre-scans a regular file
  (``scan``: the fallback clock, the start-up events, the whole-file merge's
  release plan).
- ``LogReader`` is the decoding half alone (``dump`` and ``monitor`` print
  events and derive nothing): bytes in, events out, a decode error caught.

A decode error is bad input, not a bug: the events before the bad byte are
kept (derived, printed), the error and its byte offset are recorded, and
every later byte is counted and ignored (a failed decoder refuses more).  How
the stream ended is a ``SessionEnd``; its ``error`` (the service's and the
upload API's wording) and ``describe(name)`` (the command line's one line)
are the only texts for it.
"""

from __future__ import annotations

import builtins
import dataclasses
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from protocol import DecodeError, Decoder, EndOfStream, Event, EventType

from .chunks import read_chunks
from .counts import BLOCK_MARKER, decoded_events
from .derive.base import DeriveSettings
from .derive.order import OrderSettings
from .derive.pipeline import Identity, Pipeline, PipelineStats
from .derive.plan import ReleasePlan, read_plan
from .derive.point import Point
from .errors import SourceError

# the start-up events a pipeline is given first (``Pipeline(preamble=...)``)
PREAMBLE = tuple(int(t) for t in (EventType.WALL_CLOCK_TIME, EventType.PROGRAM_ARGS,
                                  EventType.OSPROCESS_PID, EventType.OSPROCESS_PPID,
                                  EventType.RTS_IDENTIFIER, EventType.HEAP_INFO_GHC))
# events the RTS posts with a time taken before (the start and end of a GC: the
# buffer may fill in between), so maybe older than their block's start: the
# pre-scan reads their times for the release plan (plan.py)
OLDER = (int(EventType.START_GC), int(EventType.END_GC))
INVALID = "not a valid eventlog: "      # SessionEnd.error of a decode error starts so
DECODE_ERROR = "decode error"           # SessionEnd.reason of a decode error


class DeriveOptions(Protocol):
    """The derive settings a session is built from: ``config.DeriveConfig`` (the
    service, ``import``), or the ``derive`` command's flags.  Seconds here,
    nanoseconds in the pipeline."""

    @property
    def window(self) -> float: ...
    @property
    def top(self) -> int: ...
    @property
    def max_labels(self) -> int: ...
    @property
    def max_gap(self) -> float: ...
    @property
    def max_lag(self) -> float: ...
    @property
    def stream_idle(self) -> float: ...
    @property
    def correction_window(self) -> float: ...
    @property
    def measurements(self) -> Sequence[str] | None: ...
    @property
    def app(self) -> str | None: ...
    @property
    def host(self) -> str | None: ...


@dataclass(frozen=True)
class SessionSettings:
    """What a ``Session`` is built from (``settings_from``)."""

    derive: DeriveSettings
    order: OrderSettings
    identity: Identity
    measurements: tuple[str, ...] | None = None     # None: every measurement


def settings_from(options: DeriveOptions, *, live: bool, fallback_host: str,
                  app: str | None = None, host: str | None = None, session: str | None = None,
                  start_wall_ns: int | None = None, caps_known: bool = True) -> SessionSettings:
    """The one conversion of derive settings into a session's.  ``app`` and
    ``host`` override the options' (an upload names its app); a host given by
    neither is ``fallback_host`` (the peer, or this machine).  ``live``: merge
    in time order as events come (a stream), else sort the whole (a file).
    ``caps_known=False`` for streams whose events carry no capability (the
    monitor protocol)."""
    derive = DeriveSettings(window_ns=max(1, int(options.window * 1e9)), top_n=options.top,
                            max_labels=options.max_labels,
                            max_gap_ns=int(options.max_gap * 1e9), caps_known=caps_known)
    idle = options.stream_idle
    order = OrderSettings(live=live, max_lag_ns=int(options.max_lag * 1e9),
                          idle_ns=None if idle >= options.max_lag else int(idle * 1e9),
                          correct_ns=int(options.correction_window * 1e9) or None)
    if host is None:
        host = options.host if options.host is not None else fallback_host
    identity = Identity(app=app if app is not None else options.app, host=host,
                        session=session, start_wall_ns=start_wall_ns)
    names = None if options.measurements is None else tuple(options.measurements)
    return SessionSettings(derive, order, identity, names)


@dataclass(frozen=True)
class SessionEnd:
    """How a stream ended.

    ``complete``: it ended at its end-of-data marker.  ``reason``: where it
    stopped, as ``Decoder.close()`` says ("complete", "header", "event", "no
    end marker") or ``"decode error"``.  ``offset``: the byte offset of the
    end, the cut or the decode error; ``pending``: bytes dropped at a cut;
    ``event_id``: the event type cut inside or refused.  ``error``: the
    decode error (``"not a valid eventlog: ..."``) or, for a cut inside the
    header or an event, the truncation; ``None`` otherwise (a log without an
    end marker is no error to a stream: a live program has not ended).
    ``clock``: how the session's time was anchored (``PipelineStats.clock``).
    """

    complete: bool
    reason: str | None
    offset: int | None
    pending: int
    event_id: int | None
    error: str | None
    clock: str | None = None

    @classmethod
    def of(cls, end: EndOfStream, clock: str | None = None) -> SessionEnd:
        error = None
        if end.reason in ("header", "event"):
            where = "the header" if end.reason == "header" else f"an event (type {end.event_id})"
            error = (f"truncated eventlog: cut inside {where} at byte offset {end.offset}"
                     f" ({end.pending} bytes dropped)")
        return cls(end.complete, end.reason, end.offset, end.pending, end.event_id, error, clock)

    @classmethod
    def failed(cls, exc: DecodeError, clock: str | None = None) -> SessionEnd:
        return cls(False, DECODE_ERROR, exc.offset, 0, exc.event_id, f"{INVALID}{exc}", clock)

    @property
    def cut(self) -> bool:
        """Cut inside the header or an event with something received: what a
        stream without end-of-data markers (the monitor protocol) counts as a
        fault (nothing at all is an empty session, not a cut)."""
        return self.reason in ("header", "event") and bool(self.offset or self.pending)

    def describe(self, name: str) -> str | None:
        """The command line's one line on what is wrong with how the input
        ``name`` ended; None when it was complete."""
        if self.complete:
            return None
        if self.reason == DECODE_ERROR:
            return f"{name}: {(self.error or '').removeprefix(INVALID)}"
        if self.reason == "header":
            if self.offset == 0 and not self.pending:
                return f"{name}: empty: no eventlog in it"
            return f"{name}: stream ends inside the header at byte offset {self.offset}"
        if self.reason == "event":
            return (f"{name}: stream cut inside an event of type {self.event_id} at byte offset "
                    f"{self.offset} ({self.pending} bytes dropped)")
        return f"{name}: stream ends at byte offset {self.offset} without the end-of-data marker"


class LogReader:
    """Bytes in, events out, for one stream: a decode error is kept (with the
    events before it), later bytes are counted and ignored."""

    def __init__(self, only: Iterable[int] | None = None):
        self.decoder = Decoder(only=only)
        self.bytes = 0
        self.error: DecodeError | None = None
        self.end: SessionEnd | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None

    @property
    def error_offset(self) -> int | None:
        return None if self.error is None else self.error.offset

    def feed(self, chunk: bytes) -> list[Event]:
        self.bytes += len(chunk)
        if self.error is not None:
            return []
        try:
            return self.decoder.feed(chunk)
        except DecodeError as exc:
            self.error = exc
            return exc.events

    def read(self, path: str, chunks: Iterable[bytes] | None = None) -> Iterator[list[Event]]:
        """The events of ``path`` (``-``: stdin) chunk by chunk, up to a decode
        error (``chunks.read_chunks``; ``SourceError`` when it cannot be read);
        ``chunks``: its bytes read another way."""
        for chunk in read_chunks(path) if chunks is None else chunks:
            yield self.feed(chunk)
            if self.error is not None:
                return

    def close(self, clock: str | None = None) -> SessionEnd:
        """End of input (again: the same end)."""
        if self.end is None:
            self.end = SessionEnd.failed(self.error, clock) if self.error is not None \
                else SessionEnd.of(self.decoder.close(), clock)
        return self.end


class Session:
    """One stream's bytes -> points: decode, time order, derive, stamp."""

    def __init__(self, settings: SessionSettings, preamble: Sequence[Event] = (),
                 plan: ReleasePlan | None = None):
        self.settings = settings
        # fed as it comes, the file is in file order; ``read`` reads it in the plan's
        self._plan = plan
        self.pipeline = Pipeline(settings.derive, settings.identity,
                                 derivers=settings.measurements, order=settings.order,
                                 preamble=preamble,
                                 plan=None if plan is None else plan.in_file_order())
        self.reader = LogReader(only=self.pipeline.wants)
        self.decoded = 0        # events decoded for the derivers (block markers left out)
        self.points = 0
        self.end: SessionEnd | None = None

    @classmethod
    def for_file(cls, path: str, settings: SessionSettings, regular: bool = True,
                 found: Prescan | None = None) -> Session:
        """The session of the eventlog at ``path``: a regular file is
        pre-scanned (``scan``: its fallback clock, start-up events and release
        plan; ``found``: that scan's result, done already); anything else (a
        pipe, stdin) gets the time it is read from as its fallback clock.
        ``SourceError`` when the file cannot be read."""
        if found is None:
            found = scan(path) if regular else Prescan(time.time_ns(), [], None)
        identity = dataclasses.replace(settings.identity, start_wall_ns=found.start_wall_ns)
        return cls(dataclasses.replace(settings, identity=identity), found.preamble, found.plan)

    # -- figures ---------------------------------------------------------------------

    @property
    def decoder(self) -> Decoder:
        return self.reader.decoder

    @property
    def bytes(self) -> int:
        return self.reader.bytes

    @property
    def events(self) -> int:
        """Every event read: decoded or skipped (``counts.py``)."""
        return self.decoded + self.reader.decoder.skipped

    @property
    def failed(self) -> bool:
        """A decode error happened (``decode_error``)."""
        return self.reader.error is not None

    @property
    def decode_error(self) -> DecodeError | None:
        return self.reader.error

    @property
    def error_offset(self) -> int | None:
        return self.reader.error_offset

    @property
    def wants(self) -> frozenset[int]:
        return self.pipeline.wants

    @property
    def stats(self) -> PipelineStats:
        return self.pipeline.stats

    @property
    def tags(self) -> dict[str, str] | None:
        return self.pipeline.tags

    # -- the work --------------------------------------------------------------------

    def feed(self, chunk: builtins.bytes) -> list[Point]:   # (``bytes`` is a figure here)
        """The points ``chunk`` completes (none after a decode error)."""
        return self._derive(self.reader.feed(chunk))

    def read(self, path: str) -> Iterator[list[Point]]:
        """The points of ``path`` (``-``: stdin) chunk by chunk, up to a decode
        error (``LogReader.read``); ``close()`` afterwards.  The file of the
        session's release plan is read in the plan's order (the blocks as they
        began, plan.py)."""
        plan, chunks = self._plan, None
        if (plan is not None and plan.path == path and self.pipeline.plan is not None
                and self.reader.bytes == 0):
            self.pipeline.follow(plan)
            chunks = _planned(plan)
        for events in self.reader.read(path, chunks):
            yield self._derive(events)

    def _derive(self, events: list[Event]) -> list[Point]:
        if not events and self.reader.error is not None:
            return []
        self.decoded += decoded_events(events, self.pipeline.wants)
        points = self.pipeline.feed(events)
        self.points += len(points)
        return points

    def close(self, join: Callable[[int | None], int | None] | None = None) -> list[Point]:
        """End of input: the last points; ``end`` says how it ended.  Again:
        no points.  ``join``: ``Pipeline.close``'s."""
        if self.end is not None:
            return []
        points = self.pipeline.close(join)
        self.points += len(points)
        self.end = self.reader.close(self.pipeline.stats.clock)
        return points


def _planned(plan: ReleasePlan) -> Iterator[bytes]:
    """``plan.chunks()``; ``SourceError`` when the file cannot be read (as
    ``read_chunks`` says it)."""
    try:
        yield from plan.chunks()
    except OSError as exc:
        raise SourceError(f"cannot read {plan.path}: {exc.strerror or exc}") from exc


def prescan(path: str) -> tuple[int, list[Event]]:
    """``scan(path)``'s fallback clock and start-up events."""
    found = scan(path)
    return found.start_wall_ns, found.preamble


@dataclass(frozen=True)
class Prescan:
    """What a quick pass over a regular file finds (``scan``)."""

    start_wall_ns: int      # fallback clock: the file's mtime minus its last event time
    preamble: list[Event]   # the first event of each PREAMBLE type
    plan: ReleasePlan | None  # what the whole-file merge may release early (plan.py)


def scan(path: str) -> Prescan:
    """A quick pass over a regular file (only block markers, start-up events
    and the GC events that may be older than their block are decoded; then the
    global blocks of a complete file, read apart: ``plan.read_plan``).  The
    fallback clock is the file's mtime minus its last event time (the RTS wrote
    the file last at about then; the GC events are left out of it); the
    preamble goes to ``Pipeline(preamble=...)``, the plan to
    ``Pipeline(plan=...)``."""
    dec = Decoder(only=(BLOCK_MARKER, *PREAMBLE, *OLDER))
    last = 0
    first: dict[int, Event] = {}
    markers: list[Event] = []
    lows: list[int] = []  # per block: its start, or an older event's time in it
    end_offset = None
    try:
        for chunk in read_chunks(path):
            for ev in dec.feed(chunk):
                if ev.type == BLOCK_MARKER:
                    markers.append(ev)
                    lows.append(ev.time)
                    last = max(last, ev.time, ev.fields[1])
                elif ev.type in OLDER:
                    if lows and ev.time < lows[-1]:
                        lows[-1] = ev.time
                else:
                    last = max(last, ev.time)
                    first.setdefault(ev.type, ev)
        end = dec.close()
        end_offset = end.offset if end.complete else None
    except DecodeError:
        pass
    plan = read_plan(path, markers, end_offset, lows) if end_offset is not None else None
    return Prescan(os.stat(path).st_mtime_ns - last, list(first.values()), plan)
