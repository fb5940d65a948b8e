"""LogSplitter: an arbitrary byte stream cut into eventlogs (sans-IO).

Streams are built from corpus logs: whole logs, logs cut off (a killed run),
header fragments and garbage, in random orders, then fed whole, in random
chunks and byte by byte.  Every log must come out byte-identical and the
skipped count must be exactly the bytes that belong to no log.
"""

from __future__ import annotations

import random
import struct

import pytest

from protocol import (
    DecodeError,
    Decoder,
    LogData,
    LogEnd,
    LogSplitter,
    LogStart,
    Skipped,
)
from tests.corpus import all_logs
from tests.protocol.test_example import EXAMPLE

MAGIC = b"hdrbhetb"
LOGS = all_logs()
SMALL = {n: p.read_bytes() for n, p in LOGS.items() if p.stat().st_size <= 70_000}


def header_length(log: bytes) -> int:
    return log.index(b"hetehdredatb") + 12


def complete(log: bytes) -> bool:
    d = Decoder(only=set())
    d.feed(log)
    return d.ended and not d.trailing


COMPLETE = {n: b for n, b in SMALL.items() if complete(b)}


def split(stream: bytes, chunks) -> tuple[list[tuple[int, bytes, str | None]], int, list]:
    """Feed ``stream`` in the given chunk sizes; returns (logs, skipped, items)."""
    sp = LogSplitter()
    items: list = []
    pos = 0
    for n in chunks:
        items += sp.feed(stream[pos:pos + n])
        pos += n
    assert pos >= len(stream)
    items += sp.close()
    return collect(items, sp)


def collect(items, sp=None):
    logs: list = []
    skipped = 0
    current = None
    for it in items:
        if isinstance(it, LogStart):
            assert current is None, "a log started inside another"
            current = [it.offset, bytearray(), None]
        elif isinstance(it, LogData):
            assert current is not None, "log data outside a log"
            assert it.data
            current[1] += it.data
        elif isinstance(it, LogEnd):
            assert current is not None, "a log ended that never started"
            assert it.offset == current[0] + len(current[1])
            current[2] = it.error
            logs.append((current[0], bytes(current[1]), it.error))
            current = None
        else:
            assert isinstance(it, Skipped) and it.count > 0
            skipped += it.count
    assert current is None, "close() left a log open"
    if sp is not None:
        assert sp.skipped == skipped and sp.logs == len(logs)
    return logs, skipped, items


def whole(stream):
    return [len(stream)]


def bytewise(stream):
    return [1] * len(stream)


def randomly(seed, top=5000):
    def chunks(stream):
        rng = random.Random(seed)
        out, total = [], 0
        while total < len(stream):
            n = rng.choice([1, 2, 7, 8, 9, rng.randint(1, top)])
            out.append(n)
            total += n
        return out
    return chunks


def garbage(rng: random.Random, n: int) -> bytes:
    while True:
        g = bytes(rng.getrandbits(8) for _ in range(n))
        if MAGIC not in g and not any(g.endswith(MAGIC[:k]) for k in range(1, 8)):
            return g


def scenario(seed: int, segments: int = 6):
    """A random stream and what must come out of it: [(offset, bytes, ok)], skipped.

    A log cut off must be followed by a log with a whole header (or by the end
    of the stream): then where it ends is known exactly."""
    rng = random.Random(seed)
    names = sorted(SMALL)
    parts, expect, skipped = [], [], 0
    offset = 0
    prev = None
    for _ in range(segments):
        kinds = ["log", "log", "cut"]
        if prev != "cut":
            kinds += ["garbage", "header part"]
        kind = rng.choice(kinds)
        pool = {"log": sorted(COMPLETE),
                "cut": [n for n in names if header_length(SMALL[n]) < len(SMALL[n])]}
        name = rng.choice(pool.get(kind, names))
        log = SMALL[name]
        h = header_length(log)
        if kind == "log":
            data = log
            expect.append((offset, data, True))
        elif kind == "cut":
            data = log[:rng.randint(h, len(log) - 1)]
            expect.append((offset, data, False))
        elif kind == "header part":
            data = log[:rng.randint(1, h - 1)]
            skipped += len(data)
        else:
            data = garbage(rng, rng.randint(1, 3000))
            skipped += len(data)
        parts.append(data)
        offset += len(data)
        prev = kind
    return b"".join(parts), expect, skipped


