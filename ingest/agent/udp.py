"""The agent's datagram side: send each run to collectors (spec 3.3).

For each ``--send`` target and each run, one UDP socket (a new source port
per run, so a collector sees each run as its own session even when the
program's header is the same).  Every message is one datagram (at most
``max_size`` payload bytes, split per spec 7.1), tagged with the shared
secret's HMAC when there is one (3.4), and sent ``redundancy`` times (a
receiver drops the duplicates).  The snapshot and the header go first, and
again every ``repeat`` seconds, so a collector that starts late or restarts
joins within that time.

Pacing and full policy: datagrams wait in one queue, bounded in bytes
(``queue_bytes``; beyond, the newest are dropped and counted), and go out at
most ``rate`` messages a second (a block of the program is a burst of
datagrams: spread out, a collector's socket buffer takes it); a datagram the
kernel will not take now (socket buffer full) is dropped and counted; a
collector that is down (ICMP port unreachable) costs a counter.  Memory is
bounded whatever the collectors do, and the core never waits.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import deque
from collections.abc import Callable

from protocol.monitor import datagrams

from .core import Counters, Run

log = logging.getLogger("liveprof.agent")


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
                 queue_bytes: int = 16 << 20):
        self.targets = [_Target(h, p) for h, p in targets]
        self.counters = counters
        self.key = key
        self.redundancy = max(1, redundancy)
        self.repeat = repeat
        self.send_buffer = send_buffer
        self.rate = rate
        self.queue_bytes = queue_bytes
        self.run: Run | None = None
        self._repeater: asyncio.Task | None = None
        self._pump: asyncio.Task | None = None
        # datagrams, and socket changes (a new run: new sockets) in their order
        self._queue: deque[bytes | Callable[[], None]] = deque()
        self._queued = 0
        self._wake = asyncio.Event()
        self._empty = asyncio.Event()      # set when the pump has sent everything

    async def start(self) -> None:
        for t in self.targets:
            socket.getaddrinfo(t.host, t.port, type=socket.SOCK_DGRAM)   # fails early if unknown
        log.info("agent: sending datagrams to %s (redundancy %d, snapshot and header every "
                 "%.1f s%s)", ", ".join(t.name for t in self.targets), self.redundancy,
                 self.repeat, ", signed" if self.key else "")
        self._repeater = asyncio.create_task(self._repeat(), name="agent:udp-repeat")
        self._pump = asyncio.create_task(self._send_queue(), name="agent:udp-send")

    async def close(self, drain: float = 5.0) -> None:
        """Send what is queued (up to ``drain`` seconds), then stop."""
        if self._repeater is not None:
            self._repeater.cancel()
        if self._queue:
            self._empty.clear()
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
        self._queue.append(item)
        self._wake.set()

    def _send(self, bodies: list[bytes]) -> None:
        grams = datagrams(bodies, self.key)
        size = sum(map(len, grams))
        if self._queued + size > self.queue_bytes:
            self.counters.datagrams_dropped += len(grams) * self.redundancy * len(self.targets)
            return
        self._queued += size
        self._queue.extend(grams)
        self._wake.set()

    async def _send_queue(self) -> None:
        """Send the queue, at most ``rate`` datagrams a second."""
        queue, tick = self._queue, 0.002
        budget, last = 0.0, time.monotonic()
        while True:
            if not queue:
                self._empty.set()
                self._wake.clear()
                await self._wake.wait()
                budget, last = 0.0, time.monotonic()
            now = time.monotonic()
            budget = min(budget + (now - last) * self.rate, max(1.0, self.rate * 0.01))
            last = now
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
            await asyncio.sleep(tick)

    async def _repeat(self) -> None:
        while True:
            await asyncio.sleep(self.repeat)
            if self.run is not None:
                self._send(self.run.snapshot())

    def _send_batch(self, batch: list[bytes]) -> None:
        if not batch:
            return
        self._queued -= sum(map(len, batch))
        c = self.counters
        for t in self.targets:
            if t.sock is None:
                continue
            send = t.sock.send
            for _ in range(self.redundancy):
                sent = 0
                for d in batch:
                    try:
                        send(d)
                        sent += 1
                    except BlockingIOError:
                        c.datagrams_dropped += 1
                    except OSError as exc:     # refused (collector down), unreachable
                        c.send_errors += 1
                        t.refused += 1
                        if t.refused & (t.refused - 1) == 0:
                            log.warning("agent: collector %s: %s (%d such so far)", t.name,
                                        exc.strerror or exc, t.refused)
                c.datagrams += sent

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
