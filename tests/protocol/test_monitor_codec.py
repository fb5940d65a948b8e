"""The monitor message codec against the worked examples of the spec (section 9)."""

import cbor2
import pytest

from protocol.monitor import (
    BlockHeader,
    BlockPart,
    EventMessage,
    FrameError,
    FrameReader,
    Full,
    HeaderLength,
    HeaderType,
    MessageError,
    Part,
    ServicePause,
    SplitHeader,
    StateMessage,
    decode_message,
    encode_message,
    frame,
    split_payload,
)

H = bytes.fromhex
EVENT_HI = H("0013 00000000000003e8 0002 6869")  # UserMessage "hi" at t=1000
RECORD_19 = H("65746200 0013 ffff 0000000c") + b"User message" + H("00000000 65746500")

EXAMPLES = [
    # 9.1 one user message
    ("00000015 8202820182004e" + EVENT_HI.hex(), EventMessage(Full(EVENT_HI))),
    # 9.2 empty state
    ("0000000d 820382004887 00a0a0a0a08000", StateMessage(Full(H("8700a0a0a0a08000")))),
    # 9.3 header length, header type
    ("00000005 8201820003", HeaderLength(3)),
    ("00000026 82018201 5820" + RECORD_19.hex(), HeaderType(RECORD_19)),
    # 9.4 split with id 5
    ("0000000a 8202820182018300 0502", EventMessage(SplitHeader(5, 2))),
    ("00000011 82028201840205004800130000000000 00", EventMessage(Part(5, 0, EVENT_HI[:8]))),
    ("0000000f 8202820184020501 4603e800026869", EventMessage(Part(5, 1, EVENT_HI[8:]))),
    # 9.5 other shapes
    ("00000005 82008200f5", ServicePause(True)),
    ("00000013 8202820082008600 0019 03e8 1907d0 01 190200", BlockHeader(0, 1000, 2000, 0, 512)),
]


@pytest.mark.parametrize("wire,msg", EXAMPLES, ids=[type(m).__name__ for _, m in EXAMPLES])
def test_spec_examples(wire, msg):
    data = H(wire.replace(" ", ""))
    assert frame(encode_message(msg)) == data
    ((offset, body),) = FrameReader().feed(data)
    assert offset == 0
    assert decode_message(body) == msg


def test_split_matches_example():
    parts = split_payload(EVENT_HI, 8, msg_id=5)
    assert parts == [SplitHeader(5, 2), Part(5, 0, EVENT_HI[:8]), Part(5, 1, EVENT_HI[8:])]
    assert split_payload(EVENT_HI, 14, msg_id=5) == [Full(EVENT_HI)]
    assert split_payload(EVENT_HI, None, msg_id=5) == [Full(EVENT_HI)]


def test_every_variant_round_trips():
    msgs = [ServicePause(False), HeaderLength(0), HeaderType(b"x"), EventMessage(Full(b"")),
            StateMessage(SplitHeader(2**64 - 1, 1)), StateMessage(Part(1, 2, b"abc")),
            BlockHeader(7, 1, 2, None, 0), BlockPart(3, Full(b"ev")), BlockPart(3, Part(1, 0, b"e"))]
    for msg in msgs:
        assert decode_message(encode_message(msg)) == msg
    # the global block is capability 0 on the wire
    assert cbor2.loads(encode_message(BlockHeader(7, 1, 2, None, 0)))[1][1][1][4] == 0


def test_trailing_bytes_after_the_item_are_ignored():
    body = encode_message(HeaderLength(3)) + b"junk"
    assert decode_message(body) == HeaderLength(3)


BAD = {
    "not cbor": b"\xff\xff\xff",
    "truncated": encode_message(EventMessage(Full(EVENT_HI)))[:-3],
    "empty": b"",
    "int not array": cbor2.dumps(5),
    "unknown tag": cbor2.dumps([9, [0, 1]]),
    "wrong arity": cbor2.dumps([1, [0, 1, 2]]),
    "text for bytes": cbor2.dumps([1, [1, "etb"]]),
    "bool for int": cbor2.dumps([1, [0, True]]),
    "negative length": cbor2.dumps([1, [0, -1]]),
    "float": cbor2.dumps([1, [0, 1.5]]),
    "bignum": cbor2.dumps([1, [0, 2**70]]),
    "map": cbor2.dumps({1: 2}),
    "bad payload": cbor2.dumps([2, [1, [7, b""]]]),
    "part count not int": cbor2.dumps([2, [1, [1, [0, 1, "2"]]]]),
    "deep nesting": b"\x81" * 5000 + b"\x00",
    "tagged": cbor2.dumps([2, [1, [0, cbor2.CBORTag(2, b"\x01")]]]),
    "huge bytes claim": b"\x82\x02\x82\x01\x82\x00\x5b\x00\x00\x00\x01\x00\x00\x00\x00",
}


@pytest.mark.parametrize("name", BAD)
def test_bad_bodies_raise_message_error(name):
    with pytest.raises(MessageError) as info:
        decode_message(BAD[name])
    assert str(info.value)


def test_frame_reader_streams_in_pieces():
    bodies = [encode_message(m) for _, m in EXAMPLES]
    stream = b"".join(frame(b) for b in bodies)
    reader = FrameReader()
    got = []
    for i in range(len(stream)):
        got += reader.feed(stream[i:i + 1])
    assert [b for _, b in got] == bodies
    offsets = [o for o, _ in got]
    assert offsets[0] == 0 and all(stream[o + 4:o + 4 + len(b)] == b for o, b in got)
    assert reader.pending == 0


def test_frame_reader_rejects_huge_length_with_offset():
    reader = FrameReader()
    good = frame(encode_message(HeaderLength(1)))
    assert len(reader.feed(good)) == 1
    with pytest.raises(FrameError) as info:
        reader.feed(b"\xff\xff\xff\xff" + b"x" * 10)
    assert info.value.offset == len(good)
    assert "4294967295" in str(info.value) and f"offset {len(good)}" in str(info.value)


def test_zero_length_frame_ends_the_stream():
    reader = FrameReader()
    got = reader.feed(frame(b"\x01") + b"\0\0\0\0" + frame(b"\x02"))
    assert [b for _, b in got] == [b"\x01"]
    assert reader.ended
    assert reader.feed(frame(b"\x03")) == []


def test_empty_frame_cannot_be_built():
    with pytest.raises(ValueError):
        frame(b"")


@pytest.mark.parametrize("size", [0, 1, 23, 24, 255, 256, 65535, 65536, 70000])
def test_every_payload_length_decodes_the_same_way(size):
    """Event messages take a direct path; it must agree with the CBOR decoder
    at every length boundary of the byte-string header, and refuse a cut body."""
    payload = bytes(i % 251 for i in range(size))
    body = encode_message(EventMessage(Full(payload)))
    assert decode_message(body) == EventMessage(Full(payload)) == \
        decode_message(body + b"\x00trailing")
    if size:
        with pytest.raises(MessageError):
            decode_message(body[:-1])
