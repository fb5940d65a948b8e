"""``file``: import an eventlog file once, or follow a growing one.

Once (``follow=False``): the file is read start to end and the source
returns.  The bytes go through ``protocol.LogSplitter``, so a file holding
several runs one after the other gives one session per run, and bytes that
belong to no log are skipped and counted.  A last log without its end
marker ends with an error (the program was killed, or is still writing).

``follow=True`` (like ``tail -F``): after the end of the file, the path is
looked at every ``poll_interval`` seconds (no inotify): new bytes are read
and passed on; a file that got shorter (truncated) or was replaced (another
inode at the path) is read again from its start with a new splitter, the
open session ending with an error; a path that disappears is waited for.
The source runs until cancelled.

A path that cannot be read (a directory, no permission; for a one-time
import also a missing file) is a ``PermanentSourceError``: the service stops
this source with one line, and ``serve`` refuses to start (``check``).

Full policy: block (reading waits while a consumer works).  Reads are plain
blocking reads of a local file, one chunk at a time, yielding to the loop
between chunks; the open is done in a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat

from pydantic import BaseModel, ConfigDict, Field

from ..errors import PermanentSourceError, source_fault
from ._streams import SplitStreams
from .base import Opener, path_kind

log = logging.getLogger("liveprof.file")


async def _open(path: str):
    """Open for reading in a worker thread (an open may block: NFS, a FIFO)."""
    return await asyncio.to_thread(open, path, "rb", buffering=0)


class FileConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="the eventlog file")
    follow: bool = Field(False, description="keep reading as the file grows (tail -F)")
    poll_interval: float = Field(0.5, gt=0, description="seconds between looks when following")
    read_size: int = Field(1 << 18, ge=1, description="bytes per read")
    max_hold: int = Field(1 << 20, ge=1 << 12,
                          description="bytes held while a header is checked (splitter bound)")


class FileSource:
    kind = "file"

    def __init__(self, config: FileConfig):
        self.config = config
        self.peer = config.path
        self.streams: SplitStreams | None = None   # the current file's
        self.restarts = 0                          # truncations and replacements seen
        self._skipped_before = 0

    @property
    def sessions(self) -> int:
        """Streams opened in all."""
        return self.streams.streams if self.streams is not None else 0

    @property
    def skipped(self) -> int:
        """Bytes skipped in all (every reading of the file)."""
        return self._skipped_before + (self.streams.skipped if self.streams is not None else 0)

    def _new_streams(self, opener: Opener) -> SplitStreams:
        first = self.sessions + 1
        self._skipped_before = self.skipped
        self.streams = SplitStreams(self.kind, self.peer, opener, log, self.config.max_hold,
                                    first_number=first)
        return self.streams

    def check(self) -> None:
        """At start: ``PermanentSourceError`` if the path cannot be read (a
        followed file may be missing: it is waited for)."""
        path = self.config.path
        try:
            mode = os.stat(path).st_mode
            if stat.S_ISDIR(mode):
                raise PermanentSourceError(f"file {path}: {path_kind(mode)}, not an eventlog file")
            if stat.S_ISREG(mode):
                os.close(os.open(path, os.O_RDONLY))
        except FileNotFoundError as exc:
            if not self.config.follow:
                raise PermanentSourceError(f"file {path}: no such file") from exc
        except OSError as exc:
            raise source_fault(f"file {path}: cannot open", exc) from exc

    async def run(self, opener: Opener) -> None:
        if self.config.follow:
            await self._follow(opener)
        else:
            await self._once(opener)

    async def _once(self, opener: Opener) -> None:
        cfg = self.config
        try:
            f = await _open(cfg.path)
        except OSError as exc:
            raise source_fault(f"file {cfg.path}: cannot open", exc,
                               missing_is_permanent=True) from exc
        streams = self._new_streams(opener)
        try:
            with f:
                while True:
                    data = f.read(cfg.read_size)
                    if not data:
                        break
                    streams.feed(data)
                    await asyncio.sleep(0)
        except asyncio.CancelledError:
            streams.close("source stopped before the end of the file")
            raise
        except OSError as exc:
            log.error("file %s: read failed: %s", cfg.path, exc)
            streams.close(f"read failed: {exc}")
            return
        streams.close()
        log.info("file %s: %d bytes, %d eventlog(s), %d bytes skipped", cfg.path, streams.bytes,
                 streams.streams, streams.skipped)

    async def _follow(self, opener: Opener) -> None:
        cfg = self.config
        f = None
        streams: SplitStreams | None = None
        waiting_logged = False
        try:
            while True:
                if f is None or streams is None:  # (streams is set whenever f is)
                    try:
                        f = await _open(cfg.path)
                    except FileNotFoundError:
                        if not waiting_logged:
                            log.warning("file %s: not there; waiting for it", cfg.path)
                            waiting_logged = True
                        await asyncio.sleep(cfg.poll_interval)
                        continue
                    except OSError as exc:
                        raise source_fault(f"file {cfg.path}: cannot open", exc) from exc
                    waiting_logged = False
                    inode = os.fstat(f.fileno()).st_ino
                    position = 0
                    streams = self._new_streams(opener)
                data = f.read(cfg.read_size)
                if data:
                    position += len(data)
                    streams.feed(data)
                    await asyncio.sleep(0)
                    continue
                # at the end: wait, then see what became of the path
                await asyncio.sleep(cfg.poll_interval)
                try:
                    st = os.stat(cfg.path)
                except FileNotFoundError:
                    st = None
                if st is not None and st.st_ino == inode and st.st_size >= position:
                    continue                       # the same file, grown or not
                if st is not None and st.st_ino == inode:
                    why = f"truncated to {st.st_size} bytes (was {position})"
                else:
                    # replaced or removed: read what the old file still holds first
                    while data := f.read(cfg.read_size):
                        position += len(data)
                        streams.feed(data)
                    why = "replaced" if st is not None else "removed"
                log.warning("file %s: %s; reading it again from the start", cfg.path, why)
                self.restarts += 1
                streams.close(f"file {why}")
                f.close()
                f = None
        except asyncio.CancelledError:
            if streams is not None:
                streams.close("source stopped")
            raise
        finally:
            if f is not None:
                f.close()
