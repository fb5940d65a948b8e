"""``monitor_udp``: listen for monitor messages as datagrams (spec 3.3).

Each datagram is one CBOR ``ProfileMsg``; each sender address is a session,
ended after ``idle_timeout`` seconds without a datagram, or when it sends a
header that differs from the one it sent before (a new stream from the same
address).  The protocol callback only queues datagrams (a bounded queue:
when it is full, datagrams are dropped and counted); one task decodes them.

Nothing a peer sends can stop the listener: a datagram that is not a valid
message, or that the session cannot use, is dropped, counted and logged
with the peer and the datagram's number (logging is rate-limited per peer).
Split messages share one memory budget across peers; peers beyond
``max_sessions`` are ignored and counted.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import deque
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from protocol.monitor import (Budget, HeaderChanged, MessageError, Reassembler, Session,
                              decode_message)

from .base import Opener, StreamConsumer, StreamInfo

log = logging.getLogger("liveprof.monitor_udp")


class MonitorUdpConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = "0.0.0.0"
    port: int = Field(8242, ge=0, le=65535)
    idle_timeout: float = Field(60.0, gt=0, description="a session ends after this long silent")
    reassembly_timeout: float = Field(30.0, gt=0, description="incomplete split messages expire")
    reassembly_bytes: int = Field(64 << 20, ge=1 << 16, description="split parts held, all peers")
    max_sessions: int = Field(1024, ge=1)
    hold_events: int = Field(10_000, ge=0, description="events held per session before its header")
    dedupe: int = Field(4096, ge=0, description="recent event records compared for duplicates")
    queue: int = Field(65536, ge=1, description="datagrams waiting to be decoded")
    receive_buffer: int = Field(4 << 20, ge=1 << 16,
                                description="socket receive buffer asked of the kernel (bytes)")
    once: bool = Field(False, description="stop after the first session ends")


@dataclass
class PeerStats:
    datagrams: int = 0
    bad: int = 0
    logged: int = 0


@dataclass
class _Peer:
    address: str
    session: Session
    consumer: StreamConsumer
    last_seen: float
    stats: PeerStats = field(default_factory=PeerStats)
    out: list[bytes] = field(default_factory=list)     # bytes of the current batch


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, source: "MonitorUdpSource"):
        self.source = source

    def datagram_received(self, data: bytes, addr) -> None:
        try:
            self.source.queue.put_nowait((data, addr))
        except asyncio.QueueFull:
            self.source.dropped_queue_full += 1

    def error_received(self, exc: Exception) -> None:
        log.warning("monitor_udp: socket error: %s", exc)


class MonitorUdpSource:
    kind = "monitor_udp"
    LOG_PER_PEER = 20     # bad datagrams logged per session; the rest are only counted

    def __init__(self, config: MonitorUdpConfig):
        self.config = config
        self.queue: asyncio.Queue = asyncio.Queue(config.queue)
        self.budget = Budget(config.reassembly_bytes)
        self.peers: dict[tuple, _Peer] = {}
        self.streams = 0
        self.dropped_queue_full = 0
        self.dropped_sessions = 0     # datagrams from peers beyond max_sessions
        self.bad_datagrams = 0
        self.address: tuple | None = None   # bound (host, port), once listening
        self.ended: deque[dict] = deque(maxlen=100)   # summaries of the last sessions
        self._ended = 0

    async def run(self, opener: Opener) -> None:
        loop = asyncio.get_running_loop()
        cfg = self.config
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self), sock=self._socket())
        self.address = transport.get_extra_info("sockname")[:2]
        log.info("monitor_udp: listening on %s:%d", *self.address)
        sweeper = asyncio.create_task(self._sweep(), name="monitor_udp:sweep")
        try:
            while not (cfg.once and self._ended):
                batch = [await self.queue.get()]
                while len(batch) < 1024 and not self.queue.empty():
                    batch.append(self.queue.get_nowait())
                now = loop.time()
                for data, addr in batch:
                    self._datagram(data, addr, opener, now)
                self._flush()
        finally:
            sweeper.cancel()
            transport.close()
            for key in list(self.peers):
                self._end(key, None)

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
            now = loop.time()
            for key, peer in list(self.peers.items()):
                peer.session.expire(now)
                if now - peer.last_seen > self.config.idle_timeout:
                    self._end(key, None)
            if self.config.once and self._ended:
                self.queue.put_nowait((b"", None))   # wake the reader so run() returns

    def _datagram(self, data: bytes, addr, opener: Opener, now: float) -> None:
        if addr is None:
            return
        key = addr[:2]
        peer = self.peers.get(key)
        if peer is None:
            if len(self.peers) >= self.config.max_sessions:
                self.dropped_sessions += 1
                return
            peer = self._start(key, opener, now)
        peer.last_seen = now
        peer.stats.datagrams += 1
        try:
            msg = decode_message(data)
            out = peer.session.receive(msg, now)
        except HeaderChanged:
            self._end(key, None)
            log.info("monitor_udp %s: a different header: new session", peer.address)
            peer = self._start(key, opener, now)
            try:
                out = peer.session.receive(msg, now)
            except MessageError as exc:
                self._bad(peer, exc)
                return
        except MessageError as exc:
            self._bad(peer, exc)
            return
        if out:
            peer.out.append(out)
        evicted = peer.session.reassembler.stats.evicted
        if evicted and evicted & (evicted - 1) == 0:   # 1, 2, 4, 8, ...: log sparsely
            log.warning("monitor_udp %s: too many incomplete split messages; %d dropped "
                        "(oldest first) to stay within the memory bound", peer.address, evicted)

    def _start(self, key: tuple, opener: Opener, now: float) -> _Peer:
        cfg = self.config
        self.streams += 1
        address = f"[{key[0]}]:{key[1]}" if ":" in key[0] else f"{key[0]}:{key[1]}"
        reassembler = Reassembler(timeout=cfg.reassembly_timeout, budget=self.budget)
        session = Session(datagram=True, hold_events=cfg.hold_events, dedupe=cfg.dedupe,
                          reassembler=reassembler)
        consumer = opener(StreamInfo(self.kind, address, self.streams))
        peer = self.peers[key] = _Peer(address, session, consumer, now)
        return peer

    def _bad(self, peer: _Peer, exc: Exception) -> None:
        self.bad_datagrams += 1
        peer.stats.bad += 1
        if peer.stats.logged < self.LOG_PER_PEER:
            peer.stats.logged += 1
            more = "; further bad datagrams from it are only counted" \
                if peer.stats.logged == self.LOG_PER_PEER else ""
            log.error("monitor_udp %s: datagram #%d dropped: %s%s", peer.address,
                      peer.stats.datagrams, exc, more)

    def _flush(self) -> None:
        """Hand each peer's bytes from one batch of datagrams on in one call."""
        for peer in self.peers.values():
            if peer.out:
                data = b"".join(peer.out)
                peer.out.clear()
                peer.consumer.data(data)

    def _end(self, key: tuple, error: str | None) -> None:
        peer = self.peers.pop(key)
        if peer.out:
            peer.consumer.data(b"".join(peer.out))
        s, r = peer.session.stats, peer.session.reassembler
        lost = r.clear()
        summary = {
            "peer": peer.address, "events": s.events, "datagrams": peer.stats.datagrams,
            "bad_datagrams": peer.stats.bad, "duplicate_events": s.duplicate_events,
            "events_without_header": s.dropped_before_header + peer.session.held,
            "split_messages_lost": r.stats.expired + r.stats.evicted + lost}
        log.info("monitor_udp %s: session ended: %s", peer.address,
                 ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in summary.items() if k != "peer"))
        self.ended.append(summary)
        self._ended += 1
        peer.consumer.end(error)
