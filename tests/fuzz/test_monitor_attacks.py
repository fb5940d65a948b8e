"""The monitor-layer attacks of issue 12 item 10, replayed on the sans-IO code,
and the authenticated-datagram extension (docs/monitor-protocol.md 3.4)."""

from __future__ import annotations

import hashlib
import hmac
import struct
import tracemalloc

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import Decoder
from protocol.monitor import (
    TAG_SIZE,
    AuthError,
    EventMessage,
    Full,
    HeaderLength,
    HeaderType,
    MessageError,
    Session,
    SessionError,
    StateError,
    StateMessage,
    datagram_key,
    decode_message,
    sign_datagram,
    verify_datagram,
)
from protocol.monitor._messages import _show
from tests.protocol.test_monitor_session import HEADER, create_thread, header_msgs, type_record, user_message


def bignum_datagram(size: int) -> bytes:
    """``HeaderLength <bignum>``: tag 2 around a ``size``-byte big-endian number."""
    head = b"\x59" + struct.pack(">H", size)   # byte string, 2-byte length
    return b"\x82\x01\x82\x00\xc2" + head + b"\x7f" * size


def shared_lists(depth: int) -> bytes:
    """Value-sharing tags (28 shareable, 29 shared reference): each level is a
    list holding the level below twice, so ``depth`` levels mean 2**depth leaves
    in a few bytes per level."""
    item = b"\x00"
    for level in range(depth):
        item = b"\xd8\x1c\x82" + item + b"\xd8\x1d" + cbor2.dumps(level)
    return b"\x82\x03\x82\x00" + item      # [3, [0, <item>]]: a state payload in the wrong place


def test_a_huge_bignum_is_a_message_error():
    # >= 1,790 bytes: the digits exceed Python's int->str limit, which once
    # escaped as ValueError from the error message itself
    for size in (8, 1790, 4000):
        with pytest.raises(MessageError, match="tag 2"):
            decode_message(bignum_datagram(size))


def test_value_sharing_tags_are_refused_at_once():
    for depth in (3, 40):
        data = shared_lists(depth)
        assert len(data) < 300
        with pytest.raises(MessageError, match="tag 28"):
            decode_message(data)


def test_error_text_of_any_value_is_short():
    loop: list = []
    loop.append(loop)
    huge = 7 ** 20_000
    for value in (huge, -huge, loop, b"x" * 10**6, "y" * 10**6, {i: i for i in range(1000)},
                  3.5, None, object()):
        assert len(_show(value)) < 120


@pytest.mark.parametrize("data,what", [
    (b"\x82\x01\x82\x00\xfa\x3f\x80\x00\x00", "floating-point"),
    (b"\x82\x01\x82\x00\xf6", "simple value"),
    (b"\x82\x01\x82\x01\x5f\x41\x00\xff", "indefinite-length string"),
    (b"\x81" * 100 + b"\x00", "nesting deeper"),
    (b"\x9b\x00\x00\x00\x01\x00\x00\x00\x00", "cannot fit"),
    (b"\xbb\x00\x00\x00\x01\x00\x00\x00\x00", "cannot fit"),
    (b"\x82\x01\x82\x00\x7b\x00\x00\x00\x01\x00\x00\x00\x00", "runs past"),
    (b"\xa2\x01\x01\x01\x02", "repeats a key"),
    (b"\xa1\x81\x01\x01", "not an integer or a string"),
    (b"\x82\x01\x82\x00\x1c", "reserved"),
    # a frame may be 16 MiB: many tiny items would be millions of objects
    (b"\x82\x01\x82\x00\x99\x27\x10" + b"\x00" * 10_000, "more items than the bound"),
])
def test_cbor_outside_the_protocol_subset_is_refused(data, what):
    with pytest.raises(MessageError, match=what):
        decode_message(data)


def test_tags_in_a_state_snapshot_are_refused():
    session = Session()
    with pytest.raises(StateError, match="tag 28"):
        session.receive(StateMessage(Full(shared_lists(30)[4:])))


# the values the protocol's CBOR carries, as a general encoder writes them
values = st.recursive(
    st.integers(-(1 << 64), (1 << 64) - 1) | st.booleans() | st.binary(max_size=40)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5)
    | st.dictionaries(st.integers(-(1 << 63), 1 << 63) | st.text(max_size=5), inner,
                      max_size=4),
    max_leaves=30)


@settings(max_examples=300, deadline=None)
@given(values)
def test_the_subset_decodes_like_a_general_decoder(value):
    from protocol.monitor import _cbor
    data = cbor2.dumps(value)
    assert _cbor.loads(data) == cbor2.loads(data)
    assert _cbor.loads(data + b"\x00trailing") == value


# -- sessions --------------------------------------------------------------------------------

