"""``monitor_udp``: listen for monitor messages as datagrams (spec 3.3).

Each datagram is one CBOR ``ProfileMsg``; each sender address is a session,
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
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

from protocol.monitor import (
    DEFAULT_ALLOW,
    AllowList,
    AuthError,
    Budget,
    HeaderChanged,
    MessageError,
    Reassembler,
    Session,
    datagram_key,
    decode_message,
    verify_datagram,
)

from .base import Opener, StreamConsumer, StreamInfo

log = logging.getLogger("liveprof.monitor_udp")

SENDER_REASSEMBLY = 4 << 20   # split-message bytes one sender may hold
DATAGRAM_COST = 128           # bytes charged per queued datagram beyond its data


class MonitorUdpConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    host: str = "0.0.0.0"
    port: int = Field(8242, ge=0, le=65535)
    allow: list[str] = Field(default_factory=lambda: list(DEFAULT_ALLOW),
                             description="sender networks heard (default: loopback and private "
                                         "ranges; [\"0.0.0.0/0\", \"::/0\"] hears everyone)")
    secret: SecretStr | None = Field(
        None, description="shared secret: every datagram must carry its HMAC-SHA256 tag "
                          "(docs/monitor-protocol.md 3.4; at least 16 characters)")
    idle_timeout: float = Field(60.0, gt=0, description="a session ends after this long silent")
    reassembly_timeout: float = Field(30.0, gt=0, description="incomplete split messages expire")
    reassembly_bytes: int = Field(64 << 20, ge=1 << 16, description="split parts held, all peers")
    max_sessions: int = Field(1024, ge=1)
    hold_events: int = Field(10_000, ge=0, description="events held per session before its header")
    hold_bytes: int = Field(1 << 20, ge=0, description="bytes of events held per session before "
                                                       "its header")
    hold_bytes_total: int = Field(64 << 20, ge=0, description="bytes of events held before their "
                                                              "header, all peers")
    dedupe: int = Field(4096, ge=0, description="recent event records compared for duplicates")
    queue: int = Field(65536, ge=1, description="datagrams waiting to be decoded")
    queue_bytes: int = Field(32 << 20, ge=1 << 16, description="bytes of datagrams waiting")
    receive_buffer: int = Field(4 << 20, ge=1 << 16,
                                description="socket receive buffer asked of the kernel (bytes)")
    once: bool = Field(False, description="stop after the first session ends")

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


@dataclass
class PeerStats:
    datagrams: int = 0
    bad: int = 0
    unauthenticated: int = 0
    logged: int = 0


@dataclass
class _Peer:
    key: tuple
    address: str
    session: Session
    last_seen: float
    consumer: StreamConsumer | None = None      # opened with the first bytes
    failed: bool = False                         # its consumer raised
    stats: PeerStats = field(default_factory=PeerStats)
    out: list[bytes] = field(default_factory=list)     # bytes of the current batch


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
            source.queue.put_nowait((data, addr))
        except asyncio.QueueFull:
            source.dropped_queue_full += 1
            return
        source.queued_bytes += cost

    def error_received(self, exc: Exception) -> None:
        log.warning("monitor_udp: socket error: %s", exc)


def _sparse(count: int) -> bool:
    """Log the 1st, 2nd, 4th, 8th... occurrence only."""
    return count & (count - 1) == 0


class MonitorUdpSource:
    kind = "monitor_udp"
    LOG_PER_PEER = 20     # bad datagrams logged per session; the rest are only counted

    def __init__(self, config: MonitorUdpConfig):
        self.config = config
        self.queue: asyncio.Queue = asyncio.Queue(config.queue)
        self.queued_bytes = 0
        self.budget = Budget(config.reassembly_bytes)
        self.hold_budget = Budget(config.hold_bytes_total)
        self.key = datagram_key(config.secret.get_secret_value()) if config.secret else None
        self.allow = AllowList(config.allow)
        self.peers: dict[tuple, _Peer] = {}
        self._headerless: OrderedDict[tuple, None] = OrderedDict()   # oldest first
        self.streams = 0
        self.dropped_queue_full = 0
        self.dropped_sessions = 0     # valid datagrams from new peers while every slot was taken
        self.evicted_sessions = 0     # headerless sessions ended to make room for a new peer
        self.bad_datagrams = 0
        self.refused_address = 0      # datagrams from senders outside ``allow``
        self.unauthenticated = 0      # datagrams without a valid tag (with a secret)
        self.invalid_strangers = 0    # invalid datagrams from senders without a session
        self.consumer_failures = 0
        self.address: tuple | None = None   # bound (host, port), once listening
        self.ended: deque[dict] = deque(maxlen=100)   # summaries of the last sessions
        self._ended = 0
        self._opener: Opener | None = None

    async def run(self, opener: Opener) -> None:
        loop = asyncio.get_running_loop()
        cfg = self.config
        self._opener = opener
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Protocol(self), sock=self._socket())
        self.address = transport.get_extra_info("sockname")[:2]
        log.info("monitor_udp: listening on %s:%d (senders from %s%s)", *self.address,
                 ", ".join(cfg.allow) or "nowhere",
                 "; datagrams must carry the shared secret's tag" if self.key else "")
        sweeper = asyncio.create_task(self._sweep(), name="monitor_udp:sweep")
        try:
            while not (cfg.once and self._ended):
                batch = [await self.queue.get()]
                while len(batch) < 1024 and not self.queue.empty():
                    batch.append(self.queue.get_nowait())
                now = loop.time()
                for data, addr in batch:
                    if addr is not None:     # (None: the sweeper's wake-up call)
                        self.queued_bytes -= len(data) + DATAGRAM_COST
                        self._datagram(data, addr, now)
                self._flush()
        finally:
            sweeper.cancel()
            transport.close()
            for key in list(self.peers):
                self._end(key, None)
            log.info("monitor_udp: stopped: %s", ", ".join(
                f"{v} {k}" for k, v in self.totals().items()))

    def totals(self) -> dict[str, int]:
        """What the listener did, and what it refused, since it started."""
        return {"streams": self.streams, "refused (not in allow)": self.refused_address,
                "unauthenticated": self.unauthenticated,
                "invalid from senders without a session": self.invalid_strangers,
                "bad from senders with a session": self.bad_datagrams,
                "dropped (queue full)": self.dropped_queue_full,
                "dropped (no session slot)": self.dropped_sessions,
                "sessions evicted (no header)": self.evicted_sessions,
                "consumer failures": self.consumer_failures}

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

    def admit(self, addr) -> bool:
        """Is the sender in ``allow``?  Counted and logged (sparsely) if not."""
        if addr is None:
            return True
        host = addr[0]
        ok = host in self.allow
        if not ok:
            self.refused_address += 1
            if _sparse(self.refused_address):
                log.warning("monitor_udp: datagram from %s refused: not in the allow list "
                            "(%d refused so far)", host, self.refused_address)
        return ok

    def _datagram(self, data: bytes, addr, now: float) -> None:
        key = addr[:2]
        peer = self.peers.get(key)
        if peer is not None:
            peer.last_seen = now
            peer.stats.datagrams += 1
        body = data
        if self.key is not None:
            try:
                body = verify_datagram(data, self.key)
            except AuthError as exc:
                self.unauthenticated += 1
                if peer is not None:
                    peer.stats.unauthenticated += 1
                if _sparse(self.unauthenticated):
                    log.warning("monitor_udp %s:%s: datagram dropped: %s (%d unauthenticated "
                                "so far)", key[0], key[1], exc, self.unauthenticated)
                return
        try:
            msg = decode_message(body)
        except MessageError as exc:
            if peer is None:
                self.invalid_strangers += 1
                if _sparse(self.invalid_strangers):
                    log.warning("monitor_udp %s:%s: datagram dropped, no session for it: %s "
                                "(%d such so far)", key[0], key[1], exc, self.invalid_strangers)
            else:
                self._bad(peer, exc)
            return
        if peer is None:
            peer = self._start(key, now)
            if peer is None:
                return
            peer.stats.datagrams += 1
        try:
            out = peer.session.receive(msg, now)
        except HeaderChanged:
            self._end(key, None)
            log.info("monitor_udp %s: a different header: new session", peer.address)
            peer = self._start(key, now)
            if peer is None:
                return
            peer.stats.datagrams += 1
            try:
                out = peer.session.receive(msg, now)
            except MessageError as exc:
                out = exc.data
                self._bad(peer, exc)
        except MessageError as exc:
            out = exc.data      # what the session made before it failed is good
            self._bad(peer, exc)
        if out:
            peer.out.append(out)
        if peer.session.header_done:
            self._headerless.pop(key, None)
        evicted = peer.session.reassembler.stats.evicted
        if evicted and _sparse(evicted):
            log.warning("monitor_udp %s: too many incomplete split messages; %d dropped "
                        "(oldest first) to stay within the memory bound", peer.address, evicted)

    def _start(self, key: tuple, now: float) -> _Peer | None:
        cfg = self.config
        if len(self.peers) >= cfg.max_sessions:
            if not self._headerless:
                self.dropped_sessions += 1
                if _sparse(self.dropped_sessions):
                    log.warning("monitor_udp: all %d session slots taken by senders with a "
                                "header; datagrams from %s:%s dropped (%d so far)",
                                cfg.max_sessions, key[0], key[1], self.dropped_sessions)
                return None
            oldest = next(iter(self._headerless))
            self.evicted_sessions += 1
            self._end(oldest, "session slots full: ended (no header yet) for a new sender")
        address = f"[{key[0]}]:{key[1]}" if ":" in key[0] else f"{key[0]}:{key[1]}"
        reassembler = Reassembler(timeout=cfg.reassembly_timeout, budget=self.budget,
                                  max_bytes=SENDER_REASSEMBLY)
        session = Session(datagram=True, hold_events=cfg.hold_events, hold_bytes=cfg.hold_bytes,
                          hold_budget=self.hold_budget, dedupe=cfg.dedupe,
                          reassembler=reassembler)
        peer = self.peers[key] = _Peer(key, address, session, now)
        self._headerless[key] = None
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
        for key, peer in list(self.peers.items()):
            if peer.out and not self._deliver(peer):
                self._end(key, None)

    def _deliver(self, peer: _Peer) -> bool:
        """Pass the peer's pending bytes on, opening its stream first if need be;
        False if its consumer failed (logged): that session must end, the
        others carry on."""
        data = b"".join(peer.out)
        peer.out.clear()
        try:
            if peer.consumer is None:
                self.streams += 1
                peer.consumer = self._opener(StreamInfo(self.kind, peer.address, self.streams))
            peer.consumer.data(data)
            return True
        except Exception as exc:
            self.consumer_failures += 1
            peer.failed = True
            log.exception("monitor_udp %s: the consumer of its stream failed (%r); ending "
                          "this session only", peer.address, exc)
            return False

    def _end(self, key: tuple, error: str | None) -> None:
        peer = self.peers.pop(key)
        self._headerless.pop(key, None)
        if peer.out and not peer.failed:
            self._deliver(peer)
        if peer.failed:
            error = "its consumer failed"
        s, r = peer.session.stats, peer.session.reassembler
        waiting = peer.session.close()
        lost = r.clear()
        summary = {
            "peer": peer.address, "events": s.events, "datagrams": peer.stats.datagrams,
            "bad_datagrams": peer.stats.bad, "duplicate_events": s.duplicate_events,
            "events_without_header": s.dropped_before_header + waiting,
            "bad_held_events": s.bad_held_events,
            "unauthenticated": peer.stats.unauthenticated,
            "split_messages_lost": r.stats.expired + r.stats.evicted + lost}
        self.ended.append(summary)
        if peer.consumer is None:
            # never had a header: nothing went downstream
            log.debug("monitor_udp %s: session ended without a header (%s)", peer.address,
                      error or "idle")
            return
        log.info("monitor_udp %s: session ended: %s%s", peer.address,
                 ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in summary.items() if k != "peer"),
                 f" ({error})" if error else "")
        self._ended += 1
        try:
            peer.consumer.end(error)
        except Exception as exc:
            self.consumer_failures += 1
            log.exception("monitor_udp %s: the consumer failed at the end of its stream: %r",
                          peer.address, exc)
