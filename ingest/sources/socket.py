"""``socket``: connect to a GHC program that serves its eventlog on a socket.

The eventlog-socket library's model: the program listens on a Unix socket
or a TCP address; each client that connects gets the header again, then the
live events (the RTS restarts logging for it).  liveprof is the client: it
connects, reads and never writes.  Each connection is one session: its bytes
go to one stream, as they come.  A payload-skipping decoder follows the
record boundaries: the stream ends with no error at the log's end marker
(the program exited; the connection is closed there), and with an error when
the connection ends before it (the program was killed: end-of-file on a Unix
socket, often a reset on TCP) or the bytes are not an eventlog.  Then
liveprof dials again, forever, after a jittered delay that grows up to
``backoff_max`` while connections fail, and starts over once a connection
delivered bytes.

A Unix socket path that holds something else (a regular file, a directory)
or that may not be reached (no permission, a file where a directory should
be) is a ``PermanentSourceError``: the service stops this source with one
line, and ``serve`` refuses to start (``check``); a missing path is only a
program not started yet, dialled again.

Errors are logged with the address.  Full policy: block (reading waits while
the consumer works; the program's writes then wait in the socket buffer).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import stat

from pydantic import BaseModel, ConfigDict, Field, field_validator

from protocol import DecodeError, Decoder

from ..backoff import Backoff
from ..errors import PermanentSourceError, source_fault
from ._dial import dial_forever
from .base import Opener, StreamInfo, parse_address, path_kind

log = logging.getLogger("liveprof.socket")

READ_SIZE = 1 << 16


def parse_target(text: str) -> tuple[str, str | tuple[str, int]]:
    """``unix:PATH``, a path (holding a ``/``), or ``HOST:PORT`` / ``[v6]:PORT``
    -> ("unix", path) or ("tcp", (host, port))."""
    if text.startswith("unix:"):
        path = text[len("unix:"):]
        if not path:
            raise ValueError("unix: needs a socket path")
        return "unix", path
    if "/" in text:
        return "unix", text
    text = text.removeprefix("tcp:")
    host, port = parse_address(text, 0)
    if port == 0:
        raise ValueError(f"address {text!r} needs a port (HOST:PORT), or give a Unix socket path")
    return "tcp", (host, port)


class SocketConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    address: str = Field(description="unix:PATH (or a path), or HOST:PORT, where the program "
                                     "serves its eventlog")
    connect_timeout: float = Field(10.0, gt=0)
    backoff_initial: float = Field(0.5, gt=0, description="first delay before dialling again")
    backoff_max: float = Field(30.0, gt=0, description="longest delay between attempts")
    read_size: int = Field(READ_SIZE, ge=1)
    once: bool = Field(False, description="stop after the first connection ends (no redial)")

    @field_validator("address")
    @classmethod
    def _valid_address(cls, value: str) -> str:
        parse_target(value)
        return value

    @property
    def target(self) -> tuple[str, str | tuple[str, int]]:
        return parse_target(self.address)


class SocketSource:
    kind = "socket"

    def __init__(self, config: SocketConfig):
        self.config = config
        self.mode, where = config.target
        self.peer = where if isinstance(where, str) else (
            f"[{where[0]}]:{where[1]}" if ":" in where[0] else f"{where[0]}:{where[1]}")
        self.streams = 0
        self.connections = 0
        self.failed_dials = 0
        self.errors = 0
        self.bytes = 0

    def check(self) -> None:
        """``PermanentSourceError`` if a Unix socket path cannot be a socket
        to dial (a missing one is fine: the program is not started yet)."""
        _, where = self.config.target
        if not isinstance(where, str):  # tcp: (host, port); unix: a path
            return
        try:
            st_mode = os.stat(where).st_mode
        except FileNotFoundError:
            return
        except OSError as exc:
            raise source_fault(f"socket {where}", exc) from exc
        if not stat.S_ISSOCK(st_mode):
            raise PermanentSourceError(f"socket {where}: {path_kind(st_mode)}, not a socket")

    async def _connect(self):
        _, where = self.config.target
        if isinstance(where, str):  # unix: a path; tcp: (host, port)
            try:
                return await asyncio.open_unix_connection(where, limit=self.config.read_size)
            except OSError as exc:
                # refused: a program gone, or no socket there at all (a file, a directory)
                if exc.errno not in (errno.ENOENT, errno.ECONNREFUSED):
                    fault = source_fault(f"socket {where}: cannot connect", exc)
                    if isinstance(fault, PermanentSourceError):
                        raise fault from exc
                self.check()
                raise           # transient: dialled again after a delay
        return await asyncio.open_connection(where[0], where[1], limit=self.config.read_size)

    async def run(self, opener: Opener) -> None:
        """Dial, read, dial again, until cancelled (or after one connection with ``once``)."""
        cfg = self.config

        def failed() -> None:
            self.failed_dials += 1

        def connected() -> None:
            self.connections += 1

        await dial_forever(f"socket {self.peer}", self._connect,
                           lambda reader: self._read(reader, opener),
                           timeout=cfg.connect_timeout,
                           backoff=Backoff(cfg.backoff_initial,
                                           max(cfg.backoff_max, cfg.backoff_initial)),
                           once=cfg.once, log=log, on_failed_dial=failed,
                           on_connected=connected)

    async def _read(self, reader: asyncio.StreamReader, opener: Opener) -> bool:
        """One connection, one stream; True if it delivered any bytes."""
        self.streams += 1
        number = self.streams
        consumer = opener(StreamInfo(self.kind, self.peer, number))
        check = Decoder(only=set())    # record boundaries only: where the log ends
        got = 0
        error: str | None = "source stopped"
        try:
            while True:
                chunk = await reader.read(self.config.read_size)
                if not chunk:
                    error = (f"socket {self.peer}: connection closed after {got} bytes, before "
                             f"the end marker")
                    break
                try:
                    check.feed(chunk)
                except DecodeError as exc:
                    self.errors += 1
                    error = f"socket {self.peer}: not an eventlog: {exc}; closing the connection"
                    break
                if check.ended and check.end_offset is not None:  # (set together)
                    chunk = chunk[:check.end_offset - got]
                got += len(chunk)
                self.bytes += len(chunk)
                try:
                    if chunk:
                        consumer.data(chunk)
                except Exception as exc:
                    self.errors += 1
                    error = f"consumer failed: {exc!r}"
                    log.exception("socket %s: stream #%d: its consumer failed; closing the "
                                  "connection", self.peer, number)
                    break
                if check.ended:
                    error = None
                    if check.trailing:
                        log.warning("socket %s: %d bytes after the end marker ignored; closing "
                                    "the connection", self.peer, len(check.trailing))
                    break
        except (ConnectionError, OSError) as exc:
            self.errors += 1
            error = f"socket {self.peer}: connection lost after {got} bytes: {exc}"
        finally:
            if error is not None and error != "source stopped":
                log.warning("%s", error)
            try:
                consumer.end(error)
            except Exception:
                log.exception("socket %s: stream #%d: its consumer failed at the end",
                              self.peer, number)
        log.info("socket %s: stream #%d: %d bytes, %s", self.peer, number, got,
                 "complete" if error is None else "incomplete")
        return got > 0
