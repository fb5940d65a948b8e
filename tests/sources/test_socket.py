"""The eventlog-socket source over real Unix and TCP sockets."""

from __future__ import annotations

import asyncio

import pytest

from ingest.sources.socket import SocketConfig, SocketSource, parse_target
from tests.corpus import all_logs, log_id, pick
from tests.servers import wait_for
from tests.sources.helpers import (
    EventlogServer,
    Streams,
    cancel,
    fd_targets,
    open_fds,
    other_tasks,
)

LOGS = all_logs()
SOME = ["threads-mvar.nonthreaded.l", "hello-ghc-8.6.5", "trace-binary-event",
        log_id(pick("gc-heap.N2.hT", "gc-heap-small.N2.hT"))]   # about 1 MB in the full corpus
SMALL = LOGS["hello-ghc-8.6.5"].read_bytes()


def source(address: str, **kw) -> SocketSource:
    kw.setdefault("backoff_initial", 0.02)
    kw.setdefault("backoff_max", 0.1)
    return SocketSource(SocketConfig(address=address, **kw))


@pytest.fixture(params=["unix", "tcp"])
def mode(request):
    return request.param


def server_for(mode, tmp_path, log: bytes, **kw) -> EventlogServer:
    if mode == "unix":
        return EventlogServer(log, unix_path=str(tmp_path / "prog.sock"), **kw)
    return EventlogServer(log, **kw)


def test_addresses():
    assert parse_target("unix:/run/x.sock") == ("unix", "/run/x.sock")
    assert parse_target("./x.sock") == ("unix", "./x.sock")
    assert parse_target("127.0.0.1:4242") == ("tcp", ("127.0.0.1", 4242))
    assert parse_target("[::1]:4242") == ("tcp", ("::1", 4242))
    for bad in ("localhost", "unix:", "host:notaport"):
        with pytest.raises(ValueError):
            SocketConfig(address=bad)
    with pytest.raises(ValueError):
        SocketConfig(address="127.0.0.1:1", colour="blue")


@pytest.mark.parametrize("name", SOME)
async def test_one_connection_is_one_stream_with_the_log_s_bytes(mode, tmp_path, name):
    log = LOGS[name].read_bytes()
    server = await server_for(mode, tmp_path, log, chunk=8191).start()
    got = Streams()
    try:
        await asyncio.wait_for(source(server.address, once=True).run(got), 30)
    finally:
        await server.stop()
    (stream,) = got.streams
    assert stream.ended and stream.error is None
    assert bytes(stream.data) == log


async def test_each_connection_gets_the_header_again_and_is_a_new_session(mode, tmp_path):
    fds, tasks = open_fds(), other_tasks()
    server = await server_for(mode, tmp_path, SMALL).start()
    got = Streams()
    src = source(server.address)
    task = asyncio.create_task(src.run(got), name="source:socket")
    await got.wait(lambda g: len(g.ended()) >= 3)
    await cancel(task)
    await server.stop()
    assert src.connections >= 3 and len(got.streams) == src.connections
    for s in got.ended()[:3]:
        assert bytes(s.data) == SMALL and s.error is None
    assert [s.info.number for s in got.streams] == list(range(1, len(got.streams) + 1))
    assert all(s.ended for s in got.streams)
    assert other_tasks() == tasks
    assert open_fds() == fds, (fds, fd_targets())


async def test_reconnects_after_the_program_restarts(mode, tmp_path):
    fds = open_fds()
    half = len(SMALL) // 2
    server = await server_for(mode, tmp_path, SMALL, hold_after=half).start()
    got = Streams()
    src = source(server.address)
    task = asyncio.create_task(src.run(got))
    await got.wait(lambda g: len(g.streams) == 1 and len(g.streams[0].data) > 0)
    await server.stop()                       # the program dies mid-stream
    await got.wait(lambda g: g.streams[0].ended)
    refused = src.failed_dials
    # it is down: dialling is refused, and retried
    await wait_for(lambda: src.failed_dials >= refused + 2, 20, interval=0.02)
    restarted = await server_for(mode, tmp_path, SMALL, port=server.port).start()
    await got.wait(lambda g: len(g.ended()) == 2)
    await cancel(task)
    await restarted.stop()
    first, second = got.streams[:2]
    assert SMALL[:half].startswith(bytes(first.data)) and "before the end marker" in first.error
    assert bytes(second.data) == SMALL and second.error is None
    assert len(got.streams) == src.connections
    assert open_fds() == fds, (fds, fd_targets())


async def test_dials_until_the_program_is_up(mode, tmp_path):
    server = server_for(mode, tmp_path, SMALL)
    if mode == "tcp":
        probe = await EventlogServer(SMALL).start()
        server.port = probe.port              # a port nothing listens on now
        await probe.stop()
    got = Streams()
    src = source(server.address)
    task = asyncio.create_task(src.run(got))
    await wait_for(lambda: src.failed_dials >= 3, 20, interval=0.02)
    assert got.streams == []
    await server.start()
    await got.wait(lambda g: len(g.ended()) >= 1)
    await cancel(task)
    await server.stop()
    assert bytes(got.streams[0].data) == SMALL and got.streams[0].error is None


async def test_a_dropped_connection_ends_its_stream_with_an_error_naming_the_address(
        mode, tmp_path, caplog):
    server = await server_for(mode, tmp_path, SMALL, cut_after=len(SMALL) // 2).start()
    got = Streams()
    try:
        await asyncio.wait_for(source(server.address, once=True).run(got), 30)
    finally:
        await server.stop()
    (stream,) = got.streams
    # a reset (TCP) or end-of-file (Unix) before the end marker
    assert stream.ended and stream.error
    assert "connection lost" in stream.error or "before the end marker" in stream.error
    where = server.unix_path if mode == "unix" else f"127.0.0.1:{server.port}"
    assert where in stream.error and any(where in r.getMessage() for r in caplog.records)
    assert SMALL.startswith(bytes(stream.data))


async def test_one_bad_stream_never_stops_the_others(tmp_path):
    good = await EventlogServer(SMALL, unix_path=str(tmp_path / "good.sock")).start()
    bad = await EventlogServer(SMALL, cut_after=100).start()
    got_good, got_bad = Streams(fail_stream=1), Streams()
    tasks = [asyncio.create_task(source(good.address).run(got_good)),
             asyncio.create_task(source(bad.address).run(got_bad))]
    # the good program's first consumer raises: that connection is closed, the
    # next one is whole; the bad program keeps resetting its connections
    await got_good.wait(lambda g: len(g.ended()) >= 2)
    await got_bad.wait(lambda g: len(g.ended()) >= 2)
    for t in tasks:
        await cancel(t)
    await good.stop()
    await bad.stop()
    first, second = got_good.streams[:2]
    assert first.error and "consumer failed" in first.error
    assert bytes(second.data) == SMALL and second.error is None
    assert all(s.error for s in got_bad.ended())