def check(stream, expect, skipped, chunks):
    logs, got_skipped, _ = split(stream, chunks(stream))
    assert [(o, len(b)) for o, b, _ in logs] == [(o, len(b)) for o, b, _ in expect]
    for (_, got, error), (_, want, ok) in zip(logs, expect):
        assert got == want
        assert (error is None) == ok, error
    assert got_skipped == skipped
    assert sum(len(b) for _, b, _ in logs) + got_skipped == len(stream)


# -- single logs ---------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(LOGS))
def test_each_corpus_log_comes_out_whole(name):
    log = LOGS[name].read_bytes()
    for chunks in (whole, randomly(len(log), 1 << 16)):
        logs, skipped, items = split(log, chunks(log))
        assert skipped == 0
        assert [(o, b) for o, b, _ in logs] == [(0, log)]
        assert (logs[0][2] is None) == complete(log)
        assert isinstance(items[0], LogStart)


def test_every_small_log_byte_by_byte_after_garbage_and_twice():
    rng = random.Random(7)
    for name, log in SMALL.items():
        g = garbage(rng, 100)
        stream = g + log + log if complete(log) else g + log
        logs, skipped, _ = split(stream, bytewise(stream))
        assert skipped == len(g), name
        want = [log, log] if complete(log) else [log]
        assert [b for _, b, _ in logs] == want, name


# -- random concatenations -----------------------------------------------------

@pytest.mark.parametrize("seed", range(40))
def test_random_streams_whole_and_in_random_chunks(seed):
    stream, expect, skipped = scenario(seed)
    check(stream, expect, skipped, whole)
    check(stream, expect, skipped, randomly(seed))
    check(stream, expect, skipped, randomly(seed + 1000, top=50))


@pytest.mark.parametrize("seed", range(40, 46))
def test_random_streams_byte_by_byte(seed):
    stream, expect, skipped = scenario(seed, segments=4)
    check(stream, expect, skipped, bytewise)


