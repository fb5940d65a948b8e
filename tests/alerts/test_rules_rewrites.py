"""A live correction writes gc points again (docs/live.md): the alert rules
alert once per collection, and do not count a rewritten pause twice."""

from __future__ import annotations

from ingest.alerts.rules import GcPauseRules
from ingest.derive.point import Point

TAGS = {"app": "a", "host": "h", "session": "s", "gen": "1"}
MS = 1_000_000


def gc(t: int, pause_ms: float, rewrite: bool = False) -> Point:
    p = Point("gc", dict(TAGS), {"pause_ns": int(pause_ms * MS)}, t)
    if rewrite:
        p.meta["rewrite"] = True
    return p


def test_a_collection_written_again_is_alerted_once():
    rules = GcPauseRules(pause_threshold_ns=5 * MS, share_threshold=0.001, window_ns=1000 * MS)
    first = rules.feed([gc(10 * MS, 8)])
    again = rules.feed([gc(10 * MS, 9, rewrite=True), gc(20 * MS, 7, rewrite=True)])
    assert [a.payload["alert"] for a in first] == ["gc_pause"]
    # the same collection again: no alert; one first over the threshold now: alerted
    assert [(a.payload["alert"], a.time_ns) for a in again] == [("gc_pause", 20 * MS)]
    # the share window counted the first write only
    share = rules.end()
    assert [(a.payload["pause_total_ns"], a.payload["collections"]) for a in share] == [(8 * MS, 1)]
