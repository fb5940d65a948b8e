"""The agent's TCP side: the monitor is the server (spec 2.1, default port 8242).

Every receiver that connects gets, once a run's header is known, the state
snapshot (folded from every event so far, with the agent's identity), the
header, then every unit of events from that moment on: each receiver gets
every event (unlike the 2016 monitor, spec 2.5).  A receiver joins between
units, so at a block boundary.

Full policy: at most ``max_receivers`` at once (more are refused, counted);
each receiver has a queue bounded in bytes (``queue_bytes``,
counting what waits in the transport too; its socket's kernel send buffer
is capped at a quarter of that, at most 1 MiB; every receiver queues the
same bytes objects, so the memory is that of the longest queue, not the
sum); a receiver too slow to keep it
under the bound is disconnected (logged, counted in ``receivers dropped``),
the others never notice and the program is never held.  The agent reads
nothing from a receiver but its end.

At the end of a run every receiver is disconnected once its queue is sent:
a monitor connection is one session (``serve``'s monitor source dials
again, and joins the next run with its snapshot and header).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import deque

from protocol.monitor import frames

from .core import Counters, Run

log = logging.getLogger("liveprof.agent")


class _Receiver:
    def __init__(self, out: TcpOut, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter):
        self.out = out
        self.reader = reader
        self.writer = writer
        peer = writer.get_extra_info("peername") or ("?", 0)
        self.name = f"[{peer[0]}]:{peer[1]}" if ":" in str(peer[0]) else f"{peer[0]}:{peer[1]}"
        self.queue: deque[bytes] = deque()
        self.queued = 0
        self.joined: Run | None = None       # the run it gets events of
        self.finishing = False                # close once the queue is sent
        self.closed = False
        self.wake = asyncio.Event()
        self.sent = 0

    def send(self, data: bytes) -> bool:
        """Queue ``data``; False (and the receiver dropped) beyond the bound."""
        if self.closed:
            return False
        transport = self.writer.transport
        if self.queued + len(data) + transport.get_write_buffer_size() > self.out.queue_bytes:
            self.out.counters.receivers_dropped += 1
            log.warning("agent: receiver %s dropped: its queue is over %d bytes (it does not "
                        "read fast enough); %d bytes sent to it", self.name,
                        self.out.queue_bytes, self.sent)
            self.close(abort=True)
            return False
        self.queue.append(data)
        self.queued += len(data)
        self.wake.set()
        return True

    def finish(self) -> None:
        self.finishing = True
        self.wake.set()

    def close(self, abort: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        self.queue.clear()
        self.queued = 0
        self.wake.set()
        if abort:
            self.writer.transport.abort()
        else:
            self.writer.close()
        self.out.gone(self)

    async def pump(self) -> None:
        """Write the queue as the peer takes it; end at its EOF or ours."""
        eof = asyncio.create_task(self.reader.read(1 << 16), name=f"agent:tcp-eof {self.name}")
        try:
            while not self.closed:
                if not self.queue:
                    if self.finishing:
                        await asyncio.wait_for(self.writer.drain(), 10)
                        break
                    self.wake.clear()
                    waiter = asyncio.create_task(self.wake.wait())
                    done, _ = await asyncio.wait({waiter, eof},
                                                 return_when=asyncio.FIRST_COMPLETED)
                    waiter.cancel()
                    if eof in done:
                        break           # the receiver closed (it never writes)
                    continue
                data = self.queue.popleft()
                self.queued -= len(data)
                self.writer.write(data)
                self.sent += len(data)
                self.out.counters.tcp_bytes += len(data)
                await self.writer.drain()
        except (TimeoutError, ConnectionError, OSError) as exc:
            log.info("agent: receiver %s: connection lost: %s", self.name, exc)
        finally:
            eof.cancel()
            self.close()


class TcpOut:
    """The TCP server of the agent and its receivers."""

    def __init__(self, host: str | None, port: int, counters: Counters,
                 queue_bytes: int = 8 << 20, max_receivers: int = 16):
        self.host = host
        self.port = port
        self.counters = counters
        self.queue_bytes = queue_bytes
        self.max_receivers = max_receivers
        self.receivers: set[_Receiver] = set()
        self.run: Run | None = None
        self.server: asyncio.Server | None = None
        self.address: tuple | None = None
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._accept, self.host, self.port,
                                                 reuse_address=True)
        self.address = self.server.sockets[0].getsockname()[:2]
        log.info("agent: listening on TCP %s", ", ".join(
            f"{s.getsockname()[0]}:{s.getsockname()[1]}" for s in self.server.sockets))

    async def close(self, drain: float = 5.0) -> None:
        """Stop listening; let receivers take what is queued (up to ``drain`` s)."""
        if self.server is not None:
            self.server.close()
        for r in list(self.receivers):
            r.finish()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=drain)
        for r in list(self.receivers):
            r.close(abort=True)

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self.receivers) >= self.max_receivers:
            self.counters.receivers_refused += 1
            log.warning("agent: receiver %s refused: %d receivers already connected",
                        writer.get_extra_info("peername"), len(self.receivers))
            writer.transport.abort()
            return
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF,
                            max(4096, min(self.queue_bytes // 4, 1 << 20)))
        r = _Receiver(self, reader, writer)
        self.receivers.add(r)
        self.counters.receivers = len(self.receivers)
        self.counters.receivers_total += 1
        log.info("agent: receiver %s connected%s", r.name,
                 "" if self.run else " (waiting for a run to start)")
        if self.run is not None:
            self._join(r, self.run)
        task = asyncio.create_task(r.pump(), name=f"agent:tcp {r.name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _join(self, r: _Receiver, run: Run) -> None:
        r.joined = run
        r.send(frames(run.snapshot()))

    def gone(self, r: _Receiver) -> None:
        if r in self.receivers:
            self.receivers.discard(r)
            self.counters.receivers = len(self.receivers)
            log.info("agent: receiver %s disconnected after %d bytes", r.name, r.sent)

    # -- Output --------------------------------------------------------------------------

    def run_started(self, run: Run) -> None:
        self.run = run
        for r in list(self.receivers):
            if r.joined is None and not r.finishing:
                self._join(r, run)

    def unit(self, bodies: list[bytes]) -> None:
        if not self.receivers:
            return
        data = frames(bodies)
        for r in list(self.receivers):
            if r.joined is self.run and not r.finishing:
                r.send(data)

    def run_ended(self, run: Run) -> None:
        if self.run is run:
            self.run = None
        for r in list(self.receivers):
            if r.joined is run:
                r.finish()
