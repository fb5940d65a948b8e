"""The live merge's compiled loop (``_core.merge_live``, taken by
``Merge._push_live``) against the pure Python loop, the reference: on every
corpus log, whole and in random chunks, under settings that make the merge
release by the watermark, by the lag bound alone, evict for its memory bound,
and mark thousands of events late, both give the same items in the same order
(late ones wrapped the same, under the same frontier), the same counts and the
same state; and the same on hand-made streams at the edges (times beyond 64
bits and near them, a jump past ``max_gap``, capabilities past the small ints)."""

from __future__ import annotations

import pytest

# (whatever LIVEPROF_PURE_PYTHON says: it selects; not built, this module fails)
from ingest.derive import _core as COMPILED
from ingest.derive import _native
from ingest.derive.order import Merge, OrderSettings, _Late
from protocol import Decoder, Event
from tests.corpus import log_id, logs
from tests.corpus import read as data
from tests.derive.helpers import chunks_of

SETTINGS = {
    "default": OrderSettings(live=True),
    "lagging": OrderSettings(live=True, max_lag_ns=20_000_000, idle_ns=5_000_000),
    "lag-only": OrderSettings(live=True, max_lag_ns=50_000_000, idle_ns=None),
    "bounded": OrderSettings(live=True, max_lag_ns=2_000_000_000, max_held=3000, check_every=256),
}


def run(events_per_push: list[list[Event]], settings: OrderSettings, compiled: bool,
        monkeypatch, max_gap: int | None = None):
    monkeypatch.setattr(_native, "core", COMPILED if compiled else None)
    merge = Merge(settings)
    if max_gap is not None:
        merge.max_gap = max_gap
    out: list = []
    for events in events_per_push:
        out.extend(merge.push(events))
    out.extend(merge.flush())
    # a _Late compares as its tuple: its class is part of the decision
    items = [(item.__class__ is _Late, tuple(item)) for item in out]
    state = (merge.late_events, merge.evicted, merge.idle, merge.idle_raised, merge._frontier,
             merge._newest, merge._watermark, merge._latest, merge.jumped, merge.jump_dropped)
    return items, state


def decoded(log, how) -> list[list[Event]]:
    dec = Decoder()
    out = [dec.feed(chunk) for chunk in chunks_of(data(log), how)]
    dec.close()
    return out


@pytest.mark.parametrize("log", logs(), ids=log_id)
@pytest.mark.parametrize("name", SETTINGS)
@pytest.mark.parametrize("how", ["whole", 5])
def test_compiled_live_merge_decides_as_the_reference(log, name, how, monkeypatch):
    pushes = decoded(log, how)
    settings = SETTINGS[name]
    want = run(pushes, settings, False, monkeypatch)
    got = run(pushes, settings, True, monkeypatch)
    assert got[1] == want[1]
    assert got[0] == want[0]


def _ev(ty: int, t: int, cap, *fields) -> Event:
    return Event(ty, "e", t, cap, tuple(fields))


@pytest.mark.parametrize("base", [0, 1 << 61, (1 << 62) - 1000, (1 << 63) - 100, 1 << 64])
def test_edges_of_64_bits(base, monkeypatch):
    """Times near and past what the compiled loop takes, capabilities past 256,
    a jump past max_gap: the compiled merge leaves them to Python, with the
    same result."""
    caps = [0, 1, 300, 301, None]
    stream = []
    t = base
    for i in range(4000):
        cap = caps[(i // 7) % len(caps)]
        t += (i * 7919) % 50_000 - 20_000 + 10_000   # mostly forward, some back
        if i % 97 == 0:
            stream.append(_ev(18, t, cap, 100, t + 30_000))   # a block marker
        stream.append(_ev(60, max(t, 0), cap, i))
    stream.append(_ev(60, t + 10_000_000_000, 0, 0))  # a jump past max_gap below
    stream.append(_ev(60, t + 10_000_000_001, 1, 0))
    pushes = [stream[i:i + 333] for i in range(0, len(stream), 333)]
    for settings in SETTINGS.values():
        want = run(pushes, settings, False, monkeypatch, max_gap=5_000_000_000)
        got = run(pushes, settings, True, monkeypatch, max_gap=5_000_000_000)
        assert got == want
