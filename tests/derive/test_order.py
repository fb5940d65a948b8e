"""The time-order merge on real logs: a file is a stable sort by time however
it is chunked; live merging is deterministic, in order except for late events
(counted), and bounded in memory."""

from __future__ import annotations

import pytest

from ingest.derive.order import Merge, OrderSettings
from protocol import Decoder
from tests.corpus import big, log_id, logs
from tests.corpus import read as data
from tests.derive.helpers import chunks_of

LOGS = logs()


def decoded(log):
    dec = Decoder()
    events = dec.feed(data(log))
    dec.close()
    return events


def merged(log, how, settings=None):
    merge = Merge(settings)
    dec = Decoder()
    out = []
    for chunk in chunks_of(data(log), how):
        out.extend(merge.push(dec.feed(chunk)))
    out.extend(merge.flush())
    return [Merge.unwrap(x) for x in out], merge


@pytest.mark.parametrize("log", LOGS, ids=log_id)
@pytest.mark.parametrize("how", ["whole", 7])
def test_file_is_stable_sort(log, how):
    events = [e for e in decoded(log) if e.type != 18]
    out, merge = merged(log, how)
    assert [e for e, _ in out] == sorted(events, key=lambda e: e.time)
    assert merge.late_events == 0


@pytest.mark.parametrize("log", LOGS, ids=log_id)
def test_live_in_order_but_late(log):
    settings = OrderSettings(live=True, max_lag_ns=50_000_000)
    out, merge = merged(log, "whole", settings)
    events = [e for e in decoded(log) if e.type != 18]
    assert sorted(e for e, _ in out) == sorted(events)  # nothing lost or doubled
    in_order = [e.time for e, late in out if not late]
    assert in_order == sorted(in_order)
    assert sum(late for _, late in out) == merge.late_events
    # the same decisions whatever the chunking
    assert merged(log, 11, settings)[0] == out


@pytest.mark.parametrize("log", big(), ids=log_id)
def test_memory_bound(log):
    settings = OrderSettings(max_held=5000, check_every=512)
    merge = Merge(settings)
    dec = Decoder()
    out, peak = [], 0
    for chunk in chunks_of(data(log), 3):
        out.extend(merge.push(dec.feed(chunk)))
        peak = max(peak, merge.held)
    out.extend(merge.flush())
    assert peak <= settings.max_held + settings.check_every
    assert merge.evicted > 0
    events = [Merge.unwrap(x)[0] for x in out]
    assert len(events) == sum(1 for e in decoded(log) if e.type != 18)
    in_order = [Merge.unwrap(x)[0].time for x in out if not Merge.unwrap(x)[1]]
    assert in_order == sorted(in_order)


@pytest.mark.parametrize("log", big(), ids=log_id)
@pytest.mark.parametrize("live", [False, True])
def test_memory_bound_same_whatever_the_chunking(log, live):
    settings = OrderSettings(live=live, max_held=3000, check_every=256, max_lag_ns=10**12)
    assert merged(log, "whole", settings)[0] == merged(log, 5, settings)[0]


# -- the live watermark, on hand-made streams -------------------------------------------

def _ev(ty, t, cap, *fields):
    from protocol import Event
    return Event(ty, "x", t, cap, tuple(fields))


def _block(t, cap, end):
    return _ev(18, t, cap, 1000, end, 0xFFFF if cap is None else cap)


MS = 1_000_000


def _released_times(merge, events):
    return [Merge.unwrap(x)[0].time for x in merge.push(events)]


def test_watermark_waits_for_the_set_of_capabilities_to_settle():
    """Two capabilities in blocks: until no new one appeared for the settle time,
    only the lag bound releases; then the slowest capability's time does."""
    settings = OrderSettings(live=True, max_lag_ns=10_000 * MS, slack_ns=0, settle_ns=100 * MS)
    m = Merge(settings)
    first = [_block(0, 0, 50 * MS), _ev(1, 10 * MS, 0), _block(0, 1, 50 * MS), _ev(1, 20 * MS, 1)]
    assert _released_times(m, first) == []          # cap 1 just appeared: nothing trusted yet
    later = [_block(200 * MS, 0, 300 * MS), _ev(1, 250 * MS, 0),
             _block(200 * MS, 1, 300 * MS), _ev(1, 240 * MS, 1)]
    # settled (no new capability for 100 ms): released up to the slower capability's time
    assert _released_times(m, later) == [10 * MS, 20 * MS, 240 * MS]
    assert m.late_events == 0


def test_startup_names_every_capability_at_once():
    """With Startup (n caps) the watermark applies from the start, and a
    capability that has not shown anything yet holds it back."""
    settings = OrderSettings(live=True, max_lag_ns=10_000 * MS, slack_ns=0, settle_ns=10_000 * MS)
    m = Merge(settings)
    assert _released_times(m, [_block(0, None, 5 * MS), _ev(17, 1 * MS, None, 2),
                               _block(0, 0, 50 * MS), _ev(1, 10 * MS, 0)]) == []  # cap 1 silent
    out = _released_times(m, [_block(0, 1, 50 * MS), _ev(1, 30 * MS, 1),
                              _block(60 * MS, 0, 90 * MS), _ev(1, 70 * MS, 0),
                              _block(60 * MS, 1, 90 * MS), _ev(1, 80 * MS, 1)])
    # the global stream (its block ended at 5 ms) is now the slowest: it bounds the release
    assert out == [1 * MS]
    out = _released_times(m, [_block(100 * MS, None, 120 * MS), _ev(43, 101 * MS, None)])
    # every stream is past 90 ms (caps 0 and 1 by their completed blocks): released up to it
    assert out == [10 * MS, 30 * MS, 70 * MS, 80 * MS]
    assert m.late_events == 0


def test_without_block_markers_only_the_lag_bound_releases():
    """The monitor protocol: no capabilities, so no watermark."""
    m = Merge(OrderSettings(live=True, max_lag_ns=100 * MS, slack_ns=0))
    assert _released_times(m, [_ev(1, t * MS, None) for t in (10, 5, 50, 40)]) == []
    assert _released_times(m, [_ev(1, 145 * MS, None)]) == [5 * MS, 10 * MS, 40 * MS]
    assert m.late_events == 0
