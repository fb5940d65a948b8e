"""The C record loop checks every table entry it meets, and its arguments,
and fails with a TypeError/ValueError naming the entry instead of crashing.

White-box: this drives ``protocol.eventlog._speedups.records`` directly with
hand-made tables (the decoder only ever hands it good ones).  The extension is
imported whatever LIVEPROF_PURE_PYTHON says: that switch only tells the
decoder not to use it.
"""

from __future__ import annotations

import importlib
import struct

import pytest

from protocol import Event

speedups = importlib.import_module("protocol.eventlog._speedups")

# the kinds of entry, numbered as in _speedups.c and _decoder.py
K_STRUCT, K_VSTRUCT, K_EMPTY, K_READ, K_BLOCK, K_SKIP, K_UNKNOWN = range(7)
TID = 7
GOOD = (4, K_STRUCT, struct.Struct(">I"), None, "Thing", b"I", None)
RECORD = struct.pack(">HQI", TID, 1000, 42)


def run(entry, buf: object = RECORD, pos: int = 0, block_cap=None, etype=Event, table=None):
    if table is None:
        table = [None] * 0x10000
        table[TID] = entry
    events: list = []
    out = speedups.records(buf, pos, table, 0, block_cap, events, etype, "UnknownEvent")
    return out, events


def test_a_good_entry_decodes():
    out, events = run(GOOD)
    assert events == [Event(TID, "Thing", 1000, None, (42,))]
    assert out[0] == len(RECORD)


def reader_that_fails(buf, start, end):
    raise RuntimeError("reader failed")


class Falsy:
    def __bool__(self):
        raise RuntimeError("no truth value")


def entry(**changes):
    names = ("size", "kind", "st", "post", "name", "fmt", "native")
    values = dict(zip(names, GOOD))
    values.update(changes)
    return tuple(values[n] for n in names)


MALFORMED = [
    ("not a tuple", list(GOOD), TypeError, "table entry 7 must be a tuple or None, not list"),
    ("6 items", GOOD[:6], ValueError, "table entry 7 must have 7 items, not 6"),
    ("8 items", GOOD + (None,), ValueError, "table entry 7 must have 7 items, not 8"),
    ("negative size", entry(size=-1), ValueError, "table entry 7: size must be in 0..65534"),
    ("size too big", entry(size=70000), ValueError, "table entry 7: size must be in 0..65534"),
    ("size overflows", entry(size=1 << 80), ValueError, "table entry 7: size must be in"),
    ("size not an int", entry(size="4"), TypeError, "table entry 7: size must be an int, not str"),
    ("size a float", entry(size=4.0), TypeError, "table entry 7: size must be an int, not float"),
    ("kind unknown", entry(kind=99), ValueError, "table entry 7: kind must be in 0..6"),
    ("kind negative", entry(kind=-1), ValueError, "table entry 7: kind must be in 0..6"),
    ("kind overflows", entry(kind=-(1 << 70)), ValueError, "table entry 7: kind must be in 0..6"),
    ("kind not an int", entry(kind=None), TypeError, "table entry 7: kind must be an int"),
    ("name not text", entry(name=b"Thing"), TypeError, "table entry 7: name must be a str"),
    ("format not bytes", entry(fmt="I"), TypeError, "table entry 7: format must be bytes"),
    ("format letter", entry(fmt=b"Z"), ValueError, "table entry 7: format letters must be"),
    ("native not a pair", entry(native=(0,)), TypeError, "table entry 7: native must be None"),
    ("native index too big", entry(native=(1, ())), ValueError,
     "table entry 7: native field index must be in 0..0"),
    ("native index negative", entry(native=(-1, ())), ValueError,
     "table entry 7: native field index must be in 0..0"),
    ("native index not an int", entry(native=("0", ())), TypeError,
     "table entry 7: native field index must be an int"),
    ("native table not a tuple", entry(native=(0, [None])), TypeError,
     "table entry 7: native enum table must be a tuple"),
    ("native order too short", entry(native=b""), ValueError,
     "table entry 7: native order must name each field of the layout once"),
    ("native order out of range", entry(native=b"\x01"), ValueError,
     "table entry 7: native order must name each field of the layout once"),
    ("post not callable", entry(post=42), TypeError, "table entry 7: post must be None or callable"),
    ("reader not callable", entry(size=None, kind=K_READ, st=None), TypeError,
     "table entry 7: reader must be callable"),
    ("text mode unknown", entry(size=None, kind=K_READ, st=reader_that_fails, native=3), ValueError,
     "table entry 7: native text mode must be in 1..2"),
    ("text mode not an int", entry(size=None, kind=K_READ, st=reader_that_fails, native="1"),
     TypeError, "table entry 7: native text mode must be an int"),
    ("block format too short", entry(size=1, kind=K_BLOCK, fmt=b"B", post=True), ValueError,
     "table entry 7: a block marker's format must begin IQH"),
    ("block wanted without truth", entry(size=14, kind=K_BLOCK, fmt=b"IQH", post=Falsy()),
     RuntimeError, "no truth value"),
]


@pytest.mark.parametrize("bad, error, message", [m[1:] for m in MALFORMED],
                         ids=[m[0] for m in MALFORMED])
def test_a_malformed_entry_fails_with_a_clear_error(bad, error, message):
    with pytest.raises(error) as info:
        run(bad)
    assert str(info.value).startswith(message), str(info.value)


def test_events_before_the_bad_entry_are_kept():
    table = [None] * 0x10000
    table[TID] = GOOD
    table[TID + 1] = entry(kind=99)
    events: list = []
    buf = RECORD + struct.pack(">HQI", TID + 1, 2000, 1)
    with pytest.raises(ValueError, match="table entry 8: kind"):
        speedups.records(buf, 0, table, 0, None, events, Event, "UnknownEvent")
    assert [ev.fields for ev in events] == [(42,)]


def test_an_entry_of_a_skipped_type_only_needs_size_and_kind():
    out, events = run((4, K_SKIP, None, None, None, None, None))
    assert events == [] and out[-1] == 1


def test_a_reader_error_propagates():
    with pytest.raises(RuntimeError, match="reader failed"):
        run(entry(size=None, kind=K_READ, st=reader_that_fails),
            buf=struct.pack(">HQH", TID, 1, 0))


def test_a_reader_that_empties_the_table_does_not_crash_the_loop():
    table = [None] * 0x10000

    def reader(buf, start, end):
        table.clear()
        return ()

    table[TID] = entry(size=0, kind=K_READ, st=reader)
    buf = struct.pack(">HQ", TID, 1) * 2
    with pytest.raises(ValueError, match="table must have 65536 entries"):
        run(None, buf=buf, table=table)


@pytest.mark.parametrize("call, error, message", [
    (lambda: run(GOOD, table=[None] * 10), ValueError, "table must have 65536 entries"),
    (lambda: run(GOOD, table=(None,) * 0x10000), TypeError, "must be list"),
    (lambda: run(GOOD, pos=-1), ValueError, "pos must be within the buffer"),
    (lambda: run(GOOD, pos=len(RECORD) + 1), ValueError, "pos must be within the buffer"),
    (lambda: run(GOOD, pos=1 << 70), OverflowError, None),
    (lambda: run(GOOD, block_cap="0"), TypeError, "block_cap must be None or an int"),
    (lambda: run(GOOD, etype=dict), TypeError, "Event must be a tuple type"),
    (lambda: run(GOOD, buf="text"), TypeError, None),
], ids=["short table", "table not a list", "negative pos", "pos past the end", "pos overflows",
        "block_cap", "event type", "buffer"])
def test_bad_arguments_fail_with_a_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call()
