"""What every source hands downstream: streams of eventlog bytes.

A source opens one *stream* per session (a monitor connection, a datagram
peer, a socket connection, a file) by calling the ``Opener`` it was given
with a ``StreamInfo``; it gets a ``StreamConsumer`` back and pushes the
stream's eventlog bytes into it, then ends it once.  Consumers are
synchronous: decoding and deriving are CPU work, and a stream source that
waits for them reads no more (back-pressure); sinks behind them never block.
"""

from __future__ import annotations

import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from protocol.monitor import Session


@dataclass(frozen=True)
class StreamInfo:
    source: str             # component kind: "monitor_tcp", "monitor_udp", ...
    peer: str               # where the bytes come from: "127.0.0.1:8242", a path, "-"
    number: int             # streams opened by this source so far, from 1
    started: float = field(default_factory=time.time)   # epoch seconds
    # what the stream says of itself (a ``liveprof agent``'s monitor stream,
    # docs/monitor-protocol.md 6.7 and 7.4); None: the consumer decides
    caps: bool | None = None        # its events carry their capability
    app: str | None = None          # the app name it was given
    host: str | None = None         # the host it comes from

    @property
    def name(self) -> str:
        return f"{self.source} {self.peer} #{self.number}"


class StreamConsumer(Protocol):
    def data(self, chunk: bytes) -> None:
        """More eventlog bytes of this stream, in order."""

    def end(self, error: str | None) -> None:
        """The stream is over; ``error`` says why if it did not end cleanly."""


Opener = Callable[[StreamInfo], StreamConsumer]


class Source(Protocol):
    """A source the service runs: ``run`` opens streams on the opener until
    its input ends (a file) or it is cancelled (anything live).  It raises
    ``SourceError`` for a fault worth retrying, ``PermanentSourceError`` for
    one that is not (ingest/errors.py); the service restarts it or stops it."""

    kind: str

    async def run(self, opener: Opener) -> None: ...


def monitor_info(kind: str, peer: str, number: int, session: Session) -> StreamInfo:
    """The ``StreamInfo`` of a monitor session (``protocol.monitor.Session``):
    capabilities known when it had event blocks, app and host from the agent's
    identity in its snapshot, if any."""
    from protocol.monitor import agent_identity

    ident = agent_identity(session.state) or {}
    return StreamInfo(kind, peer, number, caps=True if session.blocks.seen else None,
                      app=ident.get("app") or ident.get("program"), host=ident.get("host"))


def parse_address(text: str, default_port: int, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``HOST:PORT``, ``[v6]:PORT``, ``HOST`` or ``PORT`` -> (host, port)."""
    host, port = default_host, default_port
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"bad address {text!r}: missing ]")
        host, rest = text[1:end], text[end + 1:]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"bad address {text!r}")
            port = _port(rest[1:], text)
    elif text.count(":") == 1:
        h, p = text.split(":")
        host, port = h or default_host, _port(p, text)
    elif text.isdigit():
        port = _port(text, text)
    elif text and ":" not in text:
        host = text
    else:
        host = text  # a bare IPv6 address
    return host, port


def _port(text: str, whole: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise ValueError(f"bad port in address {whole!r}")
    return int(text)


def path_kind(mode: int) -> str:
    """``st_mode`` in words, for messages about a path of the wrong type."""
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISREG, "a regular file"),
                       (stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "of another type"
