"""Event ids have one name each (EventType), the catalogue is keyed by them,
and one function reads header declarations for every caller."""

from __future__ import annotations

import struct

import pytest

from protocol import EventType, ProtocolError
from protocol.eventlog import CATALOGUE, Declaration, DeclarationError, parse_declaration
from protocol.monitor import SessionError, parse_type_record


def test_every_catalogued_type_has_a_name_and_every_name_but_one_a_catalogue_entry():
    assert all(type(k) is EventType for k in CATALOGUE)
    assert set(CATALOGUE) == set(EventType) - {EventType.HACK_BUG_T9003}
    assert all(spec.id is k for k, spec in CATALOGUE.items())


def test_names_are_ghcs_and_compare_equal_to_raw_ids():
    assert EventType.BLOCK_MARKER == 18 and CATALOGUE[18].name == "EventBlock"
    assert EventType.GC_START == EventType.START_GC == 9
    assert EventType.GC_END == EventType.END_GC == 10
    assert EventType(43) is EventType.WALL_CLOCK_TIME
    assert {18: "x"}[EventType.BLOCK_MARKER] == "x" and CATALOGUE[1].name == "RunThread"


def declaration(type_id: int, size: int, desc: bytes, extra: bytes = b"") -> bytes:
    return (b"etb\0" + struct.pack(">HHI", type_id, size, len(desc)) + desc
            + struct.pack(">I", len(extra)) + extra + b"ete\0")


def test_a_declaration_is_read_whole_or_asks_for_the_bytes_it_needs():
    raw = declaration(1, 4, b"Run thread", b"xy")
    assert parse_declaration(raw + b"more") == (Declaration(1, 4, "Run thread"), len(raw))
    assert parse_declaration(b"--" + raw, 2) == (Declaration(1, 4, "Run thread"), len(raw) + 2)
    assert parse_declaration(declaration(19, 0xFFFF, b"msg"))[0] == Declaration(19, None, "msg")
    for cut in range(len(raw)):
        decl, need = parse_declaration(raw[:cut])
        assert decl is None and cut < need <= len(raw)


@pytest.mark.parametrize("raw, message", [
    (b"etX\0" + bytes(20), "expected 'etb'"),
    (declaration(5, 4, b"abc")[:-4] + b"nope", "event type 5: declaration end marker 'ete' not found"),
    (b"etb\0" + struct.pack(">HHI", 7, 0, 1 << 20), "event type 7: description length 1048576"),
])
def test_a_bad_declaration_says_what_is_wrong(raw, message):
    with pytest.raises(DeclarationError, match=message) as info:
        parse_declaration(raw)
    assert isinstance(info.value, ProtocolError)


def test_a_declaration_over_the_room_left_fails_before_its_bytes_come():
    head = b"etb\0" + struct.pack(">HHI", 3, 0, 5000)
    with pytest.raises(DeclarationError, match="takes more than the 1000 bytes left"):
        parse_declaration(head, 0, room=1000)


def test_the_monitor_session_reads_type_records_with_the_same_parser():
    assert parse_type_record(declaration(1, 4, b"Run thread")) == (1, 4)
    assert parse_type_record(declaration(19, 0xFFFF, b"msg")) == (19, None)
    with pytest.raises(SessionError, match="ete"):
        parse_type_record(declaration(5, 4, b"abc")[:-4] + b"nope" + b"ete\0")
    with pytest.raises(SessionError, match="do not add up"):
        parse_type_record(declaration(5, 4, b"abc") + b"ete\0")
