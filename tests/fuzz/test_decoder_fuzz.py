"""Fuzzing the eventlog decoder with mutated real logs, both record loops.

Whatever the bytes and however they are split, ``feed``/``close`` end in
events, ``DecodeError`` or ``EndOfStream``, nothing else; the C and Python
loops give the same answer; and what the decoder holds stays bounded (one
record or header declaration pending, a capped header, capped trailing
bytes).  The CI run is a fixed number of seeded inputs (a few seconds);
``bench/fuzz_protocol.py`` runs the same checks for as long as asked.
"""

from __future__ import annotations

import random

import pytest

from protocol import DecodeError, Decoder
from protocol.eventlog import MAX_DECLARATION, MAX_DECLARATIONS, MAX_TRAILING

from ..conftest import PythonDecoder
from ..corpus import all_logs

SEED_LOGS = ["unicode", "trace-binary-event", "hello-ghc-8.6.5", "ghc-9.2-events", "sleep.hd",
             "ticky-json", "testlog"]
# one header declaration (description and extra info) or one record (u16 size + 12)
MAX_PENDING = max(2 * MAX_DECLARATION + 24, 65535 + 12)


def seeds() -> list[bytes]:
    logs = all_logs()
    return [logs[name].read_bytes() for name in SEED_LOGS if name in logs]


class Failure(AssertionError):
    """A fuzz input broke a rule; the message says which."""


def mutate(data: bytes, rng: random.Random, seeds: list[bytes]) -> bytes:
    """A few random edits: flips, inserts, deletes, runs of 0/0xff, copied
    or spliced ranges, interesting integers, junk after the end."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        if not buf:
            buf += rng.randbytes(rng.randint(1, 64))
        i = rng.randrange(len(buf))
        kind = rng.randrange(9)
        if kind == 0:
            buf[i] ^= 1 << rng.randrange(8)
        elif kind == 1:
            buf[i:i] = rng.randbytes(rng.randint(1, 16))
        elif kind == 2:
            del buf[i:i + rng.randint(1, 32)]
        elif kind == 3:
            buf[i:i + rng.randint(1, 8)] = bytes([rng.choice((0, 0xFF))]) * rng.randint(1, 8)
        elif kind == 4:          # duplicate a range
            j = rng.randrange(len(buf))
            buf[i:i] = buf[j:j + rng.randint(1, 200)]
        elif kind == 5:          # an interesting 16/32-bit value (sizes, lengths, ids)
            width = rng.choice((2, 4))
            value = rng.choice((0, 1, 0x7F, 0x80, 0xFF, 0xFFFF, 0xFFFE, 0x10000, 0x7FFFFFFF,
                                0xFFFFFFFF, 18, 0xFFFF - 1))
            buf[i:i + width] = (value & ((1 << 8 * width) - 1)).to_bytes(width, "big")
        elif kind == 6:          # splice in part of another log
            other = rng.choice(seeds)
            j = rng.randrange(len(other))
            buf[i:] = other[j:j + rng.randint(1, 4000)] + buf[i:]
        elif kind == 7:          # cut
            del buf[i:]
        else:                    # junk after the end
            buf += rng.randbytes(rng.randint(1, 3000))
    return bytes(buf)


def chunks(n: int, rng: random.Random) -> list[int]:
    kind = rng.randrange(4)
    if kind == 0:
        return [n]
    if kind == 1:
        return [1] * min(n, 5000) + [n]
    limit = rng.choice((7, 300, 70_000))
    out, total = [], 0
    while total < n:
        out.append(rng.randint(1, limit))
        total += out[-1]
    return out


def run(cls, data: bytes, sizes: list[int]) -> tuple:
    """Decode ``data`` fed in ``sizes``; the outcome, checking the bounds on the way."""
    decoder = cls()
    events, pos = [], 0
    try:
        for size in sizes:
            if pos >= len(data):
                break
            events += decoder.feed(data[pos:pos + size])
            pos += size
            if len(decoder._pending) > MAX_PENDING:
                raise Failure(f"{len(decoder._pending)} bytes pending")
            if len(decoder.trailing) > MAX_TRAILING:
                raise Failure(f"{len(decoder.trailing)} trailing bytes kept")
            if len(decoder._decls) > MAX_DECLARATIONS:
                raise Failure(f"{len(decoder._decls)} declarations held")
        events += decoder.feed(data[pos:])
        end = decoder.close()
        if end.complete and end.offset != decoder.end_offset:
            raise Failure("complete stream: offset is not end_offset")
        if not 0 <= end.offset <= len(data):
            raise Failure(f"end offset {end.offset} outside the {len(data)} bytes")
        return ("end", len(events), end)
    except DecodeError as err:
        if not 0 <= err.offset <= len(data):
            raise Failure(f"error offset {err.offset} outside the {len(data)} bytes") from err
        return ("error", len(events) + len(err.events), str(err), err.offset)


def check(data: bytes, rng: random.Random) -> None:
    """The rules for one input: bounded, and the same answer from both loops
    and from two different splits of the input."""
    first = run(Decoder, data, [len(data)])
    for cls in (Decoder, PythonDecoder):
        other = run(cls, data, chunks(len(data), rng))
        if other != first:
            raise Failure(f"{cls.__name__} split differently: {other!r:.300} != {first!r:.300}")


@pytest.mark.parametrize("seed", range(6))
def test_mutated_logs(seed):
    rng = random.Random(seed)
    logs = seeds()
    for _ in range(100):
        check(mutate(rng.choice(logs), rng, logs), rng)


def test_random_bytes_after_a_real_header():
    rng = random.Random(99)
    log = seeds()[0]
    header = log[:log.index(b"datb") + 4]
    for _ in range(300):
        check(header + rng.randbytes(rng.randint(0, 600)), rng)
        check(rng.randbytes(rng.randint(0, 100)), rng)


def test_a_complete_log_with_megabytes_after_it():
    rng = random.Random(3)
    log = seeds()[0]
    data = log + rng.randbytes(3 * MAX_TRAILING)
    check(data, rng)
    d = Decoder()
    for i in range(0, len(data), 65536):
        d.feed(data[i:i + 65536])
    assert d.close().offset == len(log) and len(d.trailing) == MAX_TRAILING
