"""The time-order merge on real logs: a file is a stable sort by time however
it is chunked; live merging is deterministic, in order except for late events
(counted), and bounded in memory."""

from __future__ import annotations

import pytest

from protocol import Decoder
from ingest.derive.order import Merge, OrderSettings

from pipeline_logs import all_logs, chunks_of, data, log_id

LOGS = all_logs()


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


@pytest.mark.parametrize("log", [p for p in LOGS if p.stat().st_size > 900_000], ids=log_id)
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


@pytest.mark.parametrize("log", [p for p in LOGS if p.stat().st_size > 900_000], ids=log_id)
@pytest.mark.parametrize("live", [False, True])
def test_memory_bound_same_whatever_the_chunking(log, live):
    settings = OrderSettings(live=live, max_held=3000, check_every=256, max_lag_ns=10**12)
    assert merged(log, "whole", settings)[0] == merged(log, 5, settings)[0]
