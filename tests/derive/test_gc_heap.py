"""gc and heap points against the reference summaries of the corpus."""

from __future__ import annotations

import pytest

from tests.corpus import log_id, reference, summary, with_summary
from tests.derive.helpers import whole

LOGS = with_summary()


def stw_intervals(ref) -> int:
    """Stop-the-world intervals of a reference dump: unions of overlapping
    StartGC..EndGC pairs per cap, events stably sorted by time."""
    evs = sorted((e for e in ref if e["type"] in ("StartGC", "EndGC")), key=lambda e: e["t"])
    in_gc, count = set(), 0
    for e in evs:
        if e["type"] == "StartGC":
            if not in_gc:
                count += 1
            in_gc.add(e["cap"])
        else:
            in_gc.discard(e["cap"])
    return count


@pytest.mark.parametrize("log", LOGS, ids=log_id)
def test_gc_collections(log):
    s = summary(log)["gc"]
    points, _ = whole(log)
    gc = [p for p in points if p.measurement == "gc"]
    with_stats = [p for p in gc if "gen" in p.tags]
    if s["collections"]:
        # one point with statistics per GCStatsGHC; a log cut short may also have
        # a collection whose statistics were lost (written without them)
        assert len(with_stats) == s["collections"]
        assert len(gc) - len(with_stats) <= (0 if summary(log)["counts"].get("HeapInfoGHC") else 1)
        by_gen: dict = {}
        for p in with_stats:
            by_gen[p.tags["gen"]] = by_gen.get(p.tags["gen"], 0) + 1
        assert by_gen == s["collections_by_gen"]
        if s["major_collections"] is not None:
            assert sum(p.tags.get("kind") == "major" for p in gc) == s["major_collections"]
    else:
        # no GC statistics (GHC 7.0): each stop-the-world interval is a collection
        assert not with_stats
        assert len(gc) == stw_intervals(reference(log))
        assert len(gc) <= s["pause_pairs"]
    assert sum(p.fields["pause_ns"] for p in gc) == s["pause_union_ns"]
    if gc:
        assert max(p.fields["pause_ns"] for p in gc) <= s["pause_max_ns"] or \
            s["pause_pairs"] > len(gc)


@pytest.mark.parametrize("log", LOGS, ids=log_id)
def test_gc_fields(log):
    points, _ = whole(log)
    for p in points:
        if p.measurement != "gc":
            continue
        assert p.fields["pause_ns"] >= 0
        assert p.fields["caps"] >= (1 if p.fields["pause_ns"] else 0)
        if "balance" in p.fields:
            assert 0.0 <= p.fields["balance"] <= 1.0
        if "sync_ns" in p.fields:
            assert p.fields["sync_ns"] >= 0


@pytest.mark.parametrize("log", LOGS, ids=log_id)
def test_heap_against_summary(log):
    h = summary(log)["heap"]
    points, _ = whole(log)
    heap = [p for p in points if p.measurement == "heap"]
    assert sum(p.fields["allocated_bytes"] for p in heap) == h["allocated_bytes_total"]
    sizes = [p.fields["size_max_bytes"] for p in heap if "size_max_bytes" in p.fields]
    lives = [p.fields["live_max_bytes"] for p in heap if "live_max_bytes" in p.fields]
    # the summary's maxima are 0 when a log has no such event
    assert max(sizes, default=0) == h["max_heap_size_bytes"]
    assert max(lives, default=0) == h["max_heap_live_bytes"]
    # the "last" values (by time) are those of the last window that has them
    last_size = [p.fields["size_bytes"] for p in heap if "size_bytes" in p.fields]
    assert (last_size[-1] if last_size else None) == h["last_heap_size_bytes"]
    blocks = [p.fields["blocks_bytes"] for p in heap if "blocks_bytes" in p.fields]
    assert (blocks[-1] if blocks else None) == h["last_blocks_size_bytes"]


@pytest.mark.parametrize("log", LOGS, ids=log_id)
def test_session_point(log):
    s = summary(log)
    points, pipe = whole(log)
    sess = [p for p in points if p.measurement == "session"]
    assert len(sess) <= 1
    counts = s["counts"]
    if counts.get("ProgramArgs") or counts.get("RtsIdentifier"):
        assert len(sess) == 1
    if sess and "generations" in sess[0].fields and s["gc"]["generations"] is not None:
        assert sess[0].fields["generations"] == s["gc"]["generations"]
    for p in points:
        assert set(p.tags) >= {"app", "host", "session"}
        assert p.tags["session"] == pipe.tags["session"]
