"""The compiled core's batch helpers against the Python they replace:
``_core.types`` (the set of type ids of a batch, which the pipeline takes once
per batch instead of ``set(map(itemgetter(0), events))``) and
``_core.sort_by_time`` (the time-order merge's stable sort by time)."""

from __future__ import annotations

import random
from operator import itemgetter

import pytest

from ingest.derive import _core  # (whatever LIVEPROF_PURE_PYTHON says: it selects)
from protocol import Decoder
from tests.corpus import log_id, logs, read


@pytest.mark.parametrize("log", logs(), ids=log_id)
def test_the_types_of_every_batch(log):
    data = read(log)
    dec = Decoder()
    for start in range(0, len(data), 65536):
        batch = dec.feed(data[start:start + 65536])
        assert _core.types(batch) == set(map(itemgetter(0), batch))


def test_ids_outside_the_map_and_other_items():
    items = [(0,), (65535, "x"), (65536,), (-1,), (1 << 70,), (True,), (2.5,), [7], (3,)]
    assert _core.types(items) == set(map(itemgetter(0), items))
    assert _core.types([]) == set()
    with pytest.raises(TypeError):
        _core.types([(1,), 5])
    with pytest.raises(IndexError):
        _core.types([()])


@pytest.mark.parametrize("log", logs(), ids=log_id)
def test_sort_by_time_is_the_stable_sort(log):
    """``_core.sort_by_time``: the time-order merge's sort, the same order as
    ``list.sort(key=itemgetter(2))`` on every log's events in file order, and
    on runs with ties, cut at random."""
    events = [ev for ev in Decoder().feed(read(log)) if ev[0] != 18]
    got, want = list(events), list(events)
    assert _core.sort_by_time(got) is True
    want.sort(key=itemgetter(2))
    assert all(g is w for g, w in zip(got, want, strict=True))
    rng = random.Random(len(events))
    for _ in range(20):
        cut = [(0, i, rng.choice((rng.randrange(-3, 4), rng.randrange(1 << 40))))
               for i in range(rng.randrange(60))]
        got, want = list(cut), sorted(cut, key=itemgetter(2))
        assert _core.sort_by_time(got) is True and got == want


def test_sort_by_time_refuses_what_it_cannot_order():
    """Not a tuple, no third item, not an int, past 64 bits: False, the list
    as it was (the caller sorts with Python)."""
    for items in ([(0, 0, 1 << 63), (0, 0, 1)], [(0, 0, 2), [0, 0, 1]], [(0, 0, 2), (0, 0)],
                  [(0, 0, 2), (0, 0, 1.5)], [(0, 0, 2), (0, 0, True)]):
        before = list(items)
        assert _core.sort_by_time(items) is False
        assert items == before
    assert _core.sort_by_time([]) is True
