"""``monitor_tcp``: dial a live-profile-monitor, as the 2016 tools did.

The monitor is the TCP server (default port 8242); liveprof connects, reads
frames and never writes.  Each connection is a session: the monitor sends
the state snapshot and the header again, so it is a new eventlog stream.
When the monitor is down or the connection drops, liveprof dials again after
a jittered, growing delay (reset once a connection delivered its header).

A connection's stream is opened downstream once its session has events (or
when it ends): by then the session knows whether its events come in blocks
(their capabilities restored, docs/monitor-protocol.md 7.4) and, from a
``liveprof agent``'s snapshot, the app and host to tag it with (6.7).

Bad input (an oversized frame length, a body that is not a ``ProfileMsg``,
a header or event record that does not fit) is logged with the peer and the
stream offset of the frame, and that connection is closed; the bytes already
passed on are kept.
"""

from __future__ import annotations

import asyncio
import logging

from pydantic import BaseModel, ConfigDict, Field

from protocol.monitor import (
    MAX_FRAME,
    EventlogState,
    FrameError,
    FrameReader,
    HeaderChanged,
    MessageError,
    Session,
    decode_message,
)

from ..backoff import Backoff
from ._dial import dial_forever
from .base import Opener, StreamConsumer, monitor_info

log = logging.getLogger("liveprof.monitor_tcp")

READ_SIZE = 1 << 16


class MonitorTcpConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(8242, ge=1, le=65535)
    connect_timeout: float = Field(10.0, gt=0)
    backoff_initial: float = Field(0.5, gt=0)
    backoff_max: float = Field(30.0, gt=0)
    max_frame: int = Field(MAX_FRAME, ge=64, description="largest frame body accepted, bytes")
    once: bool = Field(False, description="stop after the first connection ends (no redial)")


class MonitorTcpSource:
    kind = "monitor_tcp"

    def __init__(self, config: MonitorTcpConfig):
        self.config = config
        self.peer = f"{config.host}:{config.port}"
        self.streams = 0
        self.connections = 0
        self.errors = 0
        self.state: EventlogState | None = None  # the latest snapshot received

    async def run(self, opener: Opener) -> None:
        """Dial, read, redial, until cancelled (or after one connection with ``once``)."""
        cfg = self.config

        def connected() -> None:
            self.connections += 1

        await dial_forever(f"monitor {self.peer}",
                           lambda: asyncio.open_connection(cfg.host, cfg.port),
                           lambda reader: self._read(reader, opener),
                           timeout=cfg.connect_timeout,
                           backoff=Backoff(cfg.backoff_initial, cfg.backoff_max),
                           once=cfg.once, log=log, on_connected=connected)

    def _open(self, opener: Opener, session: Session) -> StreamConsumer:
        self.streams += 1
        return opener(monitor_info(self.kind, self.peer, self.streams, session))

    async def _read(self, reader: asyncio.StreamReader, opener: Opener) -> bool:
        """Read one connection; True when it delivered a whole header."""
        conn = _Connection(self, opener)
        error: str | None = None
        try:
            while not conn.frames.ended:
                chunk = await reader.read(READ_SIZE)
                if not chunk:
                    break
                conn.take(chunk)
        except _Bad as exc:
            self.errors += 1
            error = f"monitor {self.peer}: {exc}; closing the connection"
            log.error("%s", error)
        except (ConnectionError, OSError) as exc:
            error = f"monitor {self.peer}: connection lost: {exc}"
            log.warning("%s", error)
        finally:
            conn.end(error)
        return conn.got_header


class _Bad(Exception):
    """Bad input on one connection: log it and close that connection."""


class _Connection:
    """Frames -> messages -> session(s) -> consumer(s) for one connection."""

    def __init__(self, source: MonitorTcpSource, opener: Opener):
        self.source = source
        self.opener = opener
        self.frames = FrameReader(source.config.max_frame)
        self.session = Session()
        self._consumer: StreamConsumer | None = None     # opened with the first events
        self._pending: list[bytes] = []                  # the header, until then
        self.got_header = False
        self.now = asyncio.get_running_loop().time

    def data(self, data: bytes) -> None:
        if self._consumer is None:
            self._pending.append(data)
            s = self.session
            if not (s.blocks.seen or s.stats.events):
                return
            self._consumer = self.source._open(self.opener, s)
            data = b"".join(self._pending)
            self._pending = []
        if data:
            self._consumer.data(data)

    def end(self, error: str | None) -> None:
        if self._consumer is None:
            self._consumer = self.source._open(self.opener, self.session)
            if self._pending:
                self._consumer.data(b"".join(self._pending))
        self._consumer.end(error)

    def take(self, chunk: bytes) -> None:
        bad = None
        try:
            bodies = self.frames.feed(chunk)
        except FrameError as exc:
            bodies, bad = exc.frames, str(exc)
        pending = []
        for offset, body in bodies:
            try:
                pending.append((offset, decode_message(body)))
            except MessageError as exc:
                bad = f"bad frame at stream offset {offset}: {exc}"
                break
        self._deliver(pending)
        if bad:
            raise _Bad(bad)

    def _deliver(self, pending: list) -> None:
        while pending:
            try:
                data = self.session.receive_all([m for _, m in pending], self.now())
                pending = []
            except HeaderChanged as exc:
                self.data(exc.data)
                self.end(None)
                log.info("monitor %s: a new header on the connection: new session",
                         self.source.peer)
                self.session, self._consumer, self._pending = Session(), None, []
                pending = pending[exc.index:]
                continue
            except MessageError as exc:
                self.data(exc.data)
                at = pending[exc.index][0]
                raise _Bad(f"frame at stream offset {at}: {exc}") from exc
            finally:
                self.got_header = self.got_header or self.session.header_done
                self.source.state = self.session.state or self.source.state
            if data:
                self.data(data)
