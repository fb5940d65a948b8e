"""liveprof dials the test monitor over real loopback TCP."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct

import cbor2
import pytest

from ingest.sources.monitor_tcp import MonitorTcpConfig, MonitorTcpSource
from tests.corpus import DATA, all_logs, sibling
from tests.monitor import fake_monitor as fm
from tests.monitor.receiver import Collector, reference_without_caps

LOGS = {name: p for name, p in all_logs().items() if sibling(p, ".jsonl.gz").exists()}
SMALL = DATA / "threads-mvar.nonthreaded.l.eventlog"


def source(port: int, **kw) -> MonitorTcpSource:
    kw.setdefault("backoff_initial", 0.02)
    kw.setdefault("backoff_max", 0.2)
    return MonitorTcpSource(MonitorTcpConfig(host="127.0.0.1", port=port, **kw))


async def receive_once(monitor: fm.TcpMonitor, **kw) -> Collector:
    got = Collector()
    await asyncio.wait_for(source(monitor.port, once=True, **kw).run(got), 60)
    return got


@pytest.mark.parametrize("name", sorted(LOGS))
async def test_each_log_equals_its_reference_without_caps(name):
    with fm.TcpMonitor(LOGS[name], snapshot_after=None) as monitor:
        got = await receive_once(monitor)
    (stream,) = got.streams
    assert stream.ended and stream.error is None and stream.decode_error is None
    assert stream.lines == reference_without_caps(LOGS[name])


@pytest.mark.parametrize("max_size", [1, 40, 1200])
async def test_split_payloads_reassemble(max_size):
    with fm.TcpMonitor(SMALL, max_size=max_size, snapshot_after=None) as monitor:
        got = await receive_once(monitor)
    assert got.lines == reference_without_caps(SMALL)


async def test_state_snapshot_is_kept():
    with fm.TcpMonitor(SMALL, snapshot_after=300) as monitor:
        src = source(monitor.port, once=True)
        await asyncio.wait_for(src.run(Collector()), 30)
    # the fold of the first 300 events (in file order, cap 0's first): its threads
    state = src.state
    assert state is not None and state.last_update > 0
    assert state.threads[1].label == "main"
    assert {t.execution for t in state.threads.values()} <= {"created", "queued", "running",
                                                              "stopped", "migrated"}


async def test_reconnects_and_each_connection_is_a_session():
    ref = reference_without_caps(SMALL)
    with fm.TcpMonitor(SMALL, close_after=3000, resume=True) as monitor:
        got = Collector()
        task = asyncio.create_task(source(monitor.port).run(got))
        await got.wait(lambda g: len(g.lines) >= len(ref))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            async with asyncio.timeout(10):     # (a lost cancel fails here, not hangs)
                await task
    # 13,8xx events at 3000 a connection: at least 5 connections, each its own stream
    assert 5 <= len(got.streams) <= monitor.connections
    assert all(s.ended for s in got.streams)
    # the monitor's shared channel gives each event to one connection: all arrive once
    assert got.lines == ref


async def test_dials_until_the_monitor_comes_up():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    got = Collector()
    task = asyncio.create_task(source(port).run(got))
    await asyncio.sleep(0.5)          # several refused attempts
    assert got.streams == []
    with fm.TcpMonitor(SMALL, port=port, hold_open=True):
        await got.wait(lambda g: len(g.lines) == len(reference_without_caps(SMALL)))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            async with asyncio.timeout(10):     # (a lost cancel fails here, not hangs)
                await task
    assert len(got.streams) == 1 and got.streams[0].ended


def header_then(bad: bytes) -> bytes:
    log = fm.load_eventlog(SMALL.read_bytes())
    good = b"".join(fm.frame(b) for b in fm.header_bodies(log))
    first = fm.frame(fm.event_full(fm.split_eventlog(SMALL.read_bytes())[1][0]))
    return good + first + bad


BAD_INPUT = {
    "garbage": b"this is not a monitor stream at all" * 10,
    "4 GB length": b"\xff\xff\xff\xff" + b"\0" * 64,
    "truncated CBOR": fm.frame(fm.event_full(b"\0" * 40)[:-5]),
    "wrong types": fm.frame(cbor2.dumps([2, [1, [0, "text, not bytes"]]])),
    "unknown constructor": fm.frame(cbor2.dumps([7, [0, 1]])),
    "undeclared event type": fm.frame(fm.event_full(struct.pack(">HQ", 999, 5))),
    "short event": fm.frame(fm.event_full(struct.pack(">HQ", 0, 5))),
    # issue 12 item 10: a 1.8 KB bignum (its error text once raised ValueError and ended
    # the source), value-sharing tags 40 levels deep (exponential repr)
    "bignum": fm.frame(b"\x82\x01\x82\x00\xc2\x59\x07\x00" + b"\x7f" * 1792),
    "value sharing": fm.frame(b"\x82\x03\x82\x00" + b"".join(
        b"\xd8\x1c\x82" for _ in range(40)) + b"\x00" + b"".join(
        b"\xd8\x1d" + cbor2.dumps(n) for n in range(40))),
    "header declares 0xffff": fm.frame(fm.header_type(fm.type_record(0xFFFF, 0, "end"))),
}


@pytest.mark.parametrize("name", BAD_INPUT)
async def test_bad_input_closes_that_connection_with_peer_and_offset(name, caplog):
    raw = header_then(BAD_INPUT[name])
    bad_offset = len(header_then(b""))
    caplog.set_level(logging.ERROR, logger="liveprof")
    with fm.TcpMonitor(SMALL, raw=raw, hold_open=True) as bad, \
            fm.TcpMonitor(SMALL, hold_open=True) as good:
        got_bad, got_good = Collector(), Collector()
        tasks = [asyncio.create_task(source(bad.port, once=True).run(got_bad)),
                 asyncio.create_task(source(good.port).run(got_good))]
        await asyncio.wait_for(tasks[0], 10)      # closed by us, not by the monitor
        await got_good.wait(lambda g: len(g.lines) == len(reference_without_caps(SMALL)))
        tasks[1].cancel()
        await asyncio.gather(tasks[1], return_exceptions=True)
    (stream,) = got_bad.streams
    assert stream.ended and stream.error
    # what came before the bad frame was kept: the first event
    assert stream.lines == reference_without_caps(SMALL)[:1]
    message = caplog.text
    assert f"127.0.0.1:{bad.port}" in message and f"offset {bad_offset}" in message
    assert got_good.lines == reference_without_caps(SMALL)


async def test_flood_of_split_headers_is_bounded(caplog):
    flood = [fm.event_split_header(i, 5) for i in range(20_000)]
    with fm.TcpMonitor(SMALL, extra_frames=flood) as monitor:
        got = await receive_once(monitor)
    assert got.lines == reference_without_caps(SMALL)
