"""The deriver contract: ``feed_many`` over runs of events gives what ``feed``
one event at a time gives; and the shared window clock."""

from __future__ import annotations

import random

import pytest

from ingest.derive.base import GAP_WINDOWS, DeriveSettings, Windows
from ingest.derive.registry import REGISTRY
from tests.corpus import log_id, pick
from tests.derive.helpers import events

LOGS = [pick("threads-mvar.N2.l", "threads-mvar-small.N2.l"), pick("sparks.N2.la", "sparks-small.N2.l"),
        pick("gc-heap.N2.nonmoving", "nonmoving-gc-census"),
        pick("heapprof.prof.N2.hc-p", "heapprof-small.prof.N2.hc-p")]
SETTINGS = DeriveSettings(window_ns=3_000_000, top_n=3)


def lines(points):
    return [(p.measurement, sorted(p.tags.items()), list(p.fields.items()), p.time) for p in points]


@pytest.mark.parametrize("name", LOGS, ids=log_id)
@pytest.mark.parametrize("measurement", list(REGISTRY))
def test_feed_many_is_feed_one_by_one(name, measurement):
    cls = REGISTRY[measurement]
    evs = list(events(name, cls.wants))
    one = cls(SETTINGS)
    a = [p for ev in evs for p in one.feed(ev)]
    a += one.flush(evs[-1].time if evs else 0)
    many = cls(SETTINGS)
    rng = random.Random(measurement)
    b, i = [], 0
    while i < len(evs):
        n = rng.choice((1, 2, 17, 500, 10_000))
        b += many.feed_many(evs[i:i + n])
        i += n
    b += many.flush(evs[-1].time if evs else 0)
    assert lines(b) == lines(a)


def test_feed_ignores_types_it_does_not_want():
    evs = events(LOGS[0], frozenset(range(256)))
    for cls in REGISTRY.values():
        d = cls(SETTINGS)
        assert all(d.feed(ev) == [] for ev in evs if ev.type not in cls.wants)
        assert d.flush(evs[-1].time) == []


def test_windows_carry_or_jump():
    closed = []

    def close(end):
        closed.append(end)
        return [end]

    w = Windows(10)
    assert not w.started
    assert w.advance(25, close) == [] and (w.start, w.end) == (20, 30)  # the first opens
    assert w.advance(29, close) == [] and not closed  # (callers test t >= end first)
    # nothing open: the window of t next, one close
    assert w.advance(57, close, lambda: False) == [30] and (w.start, w.end) == (50, 60)
    # something open: every window in between is closed in turn
    assert w.advance(93, close, lambda: True) == [60, 70, 80, 90] and (w.start, w.end) == (90, 100)
    w.reset()
    assert not w.started and w.advance(5, close) == [] and (w.start, w.end) == (0, 10)


def test_a_gap_costs_a_bounded_number_of_closes():
    """Something open across a gap of any length: GAP_WINDOWS empty windows
    one by one, then the rest of the gap as one (closed at the start of t's)."""
    closed = []

    def close(end):
        closed.append((w.start, end))
        return [end]

    w = Windows(10)
    w.advance(3, close)
    for gap in (10**5, 10**19):
        closed.clear()
        t = w.start + gap * 10 + 7
        out = w.advance(t, close, lambda: True)
        assert len(out) == GAP_WINDOWS + 2
        first = closed[0][0]
        singles = [(first + 10 * i, first + 10 * (i + 1)) for i in range(GAP_WINDOWS + 1)]
        assert closed[:-1] == singles
        assert closed[-1] == (singles[-1][1], t - t % 10)  # the stretch: up to t's window
        assert (w.start, w.end) == (t - t % 10, t - t % 10 + 10)
    # a gap of exactly GAP_WINDOWS + 1 empty windows: no stretch, all one by one
    closed.clear()
    w.advance(w.start + 10 * (GAP_WINDOWS + 2), close, lambda: True)
    assert len(closed) == GAP_WINDOWS + 2 and all(b - a == 10 for a, b in closed)
