"""Shared by the byte-stream sources (``fifo``, ``file``, ``stdin``):
``SplitStreams`` cuts one byte stream into eventlog sessions with
``protocol.LogSplitter``; ``read_fd`` reads a non-blocking descriptor as it
becomes readable."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
from collections.abc import Callable

from protocol import LogData, LogEnd, LogSplitter, LogStart, Skipped

from .base import Opener, StreamConsumer, StreamInfo


class SplitStreams:
    """A ``LogSplitter`` whose logs become streams: one ``opener`` call per log.

    ``feed(bytes)`` and ``close(reason)`` are synchronous; the counters are
    the source's: ``streams`` opened, ``skipped`` bytes, ``errors`` (logs that
    ended with an error), ``dropped`` bytes of logs whose consumer failed.
    """

    def __init__(self, kind: str, peer: str, opener: Opener, logger: logging.Logger,
                 max_hold: int = 1 << 20, first_number: int = 1):
        self.kind = kind
        self.peer = peer
        self.opener = opener
        self.log = logger
        self.splitter = LogSplitter(max_hold)
        self.streams = first_number - 1
        self.skipped = 0
        self.errors = 0
        self.dropped = 0
        self.bytes = 0
        self._consumer: StreamConsumer | None = None
        self._broken = False          # the current consumer raised: drop its data
        self._unlogged_skip = 0

    @property
    def open(self) -> bool:
        return self._consumer is not None

    def feed(self, data: bytes) -> None:
        self.bytes += len(data)
        self._handle(self.splitter.feed(data))

    def close(self, reason: str | None = None) -> None:
        """End of input (or the source stops): end the open stream, if any,
        with ``reason`` if given, else with the splitter's account of the cut."""
        items = self.splitter.close()
        if reason is not None:
            items = [LogEnd(it.offset, reason) if isinstance(it, LogEnd) else it for it in items]
        self._handle(items)
        self._log_skip()

    def _handle(self, items: list) -> None:
        for it in items:
            if isinstance(it, LogData):
                self._data(it.data)
            elif isinstance(it, LogStart):
                self._log_skip()
                self.streams += 1
                self._broken = False
                self._consumer = self.opener(StreamInfo(self.kind, self.peer, self.streams))
                self.log.info("%s %s: a new eventlog at stream offset %d: stream #%d",
                              self.kind, self.peer, it.offset, self.streams)
            elif isinstance(it, LogEnd):
                self._end(it)
            elif isinstance(it, Skipped):
                self.skipped += it.count
                self._unlogged_skip += it.count

    def _data(self, data: bytes) -> None:
        consumer = self._consumer
        if self._broken or consumer is None:
            self.dropped += len(data)
            return
        try:
            consumer.data(data)
        except Exception as exc:  # a bad consumer costs its own stream only
            self._broken = True
            self.errors += 1
            self.dropped += len(data)
            self.log.exception("%s %s: stream #%d: its consumer failed; dropping the rest of "
                               "this eventlog", self.kind, self.peer, self.streams)
            self._call_end(consumer, f"consumer failed: {exc!r}")

    def _end(self, item: LogEnd) -> None:
        if item.error is not None:
            self.errors += 1
            self.log.warning("%s %s: stream #%d ended at stream offset %d: %s",
                             self.kind, self.peer, self.streams, item.offset, item.error)
        consumer = self._consumer
        if consumer is not None and not self._broken:  # (the splitter starts every stream it ends)
            self._call_end(consumer, item.error)
        self._consumer, self._broken = None, False

    def _call_end(self, consumer: StreamConsumer, error: str | None) -> None:
        try:
            consumer.end(error)
        except Exception:
            self.log.exception("%s %s: stream #%d: its consumer failed at the end",
                               self.kind, self.peer, self.streams)

    def _log_skip(self) -> None:
        if self._unlogged_skip:
            self.log.warning("%s %s: skipped %d bytes that belong to no eventlog (resync on the "
                             "next header)", self.kind, self.peer, self._unlogged_skip)
            self._unlogged_skip = 0


PIPE_SIZE = 1 << 20  # bytes a gathering reader's pipe holds (Linux's default limit for anyone)


async def read_fd(fd: int, size: int, take: Callable[[bytes], None], gather: float = 0.0) -> None:
    """Read the non-blocking descriptor ``fd`` (a pipe, socket or terminal)
    as it becomes readable and pass each chunk to ``take``; returns at
    end-of-file.  The descriptor stays open (the caller's).

    ``gather`` (seconds): when the last chunk was short (a writer that
    trickles, as a live program flushing its buffers every few ms), wait this
    long, then take everything that came meanwhile as one chunk: what a chunk
    costs downstream (the derivers, the sinks, the loop) is then paid at most
    ``1 / gather`` times a second, for at most ``gather`` more delay.  While
    the writer trickles on, one gather follows the other with no reader
    registered (a chunk costs the loop one timer); a gather that finds nothing
    waits for the pipe to be readable again, and gathers from then.  A busy
    writer is read on at once, as without it: full reads go on reading, and
    no gather starts within ``gather`` of a full chunk (a writer that fills a
    chunk that often is busy, not trickling).  A pipe is
    enlarged to ``PIPE_SIZE`` when the system allows, so that its writer does
    not block during a gather (a GHC program blocked on its eventlog stalls)."""
    loop = asyncio.get_running_loop()
    if gather > 0:
        with contextlib.suppress(OSError):   # (not a pipe, or the system's limit is lower)
            fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    readable = asyncio.Event()
    watching = False      # the reader is registered (only while waiting for bytes)
    quiet = True          # the last read found nothing: wait until the writer speaks
    trickle = False       # the last chunk was short: the next one is gathered
    last_full = -gather   # loop time of the last full chunk
    try:
        while True:
            gathering = trickle and gather > 0 and loop.time() - last_full >= gather
            if quiet or (trickle and not gathering):
                if not watching:
                    loop.add_reader(fd, readable.set)
                    watching = True
                await readable.wait()
                readable.clear()
                gathering = trickle and gather > 0 and loop.time() - last_full >= gather
            if gathering:
                # sleep one gather time, then take what came meanwhile.  No reader
                # meanwhile (the selector is level-triggered, and would wake the loop
                # at every turn while the bytes wait), and none from one gather to
                # the next while the writer trickles on: a chunk costs one timer
                if watching:
                    loop.remove_reader(fd)
                    watching = False
                await asyncio.sleep(gather)
            parts: list[bytes] = []
            got = 0
            eof = False
            while got < size:  # what is there, up to one chunk
                try:
                    data = os.read(fd, size - got)
                except (BlockingIOError, InterruptedError):
                    break
                if not data:
                    eof = True
                    break
                parts.append(data)
                got += len(data)
                if gather <= 0 and got < size:
                    break      # (short: drained, most likely)
            if parts:
                take(parts[0] if len(parts) == 1 else b"".join(parts))
            if eof:
                return
            quiet = not got
            if quiet:
                continue
            trickle = got < size
            if not trickle:
                last_full = loop.time()
                await asyncio.sleep(0)     # a full chunk: read on at once (a busy writer
                #                            does not starve the loop either way)
    finally:
        if watching:
            loop.remove_reader(fd)
