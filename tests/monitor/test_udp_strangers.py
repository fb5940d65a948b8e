"""Datagrams from strangers (issue 12 item 2), on real loopback sockets:
garbage costs a counter, not a session; the allow-list and the shared secret
keep others out; a bad event held before the header, a failing consumer or
full session slots cost only the sender concerned."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import socket

import cbor2

from tests.monitor import fake_monitor as fm
from tests.monitor.receiver import Collector
from tests.monitor.test_receive_udp import SMALL, TESTLOG, Listener, assert_same_events

GOOD = SMALL
OTHER = TESTLOG.with_name("ghc-9.2-events.eventlog")
SECRET = "a shared secret for the tests"


def sign(body: bytes, secret: str = SECRET) -> bytes:
    """docs/monitor-protocol.md 3.4, written from the text: body, then the
    first 16 bytes of HMAC-SHA256 keyed with the secret's UTF-8 bytes."""
    return body + hmac.new(secret.encode(), body, hashlib.sha256).digest()[:16]


def bound_socket(host: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    return sock


async def send_bodies(bodies, address, host: str = "127.0.0.1", burst: int = 64) -> None:
    with bound_socket(host) as sock:
        for i, body in enumerate(bodies):
            sock.sendto(body, address)
            if i % burst == burst - 1:
                await asyncio.sleep(0.002)


GARBAGE = [b"", b"\x00", b"\xff" * 40, b"no cbor at all", cbor2.dumps([9, 9]),
           cbor2.dumps([1, [0, "three"]]), b"\xc2\x59\x07\x00" + b"\x7f" * 1792]


async def test_garbage_from_strangers_starts_no_session():
    async with Listener() as listener:
        for n in range(2, 40):
            await send_bodies(GARBAGE, listener.address, host=f"127.0.0.{n}")
        await listener.send(GOOD)
        await listener.ended()
        source = listener.source
        assert source.sessions.invalid_strangers == 38 * len(GARBAGE)
        assert [s["peer"].split(":")[0] for s in source.sessions.ended] == ["127.0.0.1"]
    (stream,) = listener.got.streams
    assert_same_events(stream.lines, GOOD)


async def test_senders_outside_the_allow_list_are_not_heard(caplog):
    caplog.set_level(logging.WARNING, logger="liveprof")
    async with Listener(allow=["127.0.0.2/32", "10.0.0.0/8"]) as listener:
        with bound_socket("127.0.0.1") as refused, bound_socket("127.0.0.2") as heard:
            await listener.send(OTHER, sock=refused.dup())
            await listener.send(GOOD, sock=heard.dup())
        await listener.ended()
        source = listener.source
        # (the kernel may drop a few datagrams of a burst; none of them made a session)
        assert 0.9 * len(fm.datagram_bodies(OTHER)) < source.refused_address \
            <= len(fm.datagram_bodies(OTHER))
        assert source.sessions.peers == {} and len(source.sessions.ended) == 1
    (stream,) = listener.got.streams
    assert stream.info.peer.startswith("127.0.0.2:")
    assert_same_events(stream.lines, GOOD)
    assert "datagram from 127.0.0.1 refused: not in the allow list" in caplog.text


async def test_with_a_secret_only_signed_datagrams_count():
    bodies = fm.datagram_bodies(GOOD)
    async with Listener(secret=SECRET) as listener:
        await send_bodies([sign(b, "not the secret, but long") for b in bodies[:3000]],
                          listener.address, host="127.0.0.3")
        await send_bodies(fm.datagram_bodies(OTHER), listener.address, host="127.0.0.2")
        await send_bodies([sign(b) for b in bodies], listener.address)
        await listener.ended()
        source = listener.source
        sent = 3000 + len(fm.datagram_bodies(OTHER))
        assert 0.9 * sent < source.sessions.unauthenticated <= sent
        assert len(source.sessions.ended) == 1 and source.sessions.ended[0]["peer"].startswith("127.0.0.1:")
    (stream,) = listener.got.streams
    assert_same_events(stream.lines, GOOD)


async def test_a_bad_event_held_before_the_header_costs_only_that_event():
    bodies = fm.datagram_bodies(GOOD, snapshot_after=None)
    log = fm.load_eventlog(GOOD.read_bytes())
    header = set(fm.header_bodies(log))
    events = [b for b in bodies if b not in header]
    # a CreateThread (4-byte payload) with a byte too many, sent before the header
    bad = fm.event_full(b"\x00\x00" + bytes(8) + b"\x00\x00\x00\x01" + b"!")
    async with Listener() as listener:
        await send_bodies(events[:50] + [bad] + events[50:100] + list(fm.header_bodies(log))
                          + events[100:], listener.address)
        await listener.ended()
    (stream,) = listener.got.streams
    assert stream.decode_error is None
    assert_same_events(stream.lines, GOOD)
    summary = listener.source.sessions.ended[0]
    assert summary["bad_held_events"] == 1 and summary["bad_datagrams"] == 0


class FailingFor(Collector):
    """A Collector whose consumers fail for streams from one address."""

    def __init__(self, host: str):
        super().__init__()
        self.host = host

    def __call__(self, info):
        consumer = super().__call__(info)
        if info.peer.startswith(self.host + ":"):
            def data(chunk):
                raise RuntimeError("sink exploded")
            consumer.data = data
        return consumer


async def test_a_failing_consumer_ends_only_its_own_session(caplog):
    listener = Listener()
    listener.got = FailingFor("127.0.0.2")
    with caplog.at_level(logging.ERROR, logger="liveprof.monitor_udp"):
        async with listener:
            with bound_socket("127.0.0.2") as bad:
                a = listener.send(OTHER, sock=bad.dup())
                b = listener.send(GOOD)
                await asyncio.gather(a, b)
            await listener.ended(2)
            assert not listener.task.done()
            assert listener.source.sessions.consumer_failures >= 1
    failed = [s for s in listener.got.streams if s.info.peer.startswith("127.0.0.2:")]
    good = [s for s in listener.got.streams if s.info.peer.startswith("127.0.0.1:")]
    assert failed and all(s.error == "its consumer failed" for s in failed)
    (good,) = good
    assert good.error is None
    assert_same_events(good.lines, GOOD)
    failures = [r.getMessage() for r in caplog.records if "consumer" in r.getMessage()]
    assert failures and all(m.startswith("monitor_udp 127.0.0.2:") for m in failures)


class FailingAt(Collector):
    """A Collector that cannot open the streams of one address, and whose
    consumers fail at the end for another."""

    def __init__(self, no_open: str, no_end: str):
        super().__init__()
        self.no_open, self.no_end = no_open, no_end

    def __call__(self, info):
        if info.peer.startswith(self.no_open + ":"):
            raise RuntimeError("no sink for it")
        consumer = super().__call__(info)
        if info.peer.startswith(self.no_end + ":"):
            end = consumer.end

            def failing_end(error):
                end(error)
                raise RuntimeError("sink exploded at the end")
            consumer.end = failing_end
        return consumer


async def test_a_consumer_failing_to_open_or_to_end_costs_only_its_sender(caplog):
    listener = Listener()
    listener.got = FailingAt(no_open="127.0.0.2", no_end="127.0.0.3")
    with caplog.at_level(logging.ERROR, logger="liveprof.monitor_udp"):
        async with listener:
            with bound_socket("127.0.0.2") as a, bound_socket("127.0.0.3") as b:
                await asyncio.gather(listener.send(OTHER, sock=a.dup()),
                                     listener.send(OTHER, sock=b.dup()),
                                     listener.send(GOOD))
            await listener.ended(2)
            assert not listener.task.done()
            assert listener.source.sessions.consumer_failures >= 2
    by_host = {s.info.peer.split(":")[0]: s for s in listener.got.streams}
    assert "127.0.0.2" not in by_host                 # never opened
    assert by_host["127.0.0.3"].ended and by_host["127.0.0.3"].error is None
    good = by_host["127.0.0.1"]
    assert good.ended and good.error is None
    assert_same_events(good.lines, GOOD)
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "monitor_udp 127.0.0.2:" in logged and "monitor_udp 127.0.0.3:" in logged


async def test_full_slots_give_way_to_a_sender_with_a_header():
    pause = fm.service_pause(True)
    async with Listener(max_sessions=3) as listener:
        for n in range(2, 12):      # valid messages, no header: sessions that hold nothing
            await send_bodies([pause], listener.address, host=f"127.0.0.{n}")
        await asyncio.sleep(0.05)
        assert len(listener.source.sessions.peers) == 3
        await listener.send(GOOD)
        await listener.ended()
        assert listener.source.sessions.evicted_sessions >= 8
    (stream,) = listener.got.streams
    assert_same_events(stream.lines, GOOD)


async def test_slots_held_by_sessions_with_a_header_are_kept():
    log = fm.load_eventlog(OTHER.read_bytes())
    async with Listener(max_sessions=2, idle_timeout=3) as listener:
        for n in (2, 3):
            await send_bodies(fm.header_bodies(log), listener.address, host=f"127.0.0.{n}")
        await asyncio.sleep(0.1)
        await send_bodies(fm.datagram_bodies(GOOD)[:100], listener.address)
        await asyncio.sleep(0.1)
        assert listener.source.sessions.dropped_sessions == 100
        assert sorted(p.address.split(":")[0] for p in listener.source.sessions.peers.values()) == \
            ["127.0.0.2", "127.0.0.3"]
