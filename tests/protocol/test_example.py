"""The worked example of the eventlog spec (section 5) and its variations."""

from __future__ import annotations

import struct

from protocol import Decoder

EXAMPLE = bytes.fromhex(
    "686472626865746265746200000000040000000d437265617465207468726561"
    "640000000065746500657462000012000e0000000c426c6f636b206d61726b65"
    "720000000065746500657462000013ffff0000000c55736572206d6573736167"
    "650000000065746500686574656864726564617462001200000000000003e800"
    "0000420000000000000bb80000000000000000000003e8000000010013000000"
    "00000007d00002686900000000000000000bb800000002ffff")


def content(events):
    return [(ev.time, ev.cap, ev.name, ev.fields) for ev in events if ev.type != 18]


def test_example_decodes_as_the_spec_says(decoder_cls):
    assert len(EXAMPLE) == 185
    decoder = decoder_cls()
    events = decoder.feed(EXAMPLE)
    assert content(events) == [(1000, 0, "CreateThread", (1,)), (2000, 0, "UserMessage", ("hi",)),
                               (3000, 0, "CreateThread", (2,))]
    assert [(et.id, et.size, et.description) for et in decoder.header.event_types] == [
        (0, 4, "Create thread"), (18, 14, "Block marker"), (19, None, "User message")]
    marker = events[0]
    assert (marker.type, marker.time, marker.fields) == (18, 1000, (66, 3000, 0))
    assert decoder.close().complete


def _grow_create_thread(data: bytes) -> bytes:
    """Declare CREATE_THREAD with 6 bytes and append two bytes to each record."""
    data = data.replace(bytes.fromhex("000000040000000d"), bytes.fromhex("000000060000000d"), 1)
    hdr_end = data.index(b"datb") + 4
    body = data[hdr_end:]
    first = bytes.fromhex("0000") + bytes.fromhex("00000000000003e8") + bytes.fromhex("00000001")
    second = bytes.fromhex("0000") + bytes.fromhex("0000000000000bb8") + bytes.fromhex("00000002")
    body = body.replace(first, first + b"\xaa\xbb").replace(second, second + b"\xcc\xdd")
    # the block grew by 4 bytes
    body = body[:6] + struct.pack(">I", 66 + 4) + body[10:]
    return data[:hdr_end] + body


def test_larger_declared_size_skips_the_extra_bytes(decoder_cls):
    grown = _grow_create_thread(EXAMPLE)
    assert len(grown) == len(EXAMPLE) + 4
    assert content(decoder_cls().feed(grown)) == content(Decoder().feed(EXAMPLE))


def test_unknown_event_type_is_skipped_and_reported(decoder_cls):
    decl = b"etb\0" + struct.pack(">HHI", 250, 3, 3) + b"odd" + struct.pack(">I", 0) + b"ete\0"
    data = EXAMPLE.replace(b"hete", decl + b"hete", 1)
    hdr_end = data.index(b"datb") + 4
    record = struct.pack(">HQ", 250, 2500) + b"xyz"
    end = len(data) - 2
    data = data[:end] + record + data[end:]
    events = content(decoder_cls().feed(data))
    assert events[-1] == (2500, None, "UnknownEvent", ())  # after the block: no cap
    assert [e[2] for e in events[:3]] == ["CreateThread", "UserMessage", "CreateThread"]
    assert hdr_end


def test_removing_the_last_three_bytes_flags_truncation(decoder_cls):
    decoder = decoder_cls()
    events = decoder.feed(EXAMPLE[:-3])
    assert [e[2] for e in content(events)] == ["CreateThread", "UserMessage"]
    end = decoder.close()
    assert end.truncated and end.reason == "event" and end.event_id == 0
    assert end.offset == 0xA9 and end.pending == len(EXAMPLE) - 3 - 0xA9


def test_a_second_log_after_the_end_marker_is_left_for_the_caller(decoder_cls):
    decoder = decoder_cls()
    events = decoder.feed(EXAMPLE + EXAMPLE)
    assert len(content(events)) == 3 and decoder.ended
    assert bytes(decoder.trailing) == EXAMPLE
