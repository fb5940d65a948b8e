"""The sessions of the datagram listener (``monitor_udp``), one per sender
address: what each datagram does to them, apart from the socket and its queue.

No IO and no clock: the listener hands in each datagram with the time it was
taken, calls ``flush()`` after each batch, and ``expire(now)`` from its timer.
The policy (see ``monitor_udp``'s docstring for the whole of it):

* a datagram is checked (the shared secret's tag, when there is one) and
  decoded before it may cost a session; garbage from a sender without one is
  only counted;
* a sender gets a session for its first valid message, and a stream
  downstream only once that session has events (after its header): by then
  it knows whether they come in blocks (capabilities restored) and, from a
  ``liveprof agent``'s snapshot, its app and host (``monitor_info``);
* blocks whose events do not all come are given out with what they have
  after a short wait (``expire``), their missing events counted;
* when all ``max_sessions`` slots are taken, the oldest session without a
  header gives way to the new sender; if every session has one, the new
  sender's datagrams are dropped and counted;
* a session ends when its sender says its run is over (an agent's end
  record), is silent for ``idle_timeout``, sends a
  different header (a new stream from the same address: a new session), or
  its consumer fails.  A consumer that raises ends its own session (logged,
  naming the peer); the other senders' sessions go on.
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from protocol.monitor import (
    TAG_SIZE,
    AuthError,
    BlockHeader,
    BlockPart,
    Blocks,
    Budget,
    EventMessage,
    HeaderChanged,
    Message,
    MessageError,
    Reassembler,
    Session,
    datagram_key,
    decode_datagram,
    verify_datagram,
)

from .base import Opener, StreamConsumer, monitor_info

if TYPE_CHECKING:
    from .monitor_udp import MonitorUdpConfig

log = logging.getLogger("liveprof.monitor_udp")

SENDER_REASSEMBLY = 4 << 20   # split-message bytes, and block bytes, one sender may hold

Address = tuple[str, int]     # a sender: (host, port)


def sparse(count: int) -> bool:
    """Log the 1st, 2nd, 4th, 8th... occurrence only."""
    return count & (count - 1) == 0


def made_before(exc: MessageError) -> bytes:
    """The bytes ``Session.receive`` made from the messages before the one
    that failed (it sets them on the exception it raises)."""
    data = getattr(exc, "data", b"")
    return data if isinstance(data, bytes) else b""


@dataclass
class PeerStats:
    datagrams: int = 0
    bad: int = 0
    unauthenticated: int = 0
    logged: int = 0


@dataclass
class Peer:
    key: Address
    address: str
    session: Session
    last_seen: float
    consumer: StreamConsumer | None = None      # opened with the first bytes
    failed: bool = False                         # its consumer raised
    stats: PeerStats = field(default_factory=PeerStats)
    out: list[bytes] = field(default_factory=list)     # bytes of the current batch


class UdpSessions:
    """Every sender's session, bounded in count and in bytes held; ``opener``
    gives each session's stream its consumer."""

    LOG_PER_PEER = 20     # bad datagrams logged per session; the rest are only counted

    def __init__(self, config: MonitorUdpConfig, kind: str):
        self.config = config
        self.kind = kind
        self.opener: Opener | None = None
        self.budget = Budget(config.reassembly_bytes)
        self.hold_budget = Budget(config.hold_bytes_total)
        self.key = datagram_key(config.secret.get_secret_value()) if config.secret else None
        self.peers: dict[Address, Peer] = {}
        self._headerless: OrderedDict[Address, None] = OrderedDict()   # oldest first
        self.streams = 0
        self.dropped_sessions = 0     # valid datagrams from new peers while every slot was taken
        self.evicted_sessions = 0     # headerless sessions ended to make room for a new peer
        self.bad_datagrams = 0
        self.unauthenticated = 0      # datagrams without a valid tag (with a secret)
        self.invalid_strangers = 0    # invalid datagrams from senders without a session
        self.consumer_failures = 0
        self.ended: deque[dict] = deque(maxlen=100)   # summaries of the last sessions
        self.ended_streams = 0        # sessions ended that had a stream downstream
        self._finished: OrderedDict[Address, None] = OrderedDict()  # ended by their end record
        self.after_end = 0            # events from those after their end, dropped

    def totals(self) -> dict[str, int]:
        return {"streams": self.streams, "unauthenticated": self.unauthenticated,
                "invalid from senders without a session": self.invalid_strangers,
                "bad from senders with a session": self.bad_datagrams,
                "dropped (no session slot)": self.dropped_sessions,
                "sessions evicted (no header)": self.evicted_sessions,
                "events after their session's end": self.after_end,
                "consumer failures": self.consumer_failures}

    def receive(self, data: bytes, key: Address, now: float) -> None:
        """One datagram from ``key``; its bytes wait for ``flush()``."""
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
                if sparse(self.unauthenticated):
                    log.warning("monitor_udp %s:%s: datagram dropped: %s (%d unauthenticated "
                                "so far)", key[0], key[1], exc, self.unauthenticated)
                return
        msgs, error = decode_datagram(body)
        if error is not None and msgs and self.key is None and len(body) - error.at == TAG_SIZE:
            error = None      # the tag of a signed packed datagram, for a receiver without one
        if not msgs:
            assert error is not None
            if peer is None:
                self.invalid_strangers += 1
                if sparse(self.invalid_strangers):
                    log.warning("monitor_udp %s:%s: datagram dropped, no session for it: %s "
                                "(%d such so far)", key[0], key[1], error,
                                self.invalid_strangers)
            else:
                self._bad(peer, error)
            return
        for msg in msgs:
            peer = self._message(msg, key, peer, now)
        if error is not None:
            if peer is not None:
                self._bad(peer, error)
            else:
                self.invalid_strangers += 1      # the messages before the bad item stand

    def _message(self, msg: Message, key: Address, peer: Peer | None,
                 now: float) -> Peer | None:
        """One message of a datagram from ``key`` (``peer``: its session, if
        any); returns the session for the datagram's next message (None: none
        now, e.g. the run just ended: later messages start over)."""
        if peer is None:
            if key in self._finished and isinstance(msg, (EventMessage, BlockPart, BlockHeader)):
                self.after_end += 1          # the tail (or a copy) of a run that said it ended
                return None
            peer = self._start(key, now)
            if peer is None:
                return None
        try:
            out = peer.session.receive(msg, now)
        except HeaderChanged:
            self._end(key, None)
            log.info("monitor_udp %s: a different header: new session", peer.address)
            peer = self._start(key, now)
            if peer is None:
                return None
            try:
                out = peer.session.receive(msg, now)
            except MessageError as exc:
                out = made_before(exc)
                self._bad(peer, exc)
        except MessageError as exc:
            out = made_before(exc)      # what the session made before it failed is good
            self._bad(peer, exc)
        if out:
            peer.out.append(out)
        if peer.session.header_done:
            self._headerless.pop(key, None)
        if peer.session.ended:          # the sender's end of the run: the session is over
            self._end(key, None)
            self._finished[key] = None
            while len(self._finished) > 4096:
                self._finished.popitem(last=False)
            return None
        evicted = peer.session.reassembler.stats.evicted
        if evicted and sparse(evicted):
            log.warning("monitor_udp %s: too many incomplete split messages; %d dropped "
                        "(oldest first) to stay within the memory bound", peer.address, evicted)
        return peer

    def flush(self) -> None:
        """Hand each peer's bytes from one batch of datagrams on in one call;
        a peer whose consumer fails has its session ended, the others go on."""
        for key, peer in list(self.peers.items()):
            if peer.out and self._ready(peer) and not self._deliver(peer):
                self._end(key, None)

    @staticmethod
    def _ready(peer: Peer) -> bool:
        """Its stream is open, or may open: it had events or blocks."""
        s = peer.session
        return peer.consumer is not None or s.blocks.seen or s.stats.events > 0

    def expire(self, now: float) -> None:
        """End idle sessions, expire old split messages, give out the blocks
        that waited too long for lost events."""
        for key, peer in list(self.peers.items()):
            peer.session.expire(now)
            late = peer.session.flush(now)
            if late:
                peer.out.append(late)
                if self._ready(peer) and not self._deliver(peer):
                    self._end(key, None)
                    continue
            if now - peer.last_seen > self.config.idle_timeout:
                self._end(key, None)

    def end_all(self) -> None:
        for key in list(self.peers):
            self._end(key, None)

    def _start(self, key: Address, now: float) -> Peer | None:
        """A session for the sender of the datagram at hand (counted as its
        first), or None when no slot is free."""
        cfg = self.config
        if len(self.peers) >= cfg.max_sessions:
            if not self._headerless:
                self.dropped_sessions += 1
                if sparse(self.dropped_sessions):
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
                          reassembler=reassembler,
                          blocks=Blocks(max_bytes=SENDER_REASSEMBLY, budget=self.hold_budget))
        peer = self.peers[key] = Peer(key, address, session, now)
        peer.stats.datagrams += 1
        self._headerless[key] = None
        return peer

    def _bad(self, peer: Peer, exc: Exception) -> None:
        self.bad_datagrams += 1
        peer.stats.bad += 1
        if peer.stats.logged < self.LOG_PER_PEER:
            peer.stats.logged += 1
            more = "; further bad datagrams from it are only counted" \
                if peer.stats.logged == self.LOG_PER_PEER else ""
            log.error("monitor_udp %s: datagram #%d dropped: %s%s", peer.address,
                      peer.stats.datagrams, exc, more)

    def _deliver(self, peer: Peer) -> bool:
        """Pass the peer's pending bytes on, opening its stream first if need be;
        False if its consumer failed (logged): that session must end, the
        others carry on."""
        data = b"".join(peer.out)
        peer.out.clear()
        try:
            if peer.consumer is None:
                if self.opener is None:
                    raise RuntimeError("no opener: the listener is not running")
                self.streams += 1
                peer.consumer = self.opener(monitor_info(self.kind, peer.address, self.streams,
                                                         peer.session))
            peer.consumer.data(data)
            return True
        except Exception as exc:
            self.consumer_failures += 1
            peer.failed = True
            log.exception("monitor_udp %s: the consumer of its stream failed (%s); ending "
                          "this session only", peer.address, type(exc).__name__)
            return False

    def _end(self, key: Address, error: str | None) -> None:
        peer = self.peers.pop(key)
        self._headerless.pop(key, None)
        last = peer.session.flush(float("inf"))     # blocks still waiting: as they are
        if last:
            peer.out.append(last)
        if peer.out and not peer.failed:
            self._deliver(peer)
        if peer.failed:
            error = "its consumer failed"
        s, r = peer.session.stats, peer.session.reassembler
        b = peer.session.blocks.stats
        waiting = peer.session.close()
        lost = r.clear()
        summary = {
            "peer": peer.address, "events": s.events, "datagrams": peer.stats.datagrams,
            "bad_datagrams": peer.stats.bad, "duplicate_events": s.duplicate_events,
            "events_without_header": s.dropped_before_header + waiting,
            "bad_held_events": s.bad_held_events,
            "unauthenticated": peer.stats.unauthenticated,
            "split_messages_lost": r.stats.expired + r.stats.evicted + lost,
            "blocks": b.blocks + b.incomplete, "blocks_incomplete": b.incomplete,
            "block_events_missing": b.missing_events,
            "block_events_orphaned": b.orphan_events}
        self.ended.append(summary)
        if peer.consumer is None:
            # never had a header: nothing went downstream
            log.debug("monitor_udp %s: session ended without a header (%s)", peer.address,
                      error or "idle")
            return
        log.info("monitor_udp %s: session ended: %s%s", peer.address,
                 ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in summary.items() if k != "peer"),
                 f" ({error})" if error else "")
        self.ended_streams += 1
        try:
            peer.consumer.end(error)
        except Exception as exc:
            self.consumer_failures += 1
            log.exception("monitor_udp %s: the consumer failed at the end of its stream (%s)",
                          peer.address, type(exc).__name__)