def test_a_bad_event_held_before_the_header_does_not_cost_the_header():
    session = Session(datagram=True)
    decoder = Decoder()
    bad = create_thread(5, 1) + b"extra"                 # a CreateThread of the wrong size
    held = [user_message(1, "early"), bad, user_message(2, "also early")]
    out = session.receive_all([EventMessage(Full(e)) for e in held] + header_msgs())
    assert out.startswith(b"hdrbhetb")
    assert [e.fields[0] for e in decoder.feed(out)] == ["early", "also early"]
    assert session.header_done and session.stats.bad_held_events == 1
    later = session.receive(EventMessage(Full(user_message(3, "later"))))
    assert [e.fields[0] for e in decoder.feed(later)] == ["later"]


def test_header_records_without_a_length_are_bounded():
    session = Session(datagram=True)
    tracemalloc.start()
    try:
        refused = 0
        for type_id in range(12_000 % 65535):
            try:
                session.receive(HeaderType(type_record(type_id, 4, "d" * 6000)))
            except SessionError:
                refused += 1
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert refused > 11_000
    assert sum(map(len, session.header_records)) <= session.max_header_bytes
    assert held < 4 * session.max_header_bytes + (1 << 20)
    # and the count: many small records
    small = Session(datagram=True)
    with pytest.raises(SessionError, match="1024 event types"):
        for type_id in range(2000):
            small.receive(HeaderType(type_record(type_id, 4, "")))
    with pytest.raises(SessionError, match="bound"):
        Session().receive(HeaderLength(5000))


def test_the_end_marker_cannot_be_declared():
    session = Session()
    with pytest.raises(SessionError, match="0xffff"):
        session.receive(HeaderType(type_record(0xFFFF, 0, "end")))
    # and so an event of that type never reaches the decoder
    session.receive_all([HeaderLength(len(HEADER))] + [HeaderType(r) for r in HEADER])
    with pytest.raises(SessionError, match="65535"):
        session.receive(EventMessage(Full(struct.pack(">HQ", 0xFFFF, 1))))


def test_held_events_share_a_budget():
    from protocol.monitor import Budget
    budget = Budget(1000)
    a, b = Session(datagram=True, hold_budget=budget), Session(datagram=True, hold_budget=budget)
    for t in range(100):
        a.receive(EventMessage(Full(user_message(t, "x" * 20))))
        b.receive(EventMessage(Full(user_message(t, "y" * 20))))
    assert budget.used <= 1000 and a.held + b.held < 200
    assert a.stats.dropped_before_header + b.stats.dropped_before_header > 0
    waiting = a.held
    assert waiting > 0 and a.close() == waiting and a.held == 0
    b.receive_all(header_msgs())
    assert budget.used == 0


# -- authenticated datagrams ---------------------------------------------------------------

def test_the_documented_example():
    # docs/monitor-protocol.md 3.4, computed with the standard library's HMAC
    key = datagram_key("liveprof-example-secret")
    body = bytes.fromhex("8201820003")
    want = body + hmac.new(b"liveprof-example-secret", body, hashlib.sha256).digest()[:16]
    assert want.hex() == "8201820003283fe59a3f3e8f0e270e214c0e7d88c9"
    assert sign_datagram(body, key) == want
    assert verify_datagram(want, key) == body
    # a receiver without the secret still reads the message
    assert decode_message(want) == HeaderLength(3)


def test_wrong_missing_or_short_tags_are_refused():
    key = datagram_key("a secret that is long enough")
    body = bytes.fromhex("8201820003")
    signed = sign_datagram(body, key)
    with pytest.raises(AuthError):
        verify_datagram(signed, datagram_key("another secret, also long"))
    with pytest.raises(AuthError):
        verify_datagram(body, key)
    with pytest.raises(AuthError, match="too short"):
        verify_datagram(signed[-TAG_SIZE:], key)
    flipped = bytearray(signed)
    flipped[2] ^= 1
    with pytest.raises(AuthError):
        verify_datagram(bytes(flipped), key)
    with pytest.raises(ValueError):
        datagram_key("short")


def test_allow_list():
    from protocol.monitor import DEFAULT_ALLOW, AllowList
    default = AllowList(DEFAULT_ALLOW)
    for host in ("127.0.0.1", "127.3.4.5", "::1", "10.1.2.3", "172.31.0.1", "192.168.1.1",
                 "fd00::5", "::ffff:10.0.0.7", "fc00::1"):
        assert host in default, host
    for host in ("8.8.8.8", "172.32.0.1", "2001:db8::1", "::ffff:8.8.8.8", "fe80::1%eth0",
                 "not an address", ""):
        assert host not in default, host
    assert "8.8.8.8" in AllowList(["0.0.0.0/0", "::/0"])
    assert "2001:db8::1" in AllowList(["0.0.0.0/0", "::/0"])
    assert "10.0.0.1" not in AllowList([])
