"""Packed datagrams (docs/monitor-protocol.md 3.3 rule 1b), on real loopback
sockets: several whole messages in one datagram give the collector the same
events as one message a datagram; copies of a packed datagram are dropped as
duplicates; a malformed item ends its datagram (counted), the messages
before it stand; a tag after a packed datagram is checked with the secret
and ignored without it; a stranger's packed garbage starts no session.  The
agent's side (``UdpOut``): messages given together leave in one datagram,
a partly filled one within milliseconds, one message each with
``pack=False``."""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter

from ingest.agent import UdpOut
from ingest.agent.core import Counters
from protocol.monitor import EventMessage, Full, decode_datagram, decode_message, sign_datagram
from tests.monitor import fake_monitor as fm
from tests.monitor.test_receive_udp import SMALL, Listener, assert_same_events
from tests.monitor.test_udp_strangers import SECRET, send_bodies

LIMIT = 1400


def pack(bodies: list[bytes], room: int = LIMIT - 1) -> list[bytes]:
    """Whole messages one after another, each datagram under ``room`` + 1
    bytes (written from the spec's text, not from the agent's code)."""
    out: list[bytes] = []
    cur = b""
    for b in bodies:
        if cur and len(cur) + len(b) > room:
            out.append(cur)
            cur = b""
        cur += b
    return out + [cur] if cur else out


async def receive(datagrams: list[bytes], **cfg):
    async with Listener(**cfg) as listener:
        await send_bodies(datagrams, listener.address)
        await listener.ended()
    (stream,) = listener.got.streams
    return stream, listener.source.sessions.ended[0], listener


async def test_packed_datagrams_give_the_same_events_as_one_message_each():
    bodies = fm.datagram_bodies(SMALL)
    packed = pack(bodies)
    counts = [len(decode_datagram(d)[0]) for d in packed]
    assert all(len(d) < LIMIT for d in packed) and sum(counts) == len(bodies)
    assert len(packed) * 5 < len(bodies) and max(counts) > 20
    one, one_summary, _ = await receive(bodies)
    many, many_summary, _ = await receive(packed)
    assert_same_events(many.lines, SMALL)
    assert many.lines == one.lines
    assert many_summary["bad_datagrams"] == one_summary["bad_datagrams"] == 0
    assert many_summary["datagrams"] == len(packed)


async def test_copies_of_packed_datagrams_are_dropped_as_duplicates():
    packed = pack(fm.datagram_bodies(SMALL))
    twice = [d for d in packed for _ in range(2)]
    stream, summary, _ = await receive(twice)
    assert_same_events(stream.lines, SMALL)
    assert summary["duplicate_events"] > 0 and summary["bad_datagrams"] == 0


async def test_a_malformed_item_ends_its_datagram_and_the_items_before_stand():
    bodies = fm.datagram_bodies(SMALL)
    events = [i for i, b in enumerate(bodies) if isinstance(decode_message(b), EventMessage)]
    a, b, c, d = events[10:14]
    assert [a, b, c, d] == list(range(a, a + 4))
    # items a, b, then garbage, then c: a and b arrive, c does not (the rest of the
    # datagram is not read), d comes in its own datagram
    bad = bodies[a] + bodies[b] + b"\xff\x00garbage" + bodies[c]
    sent = bodies[:a] + [bad, bodies[d]] + bodies[d + 1:]
    stream, summary, _ = await receive(sent)
    assert summary["bad_datagrams"] == 1
    reference, _, _ = await receive(bodies[:c] + bodies[c + 1:])
    assert Counter(stream.lines) == Counter(reference.lines)
    lost = decode_message(bodies[c])
    assert isinstance(lost, EventMessage) and isinstance(lost.payload, Full)
    assert len(stream.lines) == len(reference.lines)
    whole, _, _ = await receive(bodies)
    assert len(whole.lines) == len(stream.lines) + 1


async def test_tags_of_packed_datagrams():
    packed = pack(fm.datagram_bodies(SMALL), LIMIT - 1 - 16)
    signed = [sign_datagram(d, SECRET.encode()) for d in packed]
    assert all(len(d) < LIMIT for d in signed)
    # with the secret: checked, then every message read
    stream, summary, _ = await receive(signed, secret=SECRET)
    assert_same_events(stream.lines, SMALL)
    assert summary["bad_datagrams"] == 0 and summary["unauthenticated"] == 0
    # without it: the 16 bytes after the last message are the tag, not an error
    stream, summary, _ = await receive(signed)
    assert_same_events(stream.lines, SMALL)
    assert summary["bad_datagrams"] == 0
    # a wrong tag: nothing of the datagram is read
    wrong = [d[:-1] + bytes([d[-1] ^ 1]) for d in signed]
    async with Listener(secret=SECRET) as listener:
        await send_bodies(wrong, listener.address)
        await send_bodies(signed, listener.address)
        await listener.ended()
        assert listener.source.sessions.unauthenticated == len(wrong)
    assert len(listener.got.streams) == 1


async def test_packed_garbage_from_a_stranger_starts_no_session():
    garbage = [b"\xff" * 40 + fm.header_length(3), b"\x00" * 100, b"\x9f" * 30]
    async with Listener() as listener:
        await send_bodies(garbage, listener.address, host="127.0.0.2")
        await listener.send(SMALL)
        await listener.ended()
        assert listener.source.sessions.invalid_strangers == len(garbage)
        assert [s["peer"].split(":")[0] for s in listener.source.sessions.ended] == ["127.0.0.1"]


class _Run:
    """What ``UdpOut`` asks of a run: its snapshot (here one message)."""

    def snapshot(self) -> list[bytes]:
        return [fm.header_length(1)]


async def _agent_datagrams(pack_them: bool, units: list[list[bytes]]) -> list[tuple[float, bytes]]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        sink.setblocking(False)
        out = UdpOut([("127.0.0.1", sink.getsockname()[1])], Counters(), pack=pack_them)
        await out.start()
        out.run_started(_Run())     # type: ignore[arg-type]  # (only its snapshot is used)
        sent = time.monotonic()
        for unit in units:
            out.unit(unit)
        got: list[tuple[float, bytes]] = []
        loop = asyncio.get_running_loop()
        while True:
            try:
                data = await asyncio.wait_for(loop.sock_recv(sink, 65536), 0.5)
            except TimeoutError:
                break
            got.append((time.monotonic() - sent, data))
        await out.close()
    return got


async def test_the_agent_packs_and_flushes_within_milliseconds():
    events = [fm.event_full(bytes(20) + bytes([i])) for i in range(200)]
    got = await _agent_datagrams(True, [events[:3], events[3:]])
    messages = [m for _, d in got for m in decode_datagram(d)[0]]
    assert messages == [decode_message(b) for b in [fm.header_length(1), *events]]
    assert all(len(d) < LIMIT for _, d in got) and len(got) <= 5
    # a few messages, nothing after them: they leave at the next pump tick (2 ms)
    got = await _agent_datagrams(True, [events[:2]])
    assert len(got) == 1 and len(decode_datagram(got[0][1])[0]) == 3
    assert got[0][0] < 0.1
    # --no-pack: one message a datagram, as before
    got = await _agent_datagrams(False, [events[:3], events[3:]])
    assert [len(decode_datagram(d)[0]) for _, d in got] == [1] * 201
