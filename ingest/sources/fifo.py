"""``fifo``: a named pipe written by a GHC program run with ``+RTS -l -ol<fifo>``.

GHC opens its eventlog file for reading *and* writing, so the program never
waits for a reader nor notices one going away; a reader that opens the pipe
late, or reopens it, lands in the middle of a stream with no header.  So the
pipe is opened once, ``O_RDWR | O_NONBLOCK``, and kept open for the life of
the source: holding a write end, the reader never sees end-of-file when
writers come and go, and the open never blocks.  (``create``: make the FIFO
if the path does not exist; GHC would otherwise create a regular file.)

The bytes go through ``protocol.LogSplitter``: without a header yet, bytes
are skipped (and counted, and logged) up to the next ``hdrb`` ``hetb``; each
program run (a header) is one session; a run's end marker ends its session
cleanly, and a run cut off without one (killed) ends with an error when the
next run's header appears.

Full policy: block.  Reading stops while a consumer works (consumers are
synchronous); the program's writes then wait in the pipe buffer, and GHC
blocks on a full pipe.  A consumer that raises ends its own session (the
rest of that run is dropped and counted); the source reads on.

``SplitStreams`` and ``read_fd`` are shared with the ``file`` and ``stdin``
sources.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field

from protocol import LogData, LogEnd, LogSplitter, LogStart, Skipped

from ..errors import SourceError
from .base import Opener, StreamConsumer, StreamInfo

log = logging.getLogger("liveprof.fifo")

READ_SIZE = 1 << 16


class FifoConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="the named pipe the program writes (-ol<path>)")
    create: bool = Field(True, description="make the FIFO (mode 0600) if the path does not exist")
    read_size: int = Field(READ_SIZE, ge=1, description="bytes asked of one read")
    max_hold: int = Field(1 << 20, ge=1 << 12,
                          description="bytes held while a header is checked (splitter bound)")
    missing_retry: float = Field(1.0, gt=0,
                                 description="seconds between looks for a path that is not there "
                                             "(create=False)")


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
        if self._broken or self._consumer is None:
            self.dropped += len(data)
            return
        try:
            self._consumer.data(data)
        except Exception as exc:  # a bad consumer costs its own stream only
            self._broken = True
            self.errors += 1
            self.dropped += len(data)
            self.log.exception("%s %s: stream #%d: its consumer failed; dropping the rest of "
                               "this eventlog", self.kind, self.peer, self.streams)
            self._call_end(f"consumer failed: {exc!r}")

    def _end(self, item: LogEnd) -> None:
        if item.error is not None:
            self.errors += 1
            self.log.warning("%s %s: stream #%d ended at stream offset %d: %s",
                             self.kind, self.peer, self.streams, item.offset, item.error)
        if not self._broken:
            self._call_end(item.error)
        self._consumer, self._broken = None, False

    def _call_end(self, error: str | None) -> None:
        consumer = self._consumer
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


async def read_fd(fd: int, size: int, take: Callable[[bytes], None]) -> None:
    """Read the non-blocking descriptor ``fd`` (a pipe, socket or terminal)
    as it becomes readable and pass each chunk to ``take``; returns at
    end-of-file.  The descriptor stays open (the caller's)."""
    loop = asyncio.get_running_loop()
    readable = asyncio.Event()
    loop.add_reader(fd, readable.set)
    try:
        while True:
            await readable.wait()
            readable.clear()
            while True:
                try:
                    data = os.read(fd, size)
                except (BlockingIOError, InterruptedError):
                    break
                if not data:
                    return
                take(data)
                if len(data) < size:
                    break
                await asyncio.sleep(0)     # a busy writer does not starve the loop
    finally:
        loop.remove_reader(fd)


class FifoSource:
    kind = "fifo"

    def __init__(self, config: FifoConfig):
        self.config = config
        self.peer = config.path
        self.streams: SplitStreams | None = None

    def _open(self) -> int | None:
        path = self.config.path
        if not os.path.lexists(path):
            if not self.config.create:
                return None
            try:
                os.mkfifo(path, 0o600)
                log.info("fifo %s: created", path)
            except FileExistsError:
                pass
        try:
            fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise SourceError(f"fifo {path}: cannot open: {exc}") from exc
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            os.close(fd)
            raise SourceError(f"fifo {path}: not a named pipe (make one with mkfifo, or use the "
                              f"file source)")
        return fd

    async def run(self, opener: Opener) -> None:
        """Read the pipe until cancelled; a session per program run."""
        cfg = self.config
        fd = self._open()
        while fd is None:
            log.warning("fifo %s: no such file; looking again in %.1f s", cfg.path,
                        cfg.missing_retry)
            await asyncio.sleep(cfg.missing_retry)
            fd = self._open()
        self.streams = streams = SplitStreams(self.kind, self.peer, opener, log, cfg.max_hold)
        log.info("fifo %s: open, waiting for an eventlog", cfg.path)
        try:
            await read_fd(fd, cfg.read_size, streams.feed)
            # only a FIFO someone else opened without a write end could get here
            streams.close()
        except asyncio.CancelledError:
            streams.close("source stopped before the end of the eventlog")
            raise
        finally:
            os.close(fd)
