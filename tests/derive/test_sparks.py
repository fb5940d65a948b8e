"""sparks deriver against the summaries' spark_counters_last."""

from __future__ import annotations

import collections

import pytest

from ingest.derive.base import DeriveSettings
from ingest.derive.sparks import CUMULATIVE, DELTAS, NAMES, SparksDeriver
from tests.corpus import log_id, pick, summary, with_summary
from tests.derive.helpers import events, run

LOGS = [n for n in with_summary() if summary(n)["counts"].get("SparkCounters")]
SPARKS = pick("sparks.N2.la", "sparks-small.N2.l")
SUMMARY_KEYS = ("sparksCreated", "sparksDud", "sparksOverflowed", "sparksConverted",
                "sparksFizzled", "sparksGCd", "sparksRemaining")
MS = 1_000_000


def by_cap(points):
    out = collections.defaultdict(list)
    for p in points:
        out[p.tags["cap"]].append(p)
    return out


@pytest.mark.parametrize("name", LOGS, ids=log_id)
@pytest.mark.parametrize("window_ms", [1000, 1])
def test_last_counters_match_summary(name, window_ms):
    points = run(SparksDeriver(DeriveSettings(window_ns=window_ms * MS)),
                 events(name, SparksDeriver.wants))
    ref = summary(name)["spark_counters_last"]
    caps = by_cap(points)
    assert set(caps) == set(ref)
    for cap, pts in caps.items():
        last = max(pts, key=lambda p: p.time)
        assert [last.fields[n] for n in NAMES] == [ref[cap][k] for k in SUMMARY_KEYS]
        # the deltas add up to the last cumulative figure
        for cum, delta in zip(CUMULATIVE, DELTAS):
            assert sum(p.fields[delta] for p in pts) == last.fields[cum]


@pytest.mark.parametrize("name", LOGS, ids=log_id)
def test_at_most_one_point_per_cap_per_window(name):
    window = 10 * MS
    evs = events(name, SparksDeriver.wants)
    points = run(SparksDeriver(DeriveSettings(window_ns=window)), evs)
    keys = [(p.time // window, p.tags["cap"]) for p in points]
    assert len(keys) == len(set(keys))
    assert len(points) <= len(evs)


def test_sparks_log_converts_sparks():
    ref = summary(SPARKS)["spark_counters_last"]
    assert sum(c["sparksConverted"] for c in ref.values()) > 0
    points = run(SparksDeriver(), events(SPARKS, SparksDeriver.wants))
    assert sum(p.fields["converted_delta"] for p in points) == sum(
        c["sparksConverted"] for c in ref.values())
