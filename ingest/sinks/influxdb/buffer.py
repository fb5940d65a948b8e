"""The sink's buffer: lines in memory, spilled to the on-disk spool.

``add()`` appends to memory.  Past ``buffer.memory_max_bytes`` the oldest
lines move to the spool (or, without a spool, are dropped and counted); so
does everything in memory once its oldest line has waited
``buffer.spill_after`` (``spill_late``).  Batches are cut from the spool
first (older data), then from memory.  The age of what memory holds is the
age of its oldest line: each ``add()`` is remembered with its arrival time, so
the lines left over after a batch is cut by size keep their own age and wait
their own ``batch.flush_interval`` (they do not go out at once as a small
request on the age of lines already sent).  ``send_now`` (set by the sink for
a live stream's submit, ``InfluxSink._enqueue``) sends what memory holds with
the next batch, before its interval.  The buffer never waits and does no
IO but the spool's page-cache appends; whoever waits for it to shrink
(``wait_for_room``) is woken by each shrink, never by polling.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import time
from collections.abc import Callable, Iterator

from ingest.sinks.influxdb.config import InfluxSinkConfig
from ingest.sinks.influxdb.ledger import Ledger
from ingest.sinks.spool import Dropped, Spool, SpoolRecord

__all__ = ["Buffer"]

log = logging.getLogger("liveprof.sinks.influx")

_OVERFLOW_LOG_EVERY = 5.0  # seconds between log lines about dropping for the bounds


class Buffer:
    """Memory deque of lines plus an optional spool; counts what it drops
    in ``ledger``."""

    def __init__(self, config: InfluxSinkConfig, ledger: Ledger, spool: Spool | None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.ledger = ledger
        self.spool = spool
        self.clock = clock
        self._mem: collections.deque[str] = collections.deque()
        self.mem_bytes = 0
        self.since: float | None = None  # when the oldest line in memory arrived (clock)
        # [lines, arrival] per add(), oldest first: how old the lines in memory are
        self._arrivals: collections.deque[list] = collections.deque()
        self._shrunk = asyncio.Event()  # set (and replaced) at every shrink
        self._room_waiters = 0
        self._overflow_logged_at = 0.0
        self._overflow_unlogged = 0  # lines dropped for the bounds since the last log line
        # what memory holds goes with the next batch, whatever its age (set by the
        # sink: InfluxSink._enqueue; cleared when a batch is cut)
        self.send_now = False

    def __len__(self) -> int:
        return len(self._mem)

    # -- in ---------------------------------------------------------------------

    def add(self, lines: list[str]) -> None:
        self._mem.extend(lines)
        self.mem_bytes += sum(map(len, lines)) + len(lines)
        now = self.clock()
        self._arrivals.append([len(lines), now])
        if self.since is None:
            self.since = now
        if self.mem_bytes > self.config.buffer.memory_max_bytes:
            self._spill()

    def _spill(self) -> None:
        limit = self.config.buffer.memory_max_bytes
        if self.spool is None:
            dropped: list[str] = []
            while self._mem and self.mem_bytes > limit:
                line = self._mem.popleft()
                self.mem_bytes -= len(line) + 1
                dropped.append(line)
            self._taken(len(dropped))
            self.ledger.drop("overflow", len(dropped), dropped)
            self._log_overflow("memory buffer full (buffer.memory_max_bytes) and no spool", len(dropped))
        else:
            while self._mem and self.mem_bytes > limit:
                self.spool_drops(self.spool.append(self.pop_batch()))
        self._signal()

    def _taken(self, n: int) -> None:
        """``n`` lines left the head of memory: forget their arrivals, and
        ``since`` becomes the arrival of the oldest line still held."""
        arrivals = self._arrivals
        while n and arrivals:
            head = arrivals[0]
            if head[0] > n:
                head[0] -= n
                break
            n -= head[0]
            arrivals.popleft()
        self.since = arrivals[0][1] if arrivals else None

    def spill_late(self) -> int:
        """With a spool, move memory to disk once its oldest line has waited
        ``spill_after`` (InfluxDB slow or down): what a crash can lose.
        Returns the lines moved."""
        if self.spool is None or self.since is None or not self._mem:
            return 0
        if self.clock() - self.since < self.config.buffer.spill_after:
            return 0
        n = len(self._mem)
        while self._mem:
            self.spool_drops(self.spool.append(self.pop_batch()))
        self._signal()
        return n

    def spool_drops(self, dropped: Dropped) -> None:
        """Count what the spool dropped to stay under its bound."""
        if dropped:
            self.ledger.drop("overflow", dropped.lines, dropped.content)
            bound = self.config.buffer.spool_max_bytes
            self._log_overflow(f"spool over buffer.spool_max_bytes ({bound} bytes)", dropped.lines)

    def _log_overflow(self, what: str, lines: int) -> None:
        """At most one line per 5 s, counting every drop since the last one
        and the running total (the total at close comes from the sink)."""
        self._overflow_unlogged += lines
        now = time.monotonic()
        if now - self._overflow_logged_at >= _OVERFLOW_LOG_EVERY:
            self._overflow_logged_at = now
            log.error("%s: dropped the oldest %d lines since the last report, %d in all so far",
                      what, self._overflow_unlogged, self.ledger.stats.dropped_overflow)
            self._overflow_unlogged = 0

    # -- out --------------------------------------------------------------------

    def next_record(self) -> SpoolRecord | None:
        """The oldest batch on disk not handed out yet."""
        if self.spool is not None and self.spool.has_unread():
            return self.spool.read()
        return None

    def batch_due(self, closing: bool) -> bool:
        """Whether memory holds a batch to send now: full by lines or bytes,
        wanted by a flush, the sink closing, or its oldest line old enough."""
        if not self._mem:
            return False
        return (self.full() or closing or self.send_now
                or (self.since is not None
                    and self.clock() - self.since >= self.config.batch.flush_interval))

    def full(self) -> bool:
        """Memory holds a batch to send before its flush interval: full by
        lines or bytes, or wanted by a flush."""
        batch = self.config.batch
        return (len(self._mem) >= batch.lines or self.mem_bytes >= batch.bytes
                or self.ledger.flush_target > self.ledger.queued - len(self._mem))

    def pop_batch(self) -> list[str]:
        """The oldest lines of memory, at most one batch."""
        mem = self._mem
        max_lines, max_bytes = self.config.batch.lines, self.config.batch.bytes
        if len(mem) <= max_lines and self.mem_bytes <= max_bytes:
            # all of it (a live stream's batch, every flush interval): at once
            out = list(mem)
            mem.clear()
            return self._took(out, self.mem_bytes)
        # a full batch by lines (an import's, usually): counted in C, taken whole
        # when within the bytes; else line by line below
        out = list(itertools.islice(mem, max_lines))
        size = sum(map(len, out)) + len(out)
        if size <= max_bytes:
            for _ in range(len(out)):
                mem.popleft()
            return self._took(out, size)
        out = []
        size = 0
        while mem and len(out) < max_lines:
            line = mem[0]
            if out and size + len(line) + 1 > max_bytes:
                break
            mem.popleft()
            out.append(line)
            size += len(line) + 1
        return self._took(out, size)

    def _took(self, out: list[str], size: int) -> list[str]:
        """``out`` (``size`` bytes) left memory as one batch."""
        self.mem_bytes -= size
        self.send_now = False
        self._taken(len(out))
        self._signal()
        return out

    def take_all(self) -> list[str]:
        """Everything in memory (at close)."""
        rest = list(self._mem)
        self._mem.clear()
        self.mem_bytes = 0
        self._arrivals.clear()
        self.since = None
        self.send_now = False
        self._signal()
        return rest

    def chunks(self, lines: list[str]) -> Iterator[list[str]]:
        """``lines`` cut into batches."""
        batch = self.config.batch
        chunk: list[str] = []
        size = 0
        for line in lines:
            if chunk and (len(chunk) >= batch.lines or size + len(line) + 1 > batch.bytes):
                yield chunk
                chunk, size = [], 0
            chunk.append(line)
            size += len(line) + 1
        if chunk:
            yield chunk

    # -- waiting for room ---------------------------------------------------------

    def _signal(self) -> None:
        if self._room_waiters:
            self._shrunk.set()
            self._shrunk = asyncio.Event()

    async def wait_for_room(self, limit_bytes: int, timeout: float | None = None) -> bool:
        """Until memory holds at most ``limit_bytes``; False after ``timeout``."""
        if self.mem_bytes <= limit_bytes:
            return True
        self._room_waiters += 1
        try:
            async with asyncio.timeout(timeout):
                while self.mem_bytes > limit_bytes:
                    await self._shrunk.wait()
            return True
        except TimeoutError:
            return self.mem_bytes <= limit_bytes
        finally:
            self._room_waiters -= 1
