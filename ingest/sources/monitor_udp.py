"""``monitor_udp``: listen for monitor messages as datagrams (spec 3.3).

Each datagram is one CBOR ``ProfileMsg``, or several one after another (a
packed datagram, docs/monitor-protocol.md 3.3 rule 1b: a bad item ends the
datagram, the items before it are kept); each sender address is a session,
ended after ``idle_timeout`` seconds without a datagram, or when it sends a
header that differs from the one it sent before (a new stream from the same
address).  The protocol callback only queues datagrams (bounded in count and
bytes: beyond, datagrams are dropped and counted); one task decodes them.

Anyone who can reach the port can send, so strangers are kept cheap:

* only senders in ``allow`` (networks; default loopback and private ranges)
  are heard at all; the rest are dropped in the callback and counted;
* with a ``secret``, a datagram must carry its HMAC tag (docs/monitor-
  protocol.md section 3.4); the rest are dropped and counted;
* a sender gets a session only once a datagram decodes as a valid message:
  garbage costs a counter, not a slot; and it opens a stream downstream only
  once its session has eventlog bytes to give (a header);
* when all ``max_sessions`` slots are taken, a new sender takes the slot of
  the oldest session that has no header yet, if any;
* what a session holds is bounded per sender (header, held events, split
  parts, duplicate window) and in total (budgets shared by all senders).

Nothing a peer sends can stop the listener: a datagram that is not a valid
message, or that the session cannot use, is dropped, counted and logged
with the peer and the datagram's number (rate-limited); a consumer that
fails ends that peer's session only.

This module is the listener (its settings, socket, queue and timer); the
sessions by sender, and what each datagram does to them, are in
``_udp_sessions.py``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from protocol.monitor import DEFAULT_ALLOW, AllowList, datagram_key

from ._udp_sessions import Address, UdpSessions, sparse
from .base import Opener

log = logging.getLogger("liveprof.monitor_udp")

DATAGRAM_COST = 128           # bytes charged per queued datagram beyond its data


class MonitorUdpConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = "0.0.0.0"
    port: int = Field(default=8242, ge=0, le=65535)
    allow: list[str] = Field(default_factory=lambda: list(DEFAULT_ALLOW),
                             description="sender networks heard (default: loopback and private "
                                         "ranges; [\"0.0.0.0/0\", \"::/0\"] hears everyone)")
    secret: SecretStr | None = Field(
        default=None, description="shared secret: every datagram must carry its HMAC-SHA256 tag "
                                  "(docs/monitor-protocol.md 3.4; at least 16 characters)")
    idle_timeout: float = Field(default=60.0, gt=0,
                                description="a session ends after this long silent")
    reassembly_timeout: float = Field(default=30.0, gt=0,
                                      description="incomplete split messages expire")
    reassembly_bytes: int = Field(default=64 << 20, ge=1 << 16,
                                  description="split parts held, all peers")
    max_sessions: int = Field(default=1024, ge=1)
    hold_events: int = Field(default=10_000, ge=0,
                             description="events held per session before its header")
    hold_bytes: int = Field(default=1 << 20, ge=0,
                            description="bytes of events held per session before its header")
    hold_bytes_total: int = Field(default=64 << 20, ge=0,
                                  description="bytes of events held before their header, all peers")
    dedupe: int = Field(default=4096, ge=0,
                        description="recent event records compared for duplicates")
    queue: int = Field(default=65536, ge=1, description="datagrams waiting to be decoded")
    queue_bytes: int = Field(default=32 << 20, ge=1 << 16, description="bytes of datagrams waiting")
    receive_buffer: int = Field(default=4 << 20, ge=1 << 16,
                                description="socket receive buffer asked of the kernel (bytes)")
    once: bool = Field(default=False, description="stop after the first session ends")

    @field_validator("allow")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for text in value:
            try:
                ipaddress.ip_network(text, strict=False)
            except ValueError:
                raise ValueError(f"allow: {text!r} is not a network (like 10.0.0.0/8 or "
                                 f"fd00::/8) or an address") from None
        return value

    @field_validator("secret")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            datagram_key(value.get_secret_value())    # raises if too short
        return value


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, source: MonitorUdpSource):
        self.source = source

    def datagram_received(self, data: bytes, addr) -> None:
        source = self.source
        if not source.admit(addr):
            return
        cost = len(data) + DATAGRAM_COST
        if source.queued_bytes + cost > source.config.queue_bytes:
            source.dropped_queue_full += 1
            return
        try:
            source.queue.put_nowait((data, addr[:2]))
        except asyncio.QueueFull:
            source.dropped_queue_full += 1
            return
        source.queued_bytes += cost

    def error_received(self, exc: Exception) -> None:
        log.warning("monitor_udp: socket error: %s", exc)


class MonitorUdpSource:
    """The listener: a socket whose callback only queues datagrams (the full
    policy: drop the newest and count), one task that hands them to the
    sessions (ingest/sources/_udp_sessions.py) in batches, and a timer."""

    kind = "monitor_udp"

    def __init__(self, config: MonitorUdpConfig):
        self.config = config
        self.queue: asyncio.Queue[tuple[bytes, Address | None]] = asyncio.Queue(config.queue)
        self.queued_bytes = 0
        self.allow = AllowList(config.allow)
        self.sessions = UdpSessions(config, self.kind)
        self.dropped_queue_full = 0
        self.refused_address = 0      # datagrams from senders outside ``allow``
        self.address: tuple | None = None   # bound (host, port), once listening

    @property
    def streams(self) -> int:
        """Streams opened so far (every source counts them)."""
        return self.sessions.streams

    async def run(self, opener: Opener) -> None:
        loop = asyncio.get_running_loop()
        cfg = self.config
        sessions = self.sessions
        sessions.opener = opener
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self), sock=self._socket())
        self.address = transport.get_extra_info("sockname")[:2]
        log.info("monitor_udp: listening on %s:%d (senders from %s%s)", *self.address,
                 ", ".join(cfg.allow) or "nowhere",
                 "; datagrams must carry the shared secret's tag" if sessions.key else "")
        sweeper = asyncio.create_task(self._sweep(), name="monitor_udp:sweep")
        try:
            while not (cfg.once and sessions.ended_streams):
                batch = [await self.queue.get()]
                while len(batch) < 1024 and not self.queue.empty():
                    batch.append(self.queue.get_nowait())
                now = loop.time()
                for data, addr in batch:
                    if addr is not None:     # (None: the sweeper's wake-up call)
                        self.queued_bytes -= len(data) + DATAGRAM_COST
                        sessions.receive(data, addr, now)
                sessions.flush()
        finally:
            sweeper.cancel()
            transport.close()
            sessions.end_all()
            log.info("monitor_udp: stopped: %s", ", ".join(
                f"{v} {k}" for k, v in self.totals().items()))

    def totals(self) -> dict[str, int]:
        """What the listener did, and what it refused, since it started."""
        s = self.sessions.totals()
        return {"streams": s.pop("streams"), "refused (not in allow)": self.refused_address,
                "unauthenticated": s.pop("unauthenticated"),
                "invalid from senders without a session":
                    s.pop("invalid from senders without a session"),
                "bad from senders with a session": s.pop("bad from senders with a session"),
                "dropped (queue full)": self.dropped_queue_full, **s}

    def _socket(self) -> socket.socket:
        """A bound socket with a large receive buffer: bursts of datagrams
        wait in the kernel, not dropped, while a big one is decoded."""
        cfg = self.config
        family = socket.AF_INET6 if ":" in cfg.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, cfg.receive_buffer)
            sock.bind((cfg.host, cfg.port))
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        return sock

    async def _sweep(self) -> None:
        """End idle sessions and expire old split messages, once a second."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(1.0, self.config.idle_timeout / 2))
            self.sessions.expire(loop.time())
            if self.config.once and self.sessions.ended_streams:
                self.queue.put_nowait((b"", None))   # wake the reader so run() returns

    def admit(self, addr) -> bool:
        """Is the sender in ``allow``?  Counted and logged (sparsely) if not."""
        if addr is None:
            return True
        host = addr[0]
        ok = host in self.allow
        if not ok:
            self.refused_address += 1
            if sparse(self.refused_address):
                log.warning("monitor_udp: datagram from %s refused: not in the allow list "
                            "(%d refused so far)", host, self.refused_address)
        return ok
