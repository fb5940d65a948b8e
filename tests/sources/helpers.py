"""Helpers for the source tests: a consumer that keeps each stream's bytes,
descriptor and task accounting, and an eventlog-socket style test server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
from dataclasses import dataclass, field


@dataclass
class Got:
    info: object
    data: bytearray = field(default_factory=bytearray)
    ended: bool = False
    error: str | None = None


class Streams:
    """An ``Opener`` keeping every stream's bytes and end.  ``fail_stream``:
    the consumer of that stream number raises on its first data."""

    def __init__(self, fail_stream: int | None = None):
        self.streams: list[Got] = []
        self.changed = asyncio.Event()
        self.fail_stream = fail_stream

    def __call__(self, info):
        got = Got(info)
        self.streams.append(got)
        owner = self

        class Consumer:
            def data(self, chunk: bytes) -> None:
                assert not got.ended, "data after the end"
                assert isinstance(chunk, bytes) and chunk
                if info.number == owner.fail_stream:
                    raise RuntimeError("this consumer is broken")
                got.data += chunk
                owner.changed.set()

            def end(self, error):
                assert not got.ended, "a stream ended twice"
                got.ended, got.error = True, error
                owner.changed.set()

        return Consumer()

    def ended(self) -> list[Got]:
        return [s for s in self.streams if s.ended]

    async def wait(self, predicate, timeout: float = 20.0) -> None:
        async def loop():
            while not predicate(self):
                self.changed.clear()
                await self.changed.wait()
        await asyncio.wait_for(loop(), timeout)


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def fd_targets() -> dict[str, str]:
    out = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            out[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            pass
    return out


def other_tasks() -> set:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


async def cancel(task: asyncio.Task) -> None:
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass


class EventlogServer:
    """Serves an eventlog the eventlog-socket way: every client that connects
    gets the whole log from its header (in ``chunk``-byte writes), then the
    connection is closed (``hold_open=False``) or kept until ``stop()``.
    ``cut_after``: send only that many bytes, then reset the connection;
    ``hold_after``: send that many bytes, then wait (a live program) until
    ``stop()``."""

    def __init__(self, log: bytes, unix_path: str | None = None, port: int = 0,
                 chunk: int = 4096, hold_open: bool = False, cut_after: int | None = None,
                 hold_after: int | None = None):
        self.log = log
        self.unix_path = unix_path
        self.port = port
        self.chunk = chunk
        self.hold_open = hold_open
        self.cut_after = cut_after
        self.hold_after = hold_after
        self.clients = 0
        self.server: asyncio.AbstractServer | None = None
        self._writers: set = set()
        self._stop = asyncio.Event()

    @property
    def address(self) -> str:
        return f"unix:{self.unix_path}" if self.unix_path else f"127.0.0.1:{self.port}"

    async def start(self) -> EventlogServer:
        self._stop.clear()
        if self.unix_path:
            self.server = await asyncio.start_unix_server(self._serve, self.unix_path)
        else:
            self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
            self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        self._stop.set()
        self.server.close()
        for w in list(self._writers):
            w.close()
        await self.server.wait_closed()
        for w in list(self._writers):
            try:
                await w.wait_closed()
            except OSError:
                pass
        if self.unix_path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.unix_path)

    async def _serve(self, reader, writer) -> None:
        self.clients += 1
        self._writers.add(writer)
        try:
            data = self.log[:self.cut_after or self.hold_after or len(self.log)]
            for i in range(0, len(data), self.chunk):
                writer.write(data[i:i + self.chunk])
                await writer.drain()
            if self.cut_after is not None:
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
                return
            if self.hold_open or self.hold_after is not None:
                await self._stop.wait()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
            self._writers.discard(writer)
