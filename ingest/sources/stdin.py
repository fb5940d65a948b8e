"""``stdin``: standard input (or any inherited file descriptor) as a stream.

``liveprof serve --stdin`` under ``prog +RTS -l -ol/dev/stdout | ...``, or a
log piped in from elsewhere.  The bytes go through ``protocol.LogSplitter``
like a named pipe's: each eventlog (each header) is a session, bytes that
belong to none are skipped and counted.  End-of-file ends the source (and
the open session, with an error if its log had no end marker).

Pipes, sockets and terminals are read as they become readable (the
descriptor is made non-blocking for the duration and restored after); a
regular file (``< file``) is read straight through, yielding to the loop
between chunks.  The descriptor is not closed: it is the process's.

Full policy: block (reading waits while a consumer works).
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat

from pydantic import BaseModel, ConfigDict, Field

from ..errors import PermanentSourceError
from ._streams import SplitStreams, read_fd
from .base import Opener, path_kind

log = logging.getLogger("liveprof.stdin")


class StdinConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fd: int = Field(default=0, ge=0, description="the descriptor to read (0: standard input)")
    read_size: int = Field(default=1 << 16, ge=1, description="bytes asked of one read")
    gather: float = Field(0.1, ge=0, le=1,
                          description="seconds a trickle of bytes is gathered into one chunk "
                                      "(at most this much more delay; 0: every read alone)")
    max_hold: int = Field(default=1 << 20, ge=1 << 12,
                          description="bytes held while a header is checked (splitter bound)")


class StdinSource:
    kind = "stdin"

    def __init__(self, config: StdinConfig | None = None):
        self.config = config or StdinConfig()
        self.peer = "-" if self.config.fd == 0 else f"fd:{self.config.fd}"
        self.streams: SplitStreams | None = None

    def check(self) -> None:
        """At start: ``PermanentSourceError`` for a descriptor that is not
        open, or a directory."""
        try:
            mode = os.fstat(self.config.fd).st_mode
        except OSError as exc:
            raise PermanentSourceError(f"stdin {self.peer}: {exc.strerror}") from exc
        if stat.S_ISDIR(mode):
            raise PermanentSourceError(f"stdin {self.peer}: {path_kind(mode)}, not a stream")

    async def run(self, opener: Opener) -> None:
        """Read to end-of-file (or until cancelled); a session per eventlog."""
        cfg = self.config
        self.streams = streams = SplitStreams(self.kind, self.peer, opener, log, cfg.max_hold)
        try:
            mode = os.fstat(cfg.fd).st_mode
            if stat.S_ISREG(mode) or stat.S_ISBLK(mode):
                await self._read_file(streams)
            else:
                was_blocking = os.get_blocking(cfg.fd)
                os.set_blocking(cfg.fd, False)
                try:
                    await read_fd(cfg.fd, cfg.read_size, streams.feed, cfg.gather)
                finally:
                    os.set_blocking(cfg.fd, was_blocking)
        except asyncio.CancelledError:
            streams.close("source stopped before the end of the eventlog")
            raise
        except OSError as exc:
            log.error("stdin %s: read failed: %s", self.peer, exc)
            streams.close(f"read failed: {exc}")
            return
        streams.close()
        log.info("stdin %s: end of input after %d bytes, %d eventlog(s), %d bytes skipped",
                 self.peer, streams.bytes, streams.streams, streams.skipped)

    async def _read_file(self, streams: SplitStreams) -> None:
        fd, size = self.config.fd, self.config.read_size
        while True:
            data = os.read(fd, size)
            if not data:
                return
            streams.feed(data)
            await asyncio.sleep(0)
