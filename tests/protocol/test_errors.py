"""Malformed input raises DecodeError naming the offset and the event type,
keeps the events decoded before it, and leaves the decoder refusing more."""

from __future__ import annotations

import struct

import pytest

from protocol import DecodeError

from ..corpus import all_logs


def test_not_an_eventlog(decoder_cls):
    with pytest.raises(DecodeError) as info:
        decoder_cls().feed(b"GIF89a" + bytes(100))
    assert info.value.offset == 0 and "hdrb" in str(info.value)


def test_undeclared_event_type_names_offset_and_type(decoder_cls):
    data = all_logs()["unicode"].read_bytes()
    good = decoder_cls().feed(data)
    cut = data.index(b"datb") + 4 + 24  # right after the first block marker
    bad = data[:cut] + struct.pack(">H", 4242) + data[cut + 2:]
    decoder = decoder_cls()
    with pytest.raises(DecodeError) as info:
        decoder.feed(bad)
    err = info.value
    assert err.offset == cut and err.event_id == 4242
    assert "4242" in str(err) and str(cut) in str(err)
    assert err.events == good[:1] and err.events[0].type == 18
    with pytest.raises(DecodeError):
        decoder.feed(b"more")


def test_bad_header_declaration_marker(decoder_cls):
    data = bytearray(all_logs()["unicode"].read_bytes())
    data[8:12] = b"xxxx"
    with pytest.raises(DecodeError) as info:
        decoder_cls().feed(bytes(data))
    assert info.value.offset == 8


def test_error_in_a_later_chunk_keeps_earlier_events(decoder_cls):
    data = all_logs()["hello-ghc-8.6.5"].read_bytes()
    good = decoder_cls().feed(data)
    probe = decoder_cls()
    probe.feed(data[: len(data) // 2])
    boundary = probe.offset  # a record boundary
    decoder = decoder_cls()
    first = decoder.feed(data[: boundary - 10])
    with pytest.raises(DecodeError) as info:
        decoder.feed(data[boundary - 10: boundary] + b"\x10\x10" + bytes(40))
    assert info.value.offset == boundary and info.value.event_id == 0x1010
    assert first + info.value.events == good[: len(first) + len(info.value.events)]


def test_every_protocol_error_is_a_protocol_error():
    import protocol
    import protocol.eventlog as eventlog
    import protocol.monitor as monitor
    from protocol import ProtocolError

    errors = [getattr(pkg, name) for pkg in (protocol, eventlog, monitor)
              for name in pkg.__all__
              if isinstance(getattr(pkg, name), type) and issubclass(getattr(pkg, name), Exception)]
    assert {e.__name__ for e in errors} >= {"DecodeError", "FrameError", "MessageError", "SessionError",
                                            "StateError", "AuthError", "HeaderChanged",
                                            "DeclarationError"}
    for error in errors:
        assert issubclass(error, ProtocolError), error


def test_bad_input_of_each_layer_is_caught_as_protocol_error(decoder_cls):
    from protocol import ProtocolError
    from protocol.monitor import FrameReader, HeaderType, Session, decode_message

    with pytest.raises(ProtocolError):
        decoder_cls().feed(b"GIF89a" + bytes(100))
    with pytest.raises(ProtocolError):
        FrameReader().feed(b"\xff\xff\xff\xff")
    with pytest.raises(ProtocolError):
        decode_message(b"\xff")
    with pytest.raises(ProtocolError):
        Session().receive(HeaderType(b"etb\0" + bytes(20)))
