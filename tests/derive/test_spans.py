"""spans and markers derivers against the summaries' user.* figures."""

from __future__ import annotations

import collections

import pytest

from ingest.derive.base import DeriveSettings
from ingest.derive.spans import MarkersDeriver, SpansDeriver
from tests.corpus import log_id, pick, summary, with_summary
from tests.derive.helpers import events, file_order_events, run, run_unordered
from tests.derive.naming import expected, per_window

SPAN_LOGS = [n for n in with_summary() if summary(n)["user"]["spans"]]
USER_LOGS = [n for n in with_summary()
             if summary(n)["user"]["messages"] or summary(n)["user"]["markers"]]
MS = 1_000_000
ALL = 10_000  # top_n: every label by name


def open_at_end(evs) -> dict[str, int]:
    """Per label, the time from each START never stopped to the last span message."""
    stacks = collections.defaultdict(list)
    last = None
    for ev in evs:
        m = ev.fields[0]
        if m.startswith("START "):
            stacks[m[6:]].append(ev.time)
            last = ev.time
        elif m.startswith("STOP "):
            if stacks[m[5:]]:
                stacks[m[5:]].pop()
            last = ev.time
    return {k: sum(last - t for t in v) for k, v in stacks.items() if v}


def totals(points):
    out = collections.defaultdict(lambda: [0, 0, 0])
    for p in points:
        acc = out[p.tags["label"]]
        acc[0] += p.fields["time_ns"]
        acc[1] += p.fields["starts"]
        acc[2] += p.fields["stops"]
    return out


@pytest.mark.parametrize("name", SPAN_LOGS, ids=log_id)
@pytest.mark.parametrize("window_ms", [1000, 3])
def test_span_totals_match_summary(name, window_ms):
    evs = [e for e in events(name, SpansDeriver.wants) if e.fields[0].startswith(("START ", "STOP "))]
    points = run(SpansDeriver(DeriveSettings(window_ns=window_ms * MS, top_n=ALL, max_labels=ALL)),
                 evs)
    got = totals(points)
    spans = summary(name)["user"]["spans"]
    still_open = open_at_end(evs)
    assert set(got) == set(spans)
    for label, ref in spans.items():
        assert got[label][1] == ref["starts"]
        assert got[label][2] == ref["stops"]
        assert got[label][0] == ref["total_ns"] + still_open.get(label, 0)
        assert (label in still_open) == bool(ref["unmatched_starts"])


def test_killed_log_has_open_spans():
    # the killed log ends inside 102 spans (its stand-in inside 61): their
    # time up to the end is counted
    name = pick("threads-mvar.N2.l.killed", "threads-mvar.nonthreaded.l.cut")
    assert name in SPAN_LOGS
    spans = summary(name)["user"]["spans"]
    assert sum(s["unmatched_starts"] for s in spans.values()) > 0


@pytest.mark.parametrize("name", SPAN_LOGS, ids=log_id)
def test_span_windows_are_aligned_and_nonnegative(name):
    window = 2 * MS
    points = run(SpansDeriver(DeriveSettings(window_ns=window)), events(name, SpansDeriver.wants))
    assert points
    for p in points:
        assert p.time % window == 0
        assert p.fields["time_ns"] >= 0
    keys = [(p.time, p.tags["label"]) for p in points]
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize("name", USER_LOGS, ids=log_id)
def test_markers_and_message_counts(name):
    evs = events(name, MarkersDeriver.wants)
    points = run(MarkersDeriver(), evs)
    user = summary(name)["user"]
    markers = [p for p in points if "text" in p.fields]
    windows = [p for p in points if "text" not in p.fields]
    assert len(markers) == user["markers"]
    assert [(p.time, p.fields["text"]) for p in markers] == [
        (e.time, e.fields[0]) for e in evs if e.type == 58]
    assert sum(p.fields["messages"] for p in windows) == user["messages"]
    assert sum(p.fields["markers"] for p in windows) == user["markers"]
    assert all(p.time % 1_000_000_000 == 0 for p in windows)
    assert len({p.time for p in windows}) == len(windows)


@pytest.mark.parametrize("name", [pick("threads-mvar.N2.l", "threads-mvar-small.N2.l"),
                                  pick("gc-heap.N2.l", "gc-heap-small.N2.hT")], ids=log_id)
def test_late_messages_are_folded_in(name):
    d = SpansDeriver(DeriveSettings(window_ns=10 * MS, top_n=ALL, max_labels=ALL))
    points = run_unordered(d, file_order_events(name, SpansDeriver.wants))
    got = totals(points)
    for label, ref in summary(name)["user"]["spans"].items():
        assert (got[label][1], got[label][2]) == (ref["starts"], ref["stops"])
    assert all(p.fields["time_ns"] >= 0 for p in points)
    m = MarkersDeriver()
    points = run_unordered(m, file_order_events(name, MarkersDeriver.wants))
    assert sum(p.fields.get("messages", 0) for p in points) == summary(name)["user"]["messages"]


@pytest.mark.parametrize("name", SPAN_LOGS)
@pytest.mark.parametrize("top,max_labels", [(1, 100), (3, 100), (3, 5)])
def test_span_labels_named_stably(name, top, max_labels):
    """Labels are named the first time among a window's ``top`` busiest, at
    most ``max_labels`` of them, and keep their name; the rest is summed into
    ``other``: nothing is lost, a named label's points are its own figures."""
    evs = events(name, SpansDeriver.wants)
    window = 20 * MS
    full = run(SpansDeriver(DeriveSettings(window_ns=window, top_n=ALL, max_labels=ALL)), evs)
    d = SpansDeriver(DeriveSettings(window_ns=window, top_n=top, max_labels=max_labels))
    cut = run(d, evs)
    assert "other" not in {p.tags["label"] for p in full}  # (no real label of that name)
    fields = ("time_ns", "starts", "stops")
    want, named, folded = expected(per_window(full, fields), top, max_labels)
    assert per_window(cut, fields) == want
    assert len(named) <= max_labels
    assert d.folded == folded
    if "threads-mvar" in name.name:  # (up to 102 labels at once; the other logs may never fold)
        assert folded, "no window had more labels than the bound: the test shows nothing"
