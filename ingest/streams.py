"""One eventlog stream in the service: bytes -> session -> sinks.

``StreamRegistry`` is the ``Opener`` every source is given: for each new
stream it builds a ``Stream`` (a ``StreamConsumer``), which turns the bytes
into points through its ``session.Session`` (live time order) and submits
them to every sink.  A malformed stream is reported and its points
so far kept; the other streams never notice.  The registry keeps every
stream's figures for ``/metrics`` and the sessions API (the finished ones up
to a bound).
"""

from __future__ import annotations

import logging
import socket
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from protocol import Decoder

from .config import DeriveConfig
from .derive.pipeline import Pipeline
from .derive.point import Point
from .session import Session, SessionEnd, settings_from
from .sources.base import StreamInfo

log = logging.getLogger("liveprof.streams")


class PointSink(Protocol):
    def submit(self, points: Sequence[Point]) -> None:
        """Take points; never blocks."""


@dataclass
class StreamRecord:
    info: StreamInfo
    key: int = 0                # the stream's number in the registry, from 1
    bytes: int = 0
    events: int = 0             # every event read (ingest/counts.py)
    decoded: int = 0            # of them, the ones decoded for the derivers
    points: int = 0
    error: str | None = None
    ended: float | None = None              # epoch seconds
    tags: dict[str, str] = field(default_factory=dict)
    clock: str | None = None

    @property
    def live(self) -> bool:
        return self.ended is None

    def as_dict(self) -> dict[str, object]:
        return {"source": self.info.source, "peer": self.info.peer, "number": self.info.number,
                "started": self.info.started, "ended": self.ended, "bytes": self.bytes,
                "events": self.events, "decoded": self.decoded, "points": self.points, "error": self.error,
                "tags": dict(self.tags), "clock": self.clock}


def peer_host(info: StreamInfo) -> str:
    """The host tag of a stream: the peer's address for network sources, this
    machine's name for local ones (files, pipes, stdin)."""
    if info.source in ("monitor_tcp", "monitor_udp", "socket") and ":" in info.peer \
            and not info.peer.startswith(("/", "unix:")):
        host = info.peer.rsplit(":", 1)[0].strip("[]")
        if host not in ("127.0.0.1", "::1", "localhost"):
            return host
    return socket.gethostname()


class Stream:
    """The consumer of one stream: its ``Session`` (bytes -> points), the
    points submitted to every sink, the figures kept in its ``record``."""

    def __init__(self, record: StreamRecord, config: DeriveConfig, sinks: Sequence[PointSink],
                 on_end: Callable[[Stream], None] | None = None, app: str | None = None,
                 host: str | None = None):
        self.record = record
        self.sinks = sinks
        self._on_end = on_end
        info = record.info
        # the monitor protocol drops every event's capability, unless sent in blocks
        caps_known = info.caps if info.caps is not None else info.source not in ("monitor_tcp", "monitor_udp")
        self.session = Session(settings_from(
            config, live=True, fallback_host=peer_host(info), app=app or info.app, host=host or info.host,
            start_wall_ns=int(info.started * 1e9), caps_known=caps_known))
        self.outcome: SessionEnd | None = None      # set by end()

    @property
    def pipeline(self) -> Pipeline:
        return self.session.pipeline

    @property
    def decoder(self) -> Decoder:
        return self.session.decoder

    @property
    def failed(self) -> bool:
        """The stream is not a valid eventlog (its points before the bad byte kept)."""
        return self.session.failed

    @property
    def error_offset(self) -> int | None:
        return self.session.error_offset

    def data(self, chunk: bytes) -> None:
        session, rec = self.session, self.record
        failed = session.failed
        points = session.feed(chunk)
        rec.bytes = session.bytes
        if failed:
            return
        if session.failed:
            rec.error = f"{rec.info.name}: {session.decode_error}"
            log.error("%s", rec.error)
        rec.decoded = session.decoded
        rec.events = session.events
        self._submit(points)

    def end(self, error: str | None) -> None:
        rec = self.record
        if rec.ended is not None:
            return
        points = self.session.close()
        end = self.outcome = self.session.end
        assert end is not None
        if end.reason in ("header", "event"):
            log.info("%s: stream cut (%s at byte %d)", rec.info.name, end.reason, end.offset)
        self._submit(points)
        rec.error = rec.error or error or self.pipeline.stream_fault
        rec.ended = time.time()
        rec.clock = end.clock
        log.info("%s: ended: %d bytes, %d events, %d points%s", rec.info.name, rec.bytes,
                 rec.events, rec.points, f" ({rec.error})" if rec.error else "")
        if self._on_end:
            self._on_end(self)

    def _submit(self, points: list[Point]) -> None:
        if points:
            rec = self.record
            rec.points += len(points)
            if not rec.tags and self.pipeline.tags:
                rec.tags = dict(self.pipeline.tags)
            for sink in self.sinks:
                sink.submit(points)
        # (after the points: a delete waits for what was submitted before it)
        gone = self.pipeline.take_retractions()
        if gone:
            for sink in self.sinks:
                retract = getattr(sink, "retract", None)  # (a store: deletes; an alert sink: none)
                if retract is not None:
                    retract(gone)


class StreamRegistry:
    """The ``Opener`` for every source, and the list of streams."""

    def __init__(self, config: DeriveConfig, sinks: Sequence[PointSink], keep_finished: int = 1000):
        self.config = config
        self.sinks = list(sinks)
        self.keep_finished = keep_finished
        self.live: dict[int, Stream] = {}
        self.finished: OrderedDict[int, StreamRecord] = OrderedDict()
        self._ids = 0

    def __call__(self, info: StreamInfo, app: str | None = None,
                 host: str | None = None) -> Stream:
        """Open a stream; ``app``/``host`` tag it instead of the configured or
        derived values (an upload names its app)."""
        self._ids += 1
        key = self._ids
        log.info("%s: started", info.name)
        stream = Stream(StreamRecord(info, key), self.config, self.sinks,
                        on_end=lambda s: self._ended(key, s), app=app, host=host)
        self.live[key] = stream
        return stream

    def _ended(self, key: int, stream: Stream) -> None:
        self.live.pop(key, None)
        self.finished[key] = stream.record
        while len(self.finished) > self.keep_finished:
            self.finished.popitem(last=False)

    def records(self) -> list[StreamRecord]:
        return [s.record for s in self.live.values()] + list(self.finished.values())

    def forget(self, keys: list[int]) -> None:
        """Drop finished streams from the list."""
        for key in keys:
            self.finished.pop(key, None)

    def end_all(self, error: str | None = None) -> None:
        for stream in list(self.live.values()):
            stream.end(error)
