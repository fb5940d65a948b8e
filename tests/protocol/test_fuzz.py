"""Mutated real logs: only DecodeError ever escapes, nothing hangs, and the
decoder never holds more than one record's bytes."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import DecodeError
from protocol.eventlog import MAX_DECLARATION, Decoder

from ..conftest import PythonDecoder
from ..corpus import all_logs

SEEDS = [all_logs()[name].read_bytes() for name in
         ("unicode", "trace-binary-event", "hello-ghc-8.6.5", "ghc-9.2-events", "sleep.hd",
          "ticky-json")]
# the most the decoder holds: one header declaration (description and extra info at
# their bounds) or one record (a 16-bit payload size)
MAX_PENDING = max(2 * MAX_DECLARATION + 24, 65535 + 12)

mutation = st.tuples(st.sampled_from(["flip", "insert", "delete", "zero", "ones"]),
                     st.floats(0, 1), st.binary(min_size=1, max_size=8))


def mutate(data: bytes, mutations) -> bytes:
    buf = bytearray(data)
    for kind, where, blob in mutations:
        i = int(where * (len(buf) - 1)) if buf else 0
        if kind == "flip" and buf:
            buf[i] ^= blob[0] or 1
        elif kind == "insert":
            buf[i:i] = blob
        elif kind == "delete":
            del buf[i:i + len(blob)]
        elif kind == "zero":
            buf[i:i + len(blob)] = bytes(len(blob))
        else:
            buf[i:i + len(blob)] = b"\xff" * len(blob)
    return bytes(buf)


def run(decoder_cls, data: bytes, chunk: int):
    decoder = decoder_cls()
    try:
        for i in range(0, len(data), chunk):
            decoder.feed(data[i:i + chunk])
            assert len(decoder._pending) <= MAX_PENDING
        decoder.close()
    except DecodeError as err:
        assert 0 <= err.offset <= len(data)


@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.sampled_from(range(len(SEEDS))), mutations=st.lists(mutation, min_size=1,
       max_size=6), chunk=st.sampled_from([1, 13, 4096, 1 << 20]))
def test_mutated_logs_raise_only_decode_error(seed, mutations, chunk):
    data = mutate(SEEDS[seed], mutations)
    for cls in (Decoder, PythonDecoder):
        run(cls, data, chunk)


@settings(max_examples=200, deadline=2000)
@given(st.binary(max_size=400))
def test_random_bytes_after_a_valid_header(tail):
    header = SEEDS[0][: SEEDS[0].index(b"datb") + 4]
    for cls in (Decoder, PythonDecoder):
        run(cls, header + tail, 7)
        run(cls, tail, 64)
