"""The sending side, sans-IO (protocol/monitor/_sender.py, _fold.py, _blocks.py):
every test log goes through ``Encoder`` and back through the receiver's
``Session`` with each event's capability, fed whole and at random splits;
the folded snapshot equals the test monitor's fold (tests/monitor/
fake_monitor.py, written from the spec apart from liveprof's code); over
datagrams, lost, duplicated and reordered ones are counted, never wrong
(blocks are sent in order: a block given up for a later complete one gets
no event afterwards)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from protocol import Decoder, EventType
from protocol.monitor import (
    BlockHeader,
    BlockPart,
    EncodeError,
    Encoder,
    EventMessage,
    FrameReader,
    Full,
    Session,
    agent_capset,
    agent_identity,
    datagram_key,
    datagrams,
    decode_message,
    decode_state,
    encode_message,
    frames,
)
from tests.corpus import DATA
from tests.monitor import fake_monitor as fm

LOGS = sorted(p for p in DATA.glob("*.eventlog"))
BLOCK = int(EventType.BLOCK_MARKER)


def events(data: bytes, markers: bool = False) -> list[tuple]:
    return [(e.type, e.time, e.cap, e.fields) for e in Decoder().feed(data)
            if markers or e.type != BLOCK]


def encode(data: bytes, pieces: list[int], max_size: int | None = None) -> tuple[Encoder, list]:
    enc, units, at = Encoder(max_size=max_size), [], 0
    for size in pieces:
        units += enc.feed(data[at:at + size])
        at += size
    units += enc.feed(data[at:]) + enc.close()
    return enc, units


@pytest.mark.parametrize("path", LOGS, ids=lambda p: p.name)
def test_every_log_comes_back_with_its_capabilities(path):
    data = path.read_bytes()
    rng = random.Random(path.name)
    splits = [rng.randrange(1, 5000) for _ in range(200)]
    for pieces, max_size in (([], None), (splits, 1200), ([1] * 3000, None)):
        enc, units = encode(data, pieces, max_size)
        bodies = enc.snapshot() + (enc.header or []) + [b for u in units for b in u]
        session = Session()
        wire = FrameReader().feed(frames(bodies))
        out = session.receive_all([decode_message(b) for _, b in wire])
        assert events(out + b"\xff\xff") == events(data), (path.name, max_size)
        if enc.block_count:
            assert session.blocks.seen and session.blocks.stats.blocks == enc.block_count


@pytest.mark.parametrize("path", LOGS, ids=lambda p: p.name)
def test_the_snapshot_is_the_spec_fold(path):
    data = path.read_bytes()
    log = fm.load_eventlog(data)
    enc, _ = encode(data, [])
    s = Session()
    s.receive_all([decode_message(b) for b in enc.snapshot()])
    mine = s.state
    theirs = decode_state(fm.EventlogState.fold(log.parsed()).encode())
    assert mine == theirs


def test_the_agent_identity_rides_in_the_snapshot():
    data = (DATA / "threads-mvar-small.N2.l.eventlog").read_bytes()
    enc, _ = encode(data, [])
    ident = agent_capset("shop", "db-1", "prog", "1.0")
    s = Session()
    s.receive_all([decode_message(b) for b in enc.snapshot([ident])])
    assert agent_identity(s.state) == {"host": "db-1", "blocks": "1", "app": "shop",
                                       "program": "prog"}


def test_lost_duplicated_reordered_datagrams_are_counted_never_wrong():
    data = (DATA / "threads-mvar-small.N2.l.eventlog").read_bytes()
    enc, units = encode(data, [], 1200)
    key = datagram_key("x" * 16)
    rng = random.Random(5)
    bodies = [b for u in units for b in u]
    lost = set(rng.sample(range(len(bodies)), 40))
    sent = [b for i, b in enumerate(bodies) if i not in lost]
    sent += rng.sample(sent, 200)                     # duplicates, anywhere
    head = datagrams(enc.snapshot() + (enc.header or []), key)
    # reordered as a network does: each datagram moves up to 30 places
    order = sorted(range(len(sent)), key=lambda i: (i % len(bodies)) + rng.uniform(0, 30))
    grams = datagrams([sent[i] for i in order], key)
    s = Session(datagram=True)
    out = s.receive_all([decode_message(d) for d in head + grams])
    out += s.flush(float("inf"))
    got, whole = events(out + b"\xff\xff"), events(data)
    # every event that came has the same time, capability and fields as in the log
    assert not Counter(map(repr, got)) - Counter(map(repr, whole)) and len(got) < len(whole)
    lost_events = {i for i in lost if isinstance(decode_message(bodies[i]), BlockPart)}
    lost_headers = [i for i in lost if isinstance(decode_message(bodies[i]), BlockHeader)]
    st = s.blocks.stats
    if not lost_headers:
        assert st.missing_events == len(lost_events) == len(whole) - len(got)
    assert s.stats.duplicate_events == 200


def test_bytes_that_are_not_an_eventlog():
    with pytest.raises(EncodeError):
        Encoder().feed(b"GIF89a" + bytes(100))
    enc = Encoder()
    data = (DATA / "hello-ghc-8.6.5.eventlog").read_bytes()
    cut = data.index(b"datb") + 4
    enc.feed(data[:cut])
    with pytest.raises(EncodeError):
        enc.feed(b"\x7f\x00" + bytes(20))          # an undeclared event type


def test_the_end_record_ends_the_session():
    data = (DATA / "threads-mvar-small.N2.l.eventlog").read_bytes()
    enc, units = encode(data, [], 1200)
    assert enc.ended
    end = encode_message(EventMessage(Full(b"\xff\xff")))
    bodies = enc.snapshot() + (enc.header or []) + [b for u in units for b in u]
    s = Session(datagram=True)
    # the last block's header comes last: the block is incomplete until the end
    last = max(i for i, b in enumerate(bodies) if isinstance(decode_message(b), BlockHeader))
    order = bodies[:last] + bodies[last + 2:] + [end, end] + bodies[last:last + 2]
    out = s.receive_all([decode_message(b) for b in order])
    dec = Decoder()
    got = [(e.type, e.time, e.cap, e.fields) for e in dec.feed(out) if e.type != BLOCK]
    assert s.ended and dec.close().complete and s.stats.after_end == 3
    whole = events(data)
    assert len(got) < len(whole) and got == [e for e in whole if e in got]
