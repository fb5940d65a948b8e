"""The decoder's memory bounds (header declarations, bytes after the end
marker) and answers that do not depend on how the input was split or on
which record loop runs (issue 12 items 4 and 10)."""

from __future__ import annotations

import random
import struct
import tracemalloc

import pytest

from protocol import DecodeError, Decoder
from protocol.eventlog import MAX_DECLARATIONS, MAX_HEADER, MAX_TRAILING

from ..conftest import PythonDecoder
from ..corpus import all_logs


def declaration(type_id: int, size: int | None, desc: bytes, extra: bytes = b"") -> bytes:
    return (b"etb\0" + struct.pack(">HHI", type_id, 0xFFFF if size is None else size, len(desc))
            + desc + struct.pack(">I", len(extra)) + extra + b"ete\0")


def eventlog(decls: list[bytes], records: bytes = b"", end: bool = True) -> bytes:
    return (b"hdrbhetb" + b"".join(decls) + b"hetehdredatb" + records
            + (b"\xff\xff" if end else b""))


def feed_in(decoder, data: bytes, sizes) -> list:
    events, pos = [], 0
    for size in sizes:
        if pos >= len(data):
            break
        events += decoder.feed(data[pos:pos + size])
        pos += size
    events += decoder.feed(data[pos:])
    return events


def chunkings(n: int, seed: int):
    rng = random.Random(seed)
    yield [n]
    yield [1] * n
    for limit in (3, 50, 5000):
        yield [rng.randint(1, limit) for _ in range(n)]


def test_end_offset_of_a_stream_with_trailing_bytes_does_not_depend_on_chunks(decoder_cls):
    log = all_logs()["unicode"].read_bytes()
    data = log + b"after the end" * 5
    for sizes in chunkings(len(data), 1):
        decoder = decoder_cls()
        feed_in(decoder, data, sizes)
        end = decoder.close()
        assert end.complete and end.offset == len(log) == decoder.end_offset
        assert decoder.offset == len(log)
        assert bytes(decoder.trailing) == data[len(log):]


def test_bytes_after_the_end_marker_are_bounded(decoder_cls):
    log = all_logs()["unicode"].read_bytes()
    junk = bytes(range(256)) * (3 * MAX_TRAILING // 256 + 7)
    for sizes in ([len(log) + len(junk)], [len(log) - 3] + [65536] * 200, [70_001] * 200):
        decoder = decoder_cls()
        events = feed_in(decoder, log + junk, sizes)
        assert len(events) == len(decoder_cls().feed(log))
        assert bytes(decoder.trailing) == junk[:MAX_TRAILING]
        assert decoder.trailing_dropped == len(junk) - MAX_TRAILING
        assert decoder.close().offset == len(log)
    small = decoder_cls(max_trailing=0)
    small.feed(log + junk)
    assert small.trailing == b"" and small.trailing_dropped == len(junk)


def test_too_many_declarations(decoder_cls):
    decls = [declaration(i % 60000, 0, b"") for i in range(MAX_DECLARATIONS + 1)]
    with pytest.raises(DecodeError, match=f"more than {MAX_DECLARATIONS}") as info:
        decoder_cls().feed(eventlog(decls))
    assert info.value.offset == 8 + 20 * MAX_DECLARATIONS
    # just within: fine
    decoder = decoder_cls()
    decoder.feed(eventlog(decls[:-1]))
    assert decoder.ended and len(decoder.header.event_types) == MAX_DECLARATIONS


def test_header_bytes_are_bounded_before_they_arrive(decoder_cls):
    big = declaration(1, None, b"d" * 60_000)
    data = eventlog([big] * 40)
    decoder = decoder_cls()
    tracemalloc.start()
    try:
        with pytest.raises(DecodeError, match=f"exceed {MAX_HEADER} bytes") as info:
            for i in range(0, len(data), 4096):
                decoder.feed(data[i:i + 4096])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.offset == 8 + len(big) * (MAX_HEADER // len(big))
    assert peak < 4 * MAX_HEADER
    # the case: 4 MB of declarations
    with pytest.raises(DecodeError):
        decoder_cls().feed(eventlog([declaration(i, 4, b"x" * 1000) for i in range(4000)]))


def test_one_declaration_longer_than_the_bound_is_refused_at_once(decoder_cls):
    head = b"hdrbhetb" + b"etb\0" + struct.pack(">HHI", 7, 4, 1 << 30)
    with pytest.raises(DecodeError, match="too large") as info:
        decoder_cls().feed(head)
    assert info.value.offset == 16 and info.value.event_id == 7


def short_block_log() -> bytes:
    # a block marker declared variable-size, sent with a 2-byte payload
    decls = [declaration(18, None, b"Block marker"), declaration(0, 4, b"Create thread")]
    records = struct.pack(">HQI", 0, 5, 1) + struct.pack(">HQH", 18, 6, 2) + b"\0\0"
    return eventlog(decls, records)


def loops_error(data: bytes, chunk: int) -> list[tuple]:
    out = []
    for cls in (Decoder, PythonDecoder):
        decoder = cls()
        with pytest.raises(DecodeError) as info:
            feed_in(decoder, data, [chunk] * len(data))
        err = info.value
        out.append((str(err), err.offset, err.event_id))
    return out


@pytest.mark.parametrize("chunk", [1, 7, 1 << 20])
def test_both_loops_word_errors_alike(chunk):
    native, python = loops_error(short_block_log(), chunk)
    assert native == python
    assert "block marker payload of 2 bytes is too short" in native[0]
    # an undeclared type, in the middle of real records
    log = all_logs()["hello-ghc-8.6.5"].read_bytes()
    cut = log.index(b"datb") + 4 + 24
    bad = log[:cut] + struct.pack(">H", 4242) + log[cut + 2:]
    native, python = loops_error(bad, chunk)
    assert native == python and native[2] == 4242


def test_both_loops_agree_on_mutated_logs():
    log = all_logs()["trace-binary-event"].read_bytes()
    rng = random.Random(12)
    for _ in range(300):
        data = bytearray(log)
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(data))
            data[i] = rng.randrange(256)
        outcomes = []
        for cls in (Decoder, PythonDecoder):
            decoder = cls()
            try:
                events = decoder.feed(bytes(data))
                outcomes.append((events, decoder.close(), bytes(decoder.trailing)))
            except DecodeError as err:
                outcomes.append((err.events, str(err), err.offset, err.event_id))
        assert outcomes[0] == outcomes[1]


def test_both_loops_give_spark_counters_in_the_events_order():
    # the C loop reorders them itself (a field order in the table), the Python
    # loop by its post function: the same events, fizzled before gc'd
    log = all_logs()["sparks-small.N2.l"].read_bytes()
    native, python = Decoder().feed(log), PythonDecoder().feed(log)
    assert native == python
    sparks = [ev for ev in native if ev.name == "SparkCounters"]
    assert sparks
    wire = struct.unpack(">7Q", _payload_of(log, sparks[-1]))
    assert sparks[-1].fields == wire[:4] + (wire[5], wire[4], wire[6])


def _payload_of(log: bytes, ev) -> bytes:
    """The payload bytes of the last record of ``ev``'s type and time in ``log``."""
    at = log.rindex(struct.pack(">HQ", ev.type, ev.time))
    return log[at + 10:at + 10 + 56]
