"""Shared pieces of the alert tests: corpus points, waiting, a subscriber."""

from __future__ import annotations

import asyncio
import json
import shutil
import struct
import subprocess
from pathlib import Path

import aiomqtt

from ingest.chunks import read_chunks
from ingest.derive.base import DeriveSettings
from ingest.derive.order import OrderSettings
from ingest.derive.pipeline import Identity, Pipeline
from ingest.session import prescan
from protocol import Decoder
from tests.corpus import DATA

# a guard against a hung test, never an assertion about speed
GUARD = 60.0


def derive_points(path: Path, *, app: str | None = None, session: str | None = None,
                  host: str = "test-host", window_ns: int = 1_000_000_000) -> list:
    """The log's points, made as ``liveprof derive`` makes them (pre-scan, whole-file order)."""
    start_wall, preamble = prescan(str(path))
    pipe = Pipeline(DeriveSettings(window_ns=window_ns),
                    Identity(app=app, host=host, session=session, start_wall_ns=start_wall),
                    order=OrderSettings(live=False), preamble=preamble)
    decoder = Decoder(only=pipe.wants)
    points = []
    for chunk in read_chunks(str(path)):
        points += pipe.feed(decoder.feed(chunk))
    decoder.close()
    points += pipe.close()
    return points


def gc_log() -> Path:
    """A corpus log with many collections of different lengths, generations and kinds."""
    return DATA / "parallelTest.eventlog"


def gc_points(points) -> list:
    return [p for p in points if p.measurement == "gc"]


async def wait_until(predicate, what: str, guard: float = GUARD, step: float = 0.02) -> None:
    try:
        async with asyncio.timeout(guard):
            while not predicate():  # noqa: ASYNC110  (any state, e.g. counters: no event to wait on)
                await asyncio.sleep(step)
    except TimeoutError:
        raise AssertionError(f"gave up waiting for {what}") from None


class Subscriber:
    """An aiomqtt subscriber on ``<prefix>#`` that keeps what it receives.

    ``persistent``: a fixed client id and no clean session, so the broker keeps
    the subscription and queues QoS 1 messages while it is offline (and, with
    persistence on, across a broker restart)."""

    def __init__(self, host: str, port: int, prefix: str, *, client_id: str | None = None):
        self.host, self.port, self.prefix = host, port, prefix
        self.client_id = client_id
        self.messages: list[tuple[str, dict]] = []
        self._task: asyncio.Task | None = None
        self._subscribed = asyncio.Event()

    async def __aenter__(self):
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self._subscribed.wait(), GUARD)
        return self

    async def __aexit__(self, *exc):
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self):
        while True:
            try:
                async with aiomqtt.Client(self.host, self.port, identifier=self.client_id,
                                          clean_session=False if self.client_id else None) as c:
                    await c.subscribe(self.prefix + "#", qos=1)
                    self._subscribed.set()
                    async for m in c.messages:
                        self.messages.append((m.topic.value, json.loads(m.payload)))
            except aiomqtt.MqttError:
                await asyncio.sleep(0.1)  # the broker is away: dial again

    def alerts(self) -> list[tuple[str, dict]]:
        return [(t, p) for t, p in self.messages if t.startswith(self.prefix) and "alert" in p]

    async def sentinel(self, text: str = "end") -> None:
        """Publish a marker on the prefix and wait until it comes back: every
        message the broker acknowledged before it has then been delivered."""
        topic = f"{self.prefix}sentinel/{text}"
        async with aiomqtt.Client(self.host, self.port) as c:
            await c.publish(topic, json.dumps({"sentinel": text}), qos=1)
        await wait_until(lambda: any(t == topic for t, _ in self.messages), f"sentinel {text}")


class TcpProxy:
    """A loopback TCP relay in front of the broker.  With ``black_hole`` set,
    what clients send is swallowed (the broker never sees a PUBLISH, so no
    PUBACK comes) while the connection stays up; ``cut()`` closes every
    connection."""

    def __init__(self, host: str, port: int):
        self.upstream = (host, port)
        self.black_hole = False
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self):
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc):
        self._server.close()
        self.cut()
        await self._server.wait_closed()

    def cut(self) -> None:
        for w in list(self._writers):
            w.close()

    async def _client(self, reader, writer):
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src, dst, upstream: bool):
            try:
                while data := await src.read(65536):
                    if upstream and self.black_hole:
                        continue
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                dst.close()

        try:
            await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))
        finally:
            self._writers -= {writer, up_writer}


def login_only(directory: Path, user: str, password: str) -> str:
    """Mosquitto settings that refuse anonymous clients and take one login
    (a password file, hashed by ``mosquitto_passwd``, written in ``directory``):
    the ``extra_config`` of a ``MosquittoServer`` (later lines win)."""
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    path = directory / "passwd"
    subprocess.run([tool, "-b", "-c", str(path), user, password], check=True, capture_output=True,
                   timeout=GUARD)
    return f"allow_anonymous false\npassword_file {path}"


def eventlog_with_program(path: Path, program: str) -> bytes:
    """The bytes of the eventlog at ``path`` with its ``ProgramArgs`` event
    (type 30) rewritten so the program name (its first argument) is
    ``program``; the size of the event and of the block holding it are
    adjusted.  What a program started under that name would have written."""
    data = path.read_bytes()
    (event,) = [e for e in _decode(data) if e.type == 30][:1]
    args = b"\0".join(a.encode() for a in event.fields[1])
    at = data.index(args) - 16  # type u16, time u64, size u16, capset u32
    (size,) = struct.unpack_from(">H", data, at + 10)
    assert struct.unpack_from(">H", data, at)[0] == 30 and size >= 4 + len(args), "ProgramArgs"
    new_args = b"\0".join([program.encode(), *[a.encode() for a in event.fields[1][1:]]]) + b"\0"
    assert 4 + len(new_args) < 1 << 16, "a ProgramArgs event holds at most 64 KiB"
    new_event = (data[at:at + 10] + struct.pack(">H", 4 + len(new_args))
                 + data[at + 12:at + 16] + new_args)
    end = at + 12 + size
    grow = len(new_event) - (end - at)
    out = bytearray(data[:at] + new_event + data[end:])
    # the block (type 18: time u64, size u32 from the marker's start) that holds it
    block = next(p for p in range(at - 2, -1, -1) if data[p:p + 2] == b"\x00\x12"
                 and p < at < p + struct.unpack_from(">I", data, p + 10)[0] <= len(data))
    struct.pack_into(">I", out, block + 10, struct.unpack_from(">I", data, block + 10)[0] + grow)
    return bytes(out)


def _decode(data: bytes) -> list:
    decoder = Decoder()
    events = decoder.feed(data)
    decoder.close()
    return events
