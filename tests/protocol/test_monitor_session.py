"""Reassembly and sessions of the monitor protocol, on synthetic messages."""

import random
import struct

import pytest

from protocol import Decoder
from protocol.monitor import (
    BlockHeader,
    Budget,
    EventlogState,
    EventMessage,
    Full,
    HeaderChanged,
    HeaderLength,
    HeaderType,
    Part,
    Reassembler,
    ServicePause,
    Session,
    SessionError,
    SplitHeader,
    StateError,
    StateMessage,
    encode_state,
    split_payload,
)


def type_record(type_id: int, size: int | None, desc: str) -> bytes:
    d = desc.encode()
    return (b"etb\0" + struct.pack(">HHI", type_id, 0xFFFF if size is None else size, len(d))
            + d + b"\0\0\0\0" + b"ete\0")


class Decoded:
    """A session and the decoder its bytes go to."""

    def __init__(self, **options):
        self.session = Session(**options)
        self.decoder = Decoder()

    def receive_all(self, msgs):
        self.data = self.session.receive_all(msgs)
        return self.decoder.feed(self.data)

    def receive(self, msg):
        return self.receive_all([msg])


HEADER = [type_record(19, None, "User message"), type_record(0, 4, "Create thread"),
          type_record(18, 14, "Block marker")]


def user_message(t: int, text: str) -> bytes:
    b = text.encode()
    return struct.pack(">HQH", 19, t, len(b)) + b


def create_thread(t: int, tid: int) -> bytes:
    return struct.pack(">HQI", 0, t, tid)


def header_msgs():
    return [HeaderLength(len(HEADER))] + [HeaderType(r) for r in HEADER]


# -- reassembly ------------------------------------------------------------------------------

def test_parts_in_any_order_with_duplicates_and_late_header():
    payload = bytes(range(256)) * 3
    msgs = split_payload(payload, 100, msg_id=9)
    rng = random.Random(1)
    for _ in range(20):
        order = msgs + rng.sample(msgs, 3)
        rng.shuffle(order)
        r = Reassembler()
        got = [x for m in order if (x := r.add("event", m, 0.0)) is not None]
        assert got == [payload]
        assert r.pending == 0 and r.held_bytes == 0
        assert r.stats.completed == 1 and r.stats.duplicates == 3


def test_incomplete_messages_expire_and_are_counted():
    r = Reassembler(timeout=10)
    r.add("event", SplitHeader(1, 2), now=0)
    r.add("event", Part(1, 0, b"a"), now=0)
    r.add("event", Part(2, 0, b"b"), now=5)
    assert r.expire(now=11) == 1 and r.pending == 1
    assert r.expire(now=16) == 1 and r.pending == 0 and r.stats.expired == 2
    assert r.held_bytes == 0
    # a late part of an expired message does not start it again
    assert r.add("event", Part(1, 1, b"c"), now=17) is None and r.pending == 0


def test_flood_of_split_headers_is_bounded():
    budget = Budget(10_000)
    a = Reassembler(max_messages=50, budget=budget)
    b = Reassembler(max_messages=50, budget=budget)
    for i in range(10_000):
        a.add("event", SplitHeader(i, 3), 0.0)
    assert a.pending <= 50 and a.stats.evicted >= 10_000 - 50
    for i in range(100):
        b.add("event", Part(i, 0, b"x" * 500), 0.0)
    assert budget.used <= budget.limit
    assert b.stats.evicted > 0
    assert budget.used == a.held_bytes + b.held_bytes


def test_contradicting_parts_are_invalid():
    r = Reassembler()
    r.add("event", Part(1, 5, b"x"), 0.0)
    assert r.add("event", SplitHeader(1, 2), 0.0) is None   # part 5 of 2
    assert r.stats.invalid == 1 and r.pending == 0
    r.add("event", SplitHeader(2, 2), 0.0)
    assert r.add("event", Part(2, 2, b"x"), 0.0) is None
    assert r.stats.invalid == 2
    assert r.add("event", SplitHeader(3, 0), 0.0) is None and r.stats.invalid == 3


def test_channels_do_not_mix():
    r = Reassembler()
    assert r.add("state", Part(1, 0, b"s"), 0.0) is None
    assert r.add("event", SplitHeader(1, 1), 0.0) is None
    assert r.add("event", Part(1, 0, b"e"), 0.0) == b"e"
    assert r.add("state", SplitHeader(1, 1), 0.0) == b"s"


# -- sessions --------------------------------------------------------------------------------