def test_a_run_cut_between_records_and_mid_record_ends_with_an_error():
    log = SMALL["threads-mvar.nonthreaded.l"] if "threads-mvar.nonthreaded.l" in SMALL \
        else next(iter(COMPLETE.values()))
    other = next(b for n, b in sorted(COMPLETE.items()) if b is not log)
    h = header_length(log)
    for cut in (h, h + 1, h + 24, len(log) // 2, len(log) - 3, len(log) - 2):
        stream = log[:cut] + other
        for chunks in (whole, randomly(cut), bytewise):
            logs, skipped, _ = split(stream, chunks(stream))
            assert skipped == 0
            assert [b for _, b, _ in logs] == [log[:cut], other]
            assert "cut off" in logs[0][2] and logs[1][2] is None


def test_reader_joining_mid_stream_skips_to_the_next_header_exactly():
    # a reader that opens a pipe late sees the tail of a run, then the next run
    log = next(iter(COMPLETE.values()))
    for start in (1, 5, 8, 100, len(log) // 3, len(log) - 2):
        stream = log[start:] + log
        for chunks in (whole, randomly(start)):
            logs, skipped, items = split(stream, chunks(stream))
            assert skipped == len(log) - start
            assert [b for _, b, _ in logs] == [log]
            assert isinstance(items[0], Skipped) and items[0].offset == 0


def test_garbage_after_a_cut_log_costs_that_log_only():
    rng = random.Random(3)
    logs_ = sorted(COMPLETE.values(), key=len)
    for i in range(10):
        a, b = rng.choice(logs_), rng.choice(logs_)
        cut = rng.randint(header_length(a), len(a) - 1)
        g = garbage(rng, rng.randint(1, 2000))
        stream = a[:cut] + g + b
        for chunks in (whole, randomly(i)):
            logs, skipped, _ = split(stream, chunks(stream))
            # every byte is in a log or skipped; the run after the garbage is whole
            assert sum(len(x) for _, x, _ in logs) + skipped == len(stream)
            assert logs[-1][1:] == (b, None)
            assert len(logs) == 2 and logs[0][2] is not None
            assert a[:cut].startswith(logs[0][1][:header_length(a)])


# -- a header's bytes inside a log are payload, not a new log -----------------

def with_messages(*payloads: bytes) -> bytes:
    """The spec example (USER_MSG is declared variable-size) with more USER_MSG records."""
    body_end = EXAMPLE.rindex(b"\xff\xff")
    records = b"".join(struct.pack(">HQH", 19, 5000 + i, len(p)) + p
                       for i, p in enumerate(payloads))
    return EXAMPLE[:body_end] + records + b"\xff\xff"


PAYLOADS = {
    "the magic alone": [MAGIC],
    "magic then text": [b"x" + MAGIC + b"etb\0 not a declaration"],
    "a whole eventlog in a message": [EXAMPLE],
    "a header in a message": [EXAMPLE[:header_length(EXAMPLE)]],
    "magic ending the last message": [b"ok", MAGIC],
    "magic split over two messages": [b"hdrb", b"hetb"],
    "two logs in one message": [EXAMPLE + EXAMPLE],
}


@pytest.mark.parametrize("case", PAYLOADS)
def test_a_header_inside_an_event_payload_is_not_a_new_log(case):
    log = with_messages(*PAYLOADS[case])
    events = Decoder().feed(log)
    assert [e.fields for e in events if e.type == 19][-len(PAYLOADS[case]):]
    for stream, want in ((log, [log]), (log + log, [log, log]), (log + EXAMPLE, [log, EXAMPLE])):
        for chunks in (whole, bytewise, randomly(len(stream), 40)):
            logs, skipped, _ = split(stream, chunks(stream))
            assert skipped == 0
            assert [b for _, b, _ in logs] == want
            assert all(e is None for _, _, e in logs)


def test_a_malformed_log_ends_with_an_error_and_the_next_one_is_found():
    good = next(iter(COMPLETE.values()))
    h = header_length(good)
    bad = good[:h] + struct.pack(">HQ", 999, 1) + b"\0" * 50   # an undeclared event type
    stream = bad + good
    for chunks in (whole, bytewise):
        logs, skipped, _ = split(stream, chunks(stream))
        assert [b for _, b, _ in logs] == [good[:h], good]
        assert "999" in logs[0][2]
        assert skipped == len(bad) - h


def test_a_header_that_keeps_the_splitter_waiting_past_max_hold_is_not_taken_for_one():
    log = next(iter(COMPLETE.values()))
    assert header_length(log) > 1000
    sp = LogSplitter(max_hold=1000)
    items = [it for i in range(0, len(log), 100) for it in sp.feed(log[i:i + 100])]
    logs, skipped, _ = collect(items + sp.close())
    assert logs == [] and skipped == len(log)
    # the same header with room enough is a log
    sp = LogSplitter(max_hold=header_length(log) + 100)
    items = [it for i in range(0, len(log), 100) for it in sp.feed(log[i:i + 100])]
    logs, skipped, _ = collect(items + sp.close())
    assert logs == [(0, log, None)] and skipped == 0


def test_memory_is_bounded_while_skipping_and_while_in_a_log():
    sp = LogSplitter()
    rng = random.Random(5)
    for _ in range(200):
        sp.feed(garbage(rng, 1000))
        assert sp.held < len(MAGIC)
    log = LOGS["threads-mvar.nonthreaded.l"].read_bytes() if "threads-mvar.nonthreaded.l" in LOGS \
        else max(SMALL.values(), key=len)
    for i in range(0, len(log), 4096):
        sp.feed(log[i:i + 4096])
        assert sp.held < 4096 + (1 << 16)


def test_offsets_keep_counting_across_close():
    log = next(iter(COMPLETE.values()))
    sp = LogSplitter()
    first = sp.feed(log[:-5]) + sp.close()
    second = sp.feed(log) + sp.close()
    logs1, _, _ = collect(first)
    logs2, _, _ = collect(second)
    assert logs1[0][2] is not None and logs1[0][1] == log[:-5]
    assert logs2 == [(len(log) - 5, log, None)]


def test_decode_error_is_never_raised_on_random_bytes():
    rng = random.Random(11)
    log = next(iter(COMPLETE.values()))
    for _ in range(30):
        noisy = bytearray(log)
        for _ in range(rng.randint(1, 20)):
            noisy[rng.randrange(len(noisy))] = rng.getrandbits(8)
        stream = bytes(noisy) + log
        try:
            logs, skipped, _ = split(stream, randomly(rng.random())(stream))
        except DecodeError as exc:  # pragma: no cover - the test fails
            raise AssertionError("DecodeError escaped the splitter") from exc
        assert sum(len(b) for _, b, _ in logs) + skipped == len(stream)
        assert logs[-1][1:] == (log, None)
