"""One decoder for whole files, byte-at-a-time pipes and streams cut anywhere."""

from __future__ import annotations

import random

import pytest

from ..corpus import all_logs, small

SMALL = small(20_000)


def decode_chunks(decoder_cls, data: bytes, sizes):
    decoder = decoder_cls()
    events, pos = [], 0
    for size in sizes:
        events += decoder.feed(data[pos:pos + size])
        pos += size
        if pos >= len(data):
            break
    events += decoder.feed(data[pos:])
    return events, decoder.close()


@pytest.mark.parametrize("path", list(all_logs().values()), ids=lambda p: p.name)
def test_random_chunks_give_the_same_events(decoder_cls, path):
    data = path.read_bytes()
    whole, end = decode_chunks(decoder_cls, data, [len(data)])
    rng = random.Random(path.name)
    for limit in (7, 300, 70_000):
        sizes = iter(lambda limit=limit: rng.randint(0, limit), None)
        events, end2 = decode_chunks(decoder_cls, data, sizes)
        assert events == whole
        assert end2 == end


@pytest.mark.parametrize("path", SMALL, ids=lambda p: p.name)
def test_one_byte_at_a_time(decoder_cls, path):
    data = path.read_bytes()
    whole, end = decode_chunks(decoder_cls, data, [len(data)])
    events, end1 = decode_chunks(decoder_cls, data, [1] * len(data))
    assert events == whole and end1 == end


@pytest.mark.parametrize("name", ["trace-binary-event", "unicode", "hello-ghc-8.6.5", "testlog"])
def test_cut_at_every_offset(decoder_cls, name):
    data = all_logs()[name].read_bytes()
    whole, end = decode_chunks(decoder_cls, data, [len(data)])
    assert end.complete
    header_end = data.index(b"datb") + 4
    for cut in range(len(data)):
        decoder = decoder_cls()
        events = decoder.feed(data[:cut])
        outcome = decoder.close()
        assert events == whole[: len(events)]
        assert not outcome.complete and outcome.truncated
        assert outcome.offset + outcome.pending == cut
        if cut < header_end:
            assert outcome.reason == "header" and events == []
        elif outcome.reason == "event":
            # the cut is inside the record that follows the last complete event
            assert outcome.event_id is not None or outcome.pending < 2
        else:
            assert outcome.reason == "no end marker" and outcome.pending == 0


def test_offset_counts_consumed_bytes(decoder_cls):
    data = all_logs()["unicode"].read_bytes()
    decoder = decoder_cls()
    decoder.feed(data[:1000])
    assert decoder.offset <= 1000
    decoder.feed(data[1000:])
    assert decoder.offset == len(data) and decoder.ended


def test_bytes_after_the_end_marker_are_kept_apart(decoder_cls):
    data = all_logs()["unicode"].read_bytes()
    decoder = decoder_cls()
    first = decoder.feed(data + data[:100])
    assert decoder.ended and bytes(decoder.trailing) == data[:100]
    assert decoder.feed(data[100:]) == []
    assert bytes(decoder.trailing) == data
    again = decoder_cls().feed(bytes(decoder.trailing))
    assert again == first


def test_only_selected_types(decoder_cls):
    data = all_logs()["hello-ghc-8.6.5"].read_bytes()
    everything = decoder_cls().feed(data)
    selected = decoder_cls(only={0, 1, 2}).feed(data)
    assert selected == [ev for ev in everything if ev.type in {0, 1, 2}]