def test_tcp_sequence_decodes_events_with_no_capability():
    d = Decoded()
    s = d.session
    state = StateMessage(Full(encode_state(EventlogState(last_update=5))))
    evs = [user_message(10, "START x"), create_thread(20, 1), user_message(30, "STOP x")]
    got = d.receive_all([state] + header_msgs() + [EventMessage(Full(e)) for e in evs])
    assert [(e.name, e.time, e.cap) for e in got] == [
        ("UserMessage", 10, None), ("CreateThread", 20, None), ("UserMessage", 30, None)]
    assert d.data.startswith(b"hdrbhetb") and d.data.endswith(b"".join(evs))
    assert s.state == EventlogState(last_update=5) and s.stats.states == 1
    assert s.stats.events == 3


def test_events_before_header_are_held_then_bounded():
    d = Decoded(datagram=True, hold_events=2)
    s = d.session
    evs = [user_message(t, f"m{t}") for t in range(4)]
    for e in evs:
        assert s.receive(EventMessage(Full(e))) == b""
    assert s.held == 2 and s.stats.dropped_before_header == 2
    # header records may come before their length
    got = d.receive_all([HeaderType(r) for r in reversed(HEADER)] + [HeaderLength(3)])
    assert [e.fields[0] for e in got] == ["m0", "m1"]


def test_repeated_header_is_accepted_and_a_different_one_restarts():
    s = Session(datagram=True)
    s.receive_all(header_msgs())
    assert s.receive_all(header_msgs()) == b""
    assert s.stats.repeated_headers == 4
    with pytest.raises(HeaderChanged):
        s.receive(HeaderLength(2))
    with pytest.raises(HeaderChanged):
        s.receive(HeaderType(type_record(19, None, "User msg")))
    with pytest.raises(HeaderChanged):
        s.receive(HeaderType(type_record(7, 4, "new type")))


def test_datagram_mode_drops_recent_identical_records():
    d = Decoded(datagram=True, dedupe=2)
    d.receive_all(header_msgs())
    a, b, c = (user_message(t, "x") for t in (1, 2, 3))
    got = d.receive_all([EventMessage(Full(x)) for x in (a, a, b, a, c, a)])
    # a is forgotten once the window (2 records) has moved past it
    assert [e.time for e in got] == [1, 2, 3, 1]
    assert d.session.stats.duplicate_events == 2
    tcp = Decoded()
    tcp.receive_all(header_msgs())
    assert len(tcp.receive_all([EventMessage(Full(a))] * 3)) == 3


def test_bad_records_are_rejected_alone_and_earlier_events_kept():
    d = Decoded()
    d.receive_all(header_msgs())
    good = EventMessage(Full(user_message(1, "ok")))
    for bad in [user_message(2, "ok")[:-1], create_thread(3, 1) + b"x",
                struct.pack(">HQ", 99, 4), b"\x00\x13"]:
        with pytest.raises(SessionError) as info:
            d.session.receive_all([good, EventMessage(Full(bad)), good])
        assert info.value.index == 1
        assert [e.fields[0] for e in d.decoder.feed(info.value.data)] == ["ok"]
    # the decoder never saw a bad record
    assert len(d.receive(good)) == 1


def test_block_markers_and_block_headers_are_ignored():
    d = Decoded()
    s = d.session
    d.receive_all(header_msgs())
    marker = struct.pack(">HQIQH", 18, 5, 100, 50, 0)
    got = d.receive_all([EventMessage(Full(marker)), BlockHeader(0, 1, 2, 0, 10),
                         ServicePause(True), EventMessage(Full(create_thread(6, 2)))])
    assert [(e.name, e.cap) for e in got] == [("CreateThread", None)]
    assert s.stats.block_markers == 1 and s.stats.block_headers == 1 and s.stats.service == 1


def test_bad_header_record_and_bad_state():
    with pytest.raises(SessionError):
        Session().receive(HeaderType(b"etb\0" + b"\0" * 20))
    with pytest.raises(StateError):
        Session().receive(StateMessage(Full(b"\x87\x00")))


def test_split_events_through_a_session():
    d = Decoded(datagram=True)
    d.receive_all(header_msgs())
    big = user_message(7, "y" * 3000)
    msgs = [EventMessage(p) for p in split_payload(big, 1200, msg_id=0)]
    random.Random(3).shuffle(msgs)
    got = d.receive_all(msgs)
    assert [e.fields[0] for e in got] == ["y" * 3000]
