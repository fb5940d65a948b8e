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

A path that cannot become a pipe (a regular file or a directory there, no
permission, a missing directory) is a ``PermanentSourceError``: the service
stops this source with one line, and ``serve`` refuses to start (``check``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat

from pydantic import BaseModel, ConfigDict, Field

from ..errors import PermanentSourceError, SourceError, source_fault
from ._streams import SplitStreams, read_fd
from .base import Opener, path_kind

log = logging.getLogger("liveprof.fifo")

READ_SIZE = 1 << 16


class FifoConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="the named pipe the program writes (-ol<path>)")
    create: bool = Field(True, description="make the FIFO (mode 0600) if the path does not exist")
    read_size: int = Field(READ_SIZE, ge=1, description="bytes asked of one read")
    max_hold: int = Field(1 << 20, ge=1 << 12,
                          description="bytes held while a header is checked (splitter bound)")
    gather: float = Field(0.1, ge=0, le=1,
                          description="seconds a trickle of bytes is gathered into one chunk "
                                      "(at most this much more delay; 0: every read alone)")
    missing_retry: float = Field(1.0, gt=0,
                                 description="seconds between looks for a path that is not there "
                                             "(create=False)")


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
            except OSError as exc:      # no such directory, no permission to create
                raise source_fault(f"fifo {path}: cannot create it", exc,
                                   missing_is_permanent=True) from exc
        try:
            fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError as exc:     # removed since: look again
            raise SourceError(f"fifo {path}: gone before it could be opened") from exc
        except OSError as exc:
            raise source_fault(f"fifo {path}: cannot open", exc) from exc
        mode = os.fstat(fd).st_mode
        if not stat.S_ISFIFO(mode):
            os.close(fd)
            raise PermanentSourceError(f"fifo {path}: {path_kind(mode)}, not a named pipe (make "
                                       f"one with mkfifo, or read a file with --file/--follow)")
        return fd

    def check(self) -> None:
        """At start: ``PermanentSourceError`` if the path cannot serve (it
        creates the pipe when missing, as ``run`` would)."""
        fd = self._open()
        if fd is not None:
            os.close(fd)

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
            await read_fd(fd, cfg.read_size, streams.feed, cfg.gather)
            # only a FIFO someone else opened without a write end could get here
            streams.close()
        except asyncio.CancelledError:
            streams.close("source stopped before the end of the eventlog")
            raise
        finally:
            os.close(fd)
