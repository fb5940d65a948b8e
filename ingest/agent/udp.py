"""The agent's datagram side: send each run to collectors (spec 3.3).

For each ``--send`` target and each run, one UDP socket (a new source port
per run, so a collector sees each run as its own session even when the
program's header is the same).  Messages (at most ``max_size`` payload
bytes each, split per spec 7.1) are packed, whole, into datagrams of fewer
than ``DATAGRAM_LIMIT`` bytes (docs/monitor-protocol.md 3.3: a packed
datagram is a CBOR sequence); they go out as soon as the agent has handled
the bytes it read (the loop's next turn: a partly filled datagram then too)
and at a run's end.  ``pack=False`` (``--no-pack``) sends one
message a datagram, for collectors that predate packing.  Each datagram is
tagged with the shared secret's HMAC when there is one (3.4), and sent
``redundancy`` times (a receiver drops the duplicates): the copies of a
datagram go out within ``COPY_SPAN`` datagrams of each other, so that the
receiver's duplicate window (4096 events) still holds its events.  The snapshot and the header go first, and
again every ``repeat`` seconds, so a collector that starts late or restarts
joins within that time.

Pacing and full policy: datagrams wait in one queue, bounded in bytes
(``queue_bytes``; beyond, the newest are dropped and counted), and go out at
most ``rate`` datagrams a second, a token bucket (at most ``rate x TICK``
at once; a block of the program is a burst of datagrams: those held back
go out a tick at a time, so a collector's socket buffer takes them); a datagram the
kernel will not take now (socket buffer full) is dropped and counted; a
collector that is down (ICMP port unreachable) costs a counter.  Memory is
bounded whatever the collectors do, and the core never waits.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable

from protocol.monitor import TAG_SIZE, datagrams, pack_datagrams

from ._send import send_all
from .core import Counters, Run

log = logging.getLogger("liveprof.agent")

DATAGRAM_LIMIT = 1400   # every datagram (tag included) is shorter (spec 3.3 rule 2)
TICK = 0.002            # the pump's tick (s): datagrams held back by the rate wait this long
COPY_SPAN = 32          # redundancy: datagrams sent before the next copy of the same ones


class _Target:
    def __init__(self, host: str, port: int):
        self.host = host
        self.port = port
        self.name = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.sock: socket.socket | None = None
        self.refused = 0

    def open(self, send_buffer: int) -> None:
        self.close()
        family, kind, proto, _, addr = socket.getaddrinfo(self.host, self.port,
                                                          type=socket.SOCK_DGRAM)[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
            sock.setblocking(False)
            sock.connect(addr)
        except OSError:
            sock.close()
            raise
        self.sock = sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class UdpOut:
    def __init__(self, targets: list[tuple[str, int]], counters: Counters, *,
                 key: bytes | None = None, redundancy: int = 1, repeat: float = 2.0,
                 send_buffer: int = 4 << 20, rate: float = 50_000.0,
                 queue_bytes: int = 16 << 20, pack: bool = True):
        self.targets = [_Target(h, p) for h, p in targets]
        self.counters = counters
        self.key = key
        self.redundancy = max(1, redundancy)
        self.repeat = repeat
        self.send_buffer = send_buffer
        self.rate = rate
        self.queue_bytes = queue_bytes
        self.pack = pack
        self._room = DATAGRAM_LIMIT - 1 - (TAG_SIZE if key else 0)   # message bytes a datagram
        self._open: list[bytes] = []       # messages of the datagram being filled
        self._open_size = 0
        self.run: Run | None = None
        self._repeater: asyncio.Task | None = None
        self._pump: asyncio.Task | None = None
        # datagrams, and socket changes (a new run: new sockets) in their order
        self._queue: deque[bytes | Callable[[], None]] = deque()
        self._queued = 0
        self._budget = max(1.0, rate * TICK)   # datagrams that may go now (a token bucket)
        self._last = time.monotonic()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._kicked = False               # a flush is scheduled
        self._wake = asyncio.Event()       # the pump: the rate held datagrams back
        self._empty = asyncio.Event()      # set when everything queued is sent

    async def start(self) -> None:
        for t in self.targets:
            socket.getaddrinfo(t.host, t.port, type=socket.SOCK_DGRAM)   # fails early if unknown
        log.info("agent: sending datagrams to %s (redundancy %d, snapshot and header every "
                 "%.1f s%s%s)", ", ".join(t.name for t in self.targets), self.redundancy,
                 self.repeat, ", signed" if self.key else "",
                 ", packed" if self.pack else ", one message a datagram")
        self._loop = asyncio.get_running_loop()
        self._repeater = asyncio.create_task(self._repeat(), name="agent:udp-repeat")
        self._pump = asyncio.create_task(self._send_queue(), name="agent:udp-send")

    async def close(self, drain: float = 5.0) -> None:
        """Send what is queued (up to ``drain`` seconds), then stop."""
        if self._repeater is not None:
            self._repeater.cancel()
        self._flush()
        if self._queue:
            self._empty.clear()
            self._wake.set()
            try:
                await asyncio.wait_for(self._empty.wait(), drain)
            except TimeoutError:
                log.warning("agent: %d datagrams not sent at the stop", len(self._queue))
        if self._pump is not None:
            self._pump.cancel()
        for t in self.targets:
            t.close()

    def _put(self, item: Callable[[], None]) -> None:
        """A socket change, in its place among the datagrams."""
        self._seal()
        self._queue.append(item)
        self._kick()

    def _send(self, bodies: list[bytes]) -> None:
        if self.pack:
            bodies = self._packed(bodies)
            if not bodies:
                self._kick()
                return
        self._queue_datagrams(datagrams(bodies, self.key))

    def _packed(self, bodies: list[bytes]) -> list[bytes]:
        """Add ``bodies`` to the datagram being filled; returns the datagrams
        (message bytes) filled up meanwhile.  A message never spans two."""
        full, self._open, self._open_size = pack_datagrams(self._open, self._open_size, bodies,
                                                           self._room)
        return full

    def _seal(self) -> None:
        """Queue the datagram being filled (a flush, a socket change, the stop)."""
        if self._open:
            body = b"".join(self._open)
            self._open, self._open_size = [], 0
            self._queue_datagrams(datagrams([body], self.key))

    def _queue_datagrams(self, grams: list[bytes]) -> None:
        size = sum(map(len, grams))
        if self._queued + size > self.queue_bytes:
            self.counters.datagrams_dropped += len(grams) * self.redundancy * len(self.targets)
            return
        self._queued += size
        self._queue.extend(grams)
        self._kick()

    def _kick(self) -> None:
        """Flush once the loop is back: the core has then handled all it read,
        so the datagram being filled is as full as it will get."""
        if not self._kicked and self._loop is not None:
            self._kicked = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Seal the datagram being filled and send what the rate allows now; the
        pump sends the rest, a tick at a time."""
        self._seal()                 # (before the flag: sealing asks no other flush)
        self._kicked = False
        if self._drain(max(1.0, self.rate * TICK)):
            self._wake.set()

    def _drain(self, burst: float) -> bool:
        """Send from the queue while the budget (refilled at ``rate``, up to
        ``burst``) lasts; True if some is left."""
        queue, now = self._queue, time.monotonic()
        budget = min(self._budget + (now - self._last) * self.rate, burst)
        self._last = now
        batch: list[bytes] = []
        while queue and budget >= 1:
            item = queue.popleft()
            if isinstance(item, bytes):
                batch.append(item)
                budget -= 1
            else:
                self._send_batch(batch)
                batch = []
                item()
        self._send_batch(batch)
        self._budget = budget
        if queue:
            return True
        self._empty.set()
        return False

    async def _send_queue(self) -> None:
        """The datagrams the rate held back: a tick at a time, at most ``rate``
        a second."""
        while True:
            self._wake.clear()
            await self._wake.wait()
            while True:
                await asyncio.sleep(TICK)
                self._seal()
                if not self._drain(max(1.0, self.rate * TICK * 5)):
                    break

    async def _repeat(self) -> None:
        while True:
            await asyncio.sleep(self.repeat)
            if self.run is not None:
                self._send(self.run.snapshot())

    def _send_batch(self, batch: list[bytes]) -> None:
        if not batch:
            return
        self._queued -= sum(map(len, batch))
        span = COPY_SPAN if self.redundancy > 1 else len(batch)
        for t in self.targets:
            if t.sock is not None:
                for start in range(0, len(batch), span):
                    self._send_copies(t, batch[start:start + span])

    def _send_copies(self, t: _Target, batch: list[bytes]) -> None:
        """``batch`` to one collector, ``redundancy`` times over."""
        c = self.counters
        assert t.sock is not None
        sock, n = t.sock, len(batch)
        for _ in range(self.redundancy):
            at = 0
            while at < n:
                stop, err = send_all(sock, batch, at)
                c.datagrams += stop - at
                if stop == n:
                    break
                at = stop + 1                    # (that one is not sent)
                if err in (errno.EAGAIN, errno.EWOULDBLOCK):
                    c.datagrams_dropped += 1     # the socket buffer is full
                    continue
                c.send_errors += 1               # refused (collector down), unreachable
                t.refused += 1
                if t.refused & (t.refused - 1) == 0:
                    log.warning("agent: collector %s: %s (%d such so far)", t.name,
                                os.strerror(err), t.refused)

    # -- Output --------------------------------------------------------------------------

    def _open_all(self) -> None:
        for t in self.targets:
            try:
                t.open(self.send_buffer)
            except OSError as exc:
                log.error("agent: collector %s: cannot open a socket: %s", t.name, exc)

    def _close_all(self) -> None:
        for t in self.targets:
            t.close()

    def run_started(self, run: Run) -> None:
        self.run = run
        self._put(self._open_all)
        self._send(run.snapshot())

    def unit(self, bodies: list[bytes]) -> None:
        if self.run is not None:
            self._send(bodies)

    def run_ended(self, run: Run) -> None:
        if self.run is run:
            self.run = None
            self._put(self._close_all)
