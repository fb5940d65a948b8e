"""A cap on the API's connections that slow clients cannot use to lock others out.

aiohttp serves every connection it accepts and has no cap of its own; 1,000
half-sent requests held 1,000 file descriptors and, under a low file limit,
starved ``/healthz``.  ``GuardedSite`` listens like ``web.TCPSite`` but wraps
each connection's ``RequestHandler`` in a ``_Guarded`` protocol that counts
it.  Past ``max_connections``, a new connection closes the oldest one that
has no request in progress (an idle keep-alive or a half-sent request: the
cheapest to lose and the likeliest abuse) and is served; only when every
connection is inside a request is the new one answered 503 and closed.  The
time a connection may take to send its headers (or stay idle) is aiohttp's
``keepalive_timeout``, set to ``api.header_timeout`` in ``app.py``.

Which connections are inside a request: the app's middleware marks them
(``busy``), after aiohttp has read the headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import socket

from aiohttp import web

from .logs import LIMITED

_REFUSED = (b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 39\r\n\r\n"
            b'{"error": "too many connections open"}\n')


def _file_limit() -> int | None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


def connection_cap(configured: int) -> int:
    """``configured``, lowered to half the process's file limit (the rest is
    for InfluxDB, the spool, sources and the accept itself)."""
    soft = _file_limit()
    return configured if soft is None else max(4, min(configured, soft // 2))


LISTEN_BACKLOG = 1024     # the kernel's queue of connections not yet accepted


def accept_batch() -> int:
    """How many connections asyncio accepts in one go (its ``backlog``
    argument): their file descriptors are taken before the cap closes anyone
    (a closed connection frees its descriptor one loop turn later), so it is
    kept to an eighth of the file limit; past the limit, accepting stops for
    a second and /healthz waits.  The kernel's queue is set apart, larger
    (``LISTEN_BACKLOG``), so a burst of connections is not dropped (a dropped
    SYN costs the client a second)."""
    soft = _file_limit()
    return 128 if soft is None else max(8, min(128, soft // 8))


class ConnectionGuard:
    """The connections open now, oldest first, and which are inside a request."""

    def __init__(self, limit: int, factory=None):
        self.factory = factory            # aiohttp's Server: makes a RequestHandler
        self.limit = limit
        self.conns: dict[_Guarded, None] = {}      # insertion order: oldest first
        self.by_handler: dict[object, _Guarded] = {}
        self.evicted = 0
        self.refused = 0

    def __call__(self) -> asyncio.Protocol:
        return _Guarded(self, self.factory())

    def admit(self, conn: _Guarded) -> bool:
        if len(self.conns) >= self.limit:
            victim = next((c for c in self.conns if not c.busy), None)
            if victim is None:
                self.refused += 1
                LIMITED.warning("connections-full", "API: %d connections, all inside a request: "
                                "refusing %s", len(self.conns), conn.peer)
                return False
            self.evicted += 1
            LIMITED.warning("connections-evict", "API: %d connections open: closing the oldest "
                            "idle or half-sent one (%s) for %s", len(self.conns), victim.peer,
                            conn.peer)
            victim.close()
            self.release(victim)
        self.conns[conn] = None
        self.by_handler[conn.inner] = conn
        return True

    def release(self, conn: _Guarded) -> None:
        self.conns.pop(conn, None)
        self.by_handler.pop(conn.inner, None)

    @contextlib.contextmanager
    def busy(self, handler):
        """Mark the connection of aiohttp's ``request.protocol`` as inside a request."""
        conn = self.by_handler.get(handler)
        if conn is not None:
            conn.busy += 1
        try:
            yield
        finally:
            if conn is not None:
                conn.busy -= 1


class _Guarded(asyncio.Protocol):
    """aiohttp's RequestHandler for one connection, counted by the guard."""

    def __init__(self, guard: ConnectionGuard, inner):
        self.guard = guard
        self.inner = inner
        self.transport: asyncio.Transport | None = None
        self.busy = 0
        self.admitted = False
        self.peer = "-"

    def connection_made(self, transport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        if not self.guard.admit(self):
            transport.write(_REFUSED)
            transport.close()
            return
        self.admitted = True
        self.inner.connection_made(transport)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self.admitted:
            self.inner.data_received(data)

    def eof_received(self):
        if self.admitted:
            return self.inner.eof_received()
        return None

    def pause_writing(self) -> None:
        if self.admitted:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.admitted:
            self.inner.resume_writing()

    def connection_lost(self, exc) -> None:
        self.guard.release(self)
        if self.admitted:
            self.admitted = False
            self.inner.connection_lost(exc)


class GuardedSite(web.BaseSite):
    """``web.TCPSite``, with every connection going through a ``ConnectionGuard``."""

    def __init__(self, runner: web.BaseRunner, host: str, port: int, guard: ConnectionGuard):
        super().__init__(runner, backlog=accept_batch())
        self._host = host
        self._port = port
        self.guard = guard

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        self.guard.factory = server
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self.guard, self._host, self._port,
                                                backlog=self._backlog)
        for sock in self._server.sockets:     # asyncio's wrappers have no listen()
            with socket.socket(fileno=os.dup(sock.fileno())) as same:
                same.listen(LISTEN_BACKLOG)
