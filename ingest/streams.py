"""One eventlog stream in the service: bytes -> decoder -> derive -> sinks.

``StreamRegistry`` is the ``Opener`` every source is given: for each new
stream it builds a ``Stream`` (a ``StreamConsumer``), which decodes the bytes
(``Decoder(only=pipeline.wants)``), derives points (a live ``Pipeline``) and
submits them to every sink.  A malformed stream is reported and its points
so far kept; the other streams never notice.  The registry keeps every
stream's figures for ``/metrics`` and the sessions API (the finished ones up
to a bound).
"""

from __future__ import annotations

import logging
import socket
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from protocol import DecodeError, Decoder

from .config import DeriveConfig
from .counts import decoded_events
from .derive.base import DeriveSettings
from .derive.order import OrderSettings
from .derive.pipeline import Identity, Pipeline
from .derive.point import Point
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

    def as_dict(self) -> dict:
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
    """The consumer of one stream."""

    def __init__(self, record: StreamRecord, config: DeriveConfig, sinks: Sequence[PointSink],
                 on_end=None, app: str | None = None, host: str | None = None):
        self.record = record
        self.sinks = sinks
        self._on_end = on_end
        info = record.info
        # the monitor protocol drops every event's capability
        caps_known = info.source not in ("monitor_tcp", "monitor_udp")
        settings = DeriveSettings(window_ns=max(1, int(config.window * 1e9)), top_n=config.top,
                                  max_labels=config.max_labels,
                                  max_gap_ns=int(config.max_gap * 1e9),
                                  caps_known=caps_known)
        host = host if host is not None else config.host
        identity = Identity(app=app if app is not None else config.app,
                            host=host if host is not None else peer_host(info),
                            start_wall_ns=int(info.started * 1e9))
        order = OrderSettings(live=True, max_lag_ns=int(config.max_lag * 1e9))
        self.pipeline = Pipeline(settings, identity, derivers=config.measurements, order=order)
        self.decoder = Decoder(only=self.pipeline.wants)
        self.failed = False
        self.error_offset: int | None = None          # TEMP shim (session branch)
        self.outcome = None                           # TEMP shim (session branch)
        self._decode_error: str | None = None

    def data(self, chunk: bytes) -> None:
        rec = self.record
        rec.bytes += len(chunk)
        if self.failed:
            return
        try:
            events = self.decoder.feed(chunk)
        except DecodeError as exc:
            events = exc.events
            self.failed = True
            self.error_offset = exc.offset
            self._decode_error = f"not a valid eventlog: {exc}"
            rec.error = f"{rec.info.name}: {exc}"
            log.error("%s", rec.error)
        rec.decoded += decoded_events(events, self.pipeline.wants)
        rec.events = rec.decoded + self.decoder.skipped
        self._submit(self.pipeline.feed(events))

    def end(self, error: str | None) -> None:
        rec = self.record
        if rec.ended is not None:
            return
        from .session import SessionEnd
        if not self.failed:
            end = self.decoder.close()
            if end.truncated and end.reason != "no end marker":
                log.info("%s: stream cut (%s at byte %d)", rec.info.name, end.reason, end.offset)
            text = None
            if end.reason in ("header", "event"):
                where = "the header" if end.reason == "header" else f"an event (type {end.event_id})"
                text = (f"truncated eventlog: cut inside {where} at byte offset {end.offset}"
                        f" ({end.pending} bytes dropped)")
            self.outcome = SessionEnd(end.complete, end.reason, end.offset, end.pending,
                                      end.event_id, text, None)
        else:
            self.outcome = SessionEnd(False, "decode error", self.error_offset, 0, None,
                                      self._decode_error, None)
        self._submit(self.pipeline.close())
        rec.error = rec.error or error or self.pipeline.stream_fault
        rec.ended = time.time()
        rec.clock = self.pipeline.stats.clock
        log.info("%s: ended: %d bytes, %d events, %d points%s", rec.info.name, rec.bytes,
                 rec.events, rec.points, f" ({rec.error})" if rec.error else "")
        if self._on_end:
            self._on_end(self)

    def _submit(self, points: list[Point]) -> None:
        if not points:
            return
        rec = self.record
        rec.points += len(points)
        if not rec.tags and self.pipeline.tags:
            rec.tags = dict(self.pipeline.tags)
        for sink in self.sinks:
            sink.submit(points)


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
