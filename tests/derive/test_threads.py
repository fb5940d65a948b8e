"""threads deriver on the corpus logs: runtime conservation, counts against
the summaries, top-N folding, window splitting."""

from __future__ import annotations

import collections

import pytest

from ingest.derive.base import DeriveSettings
from ingest.derive.threads import BLOCK_REASONS, FINISHED, ThreadsDeriver
from tests.corpus import log_id, pick, reference, summary, with_summary
from tests.derive.helpers import events, file_order_events, run, run_unordered
from tests.derive.naming import expected, per_window

LOGS = [n for n in with_summary() if summary(n)["counts"].get("RunThread")]
THREADS_MVAR = pick("threads-mvar.N2.l", "threads-mvar-small.N2.l")
MS = 1_000_000


def reference_runtime(evs) -> int:
    """RunThread -> next StopThread of that thread on that cap, summed; a run
    replaced by another RunThread on its cap ends there; runs open at the end
    of the log end at its last event."""
    open_: dict = {}
    total = 0
    for ev in evs:
        if ev.type == 1:
            prev = open_.get(ev.cap)
            if prev is not None:
                total += ev.time - prev[1]
            open_[ev.cap] = (ev.fields[0], ev.time)
        elif ev.type == 2:
            prev = open_.get(ev.cap)
            if prev is not None and prev[0] == ev.fields[0]:
                total += ev.time - prev[1]
                del open_[ev.cap]
    end = evs[-1].time
    return total + sum(end - t for _, t in open_.values())


def label_points(points):
    return [p for p in points if "label" in p.tags]


def count_points(points):
    return [p for p in points if "label" not in p.tags]


@pytest.mark.parametrize("name", LOGS, ids=log_id)
@pytest.mark.parametrize("window_ms", [1000, 7])
def test_runtime_equals_run_stop_time(name, window_ms):
    evs = events(name, ThreadsDeriver.wants)
    points = run(ThreadsDeriver(DeriveSettings(window_ns=window_ms * MS)), evs)
    runtime = sum(p.fields["runtime_ns"] for p in label_points(points))
    assert runtime == reference_runtime(evs)
    assert sum(p.fields["runs"] for p in label_points(points)) == summary(name)["counts"]["RunThread"]


@pytest.mark.parametrize("name", LOGS, ids=log_id)
def test_window_runtime_bounded_by_caps(name):
    window = 5 * MS
    evs = events(name, ThreadsDeriver.wants)
    caps = {ev.cap for ev in evs if ev.type == 1}
    per_window = collections.Counter()
    for p in label_points(run(ThreadsDeriver(DeriveSettings(window_ns=window)), evs)):
        assert p.time % window == 0
        per_window[p.time] += p.fields["runtime_ns"]
    assert per_window
    assert max(per_window.values()) <= window * len(caps)


@pytest.mark.parametrize("name", LOGS, ids=log_id)
def test_counts_against_summary(name):
    evs = events(name, ThreadsDeriver.wants)
    points = count_points(run(ThreadsDeriver(), evs))
    s = summary(name)
    assert sum(p.fields["created"] for p in points) == s["counts"].get("CreateThread", 0)
    if s["counts"].get("CreateThread"):
        assert s["threads"]["created"] == s["counts"]["CreateThread"]
    stops = [ev.fields[1] for ev in evs if ev.type == 2]
    assert sum(p.fields["finished"] for p in points) == sum(1 for st in stops if st == FINISHED)
    blocked = collections.Counter(BLOCK_REASONS[st] for st in stops if st in BLOCK_REASONS)
    assert sum(p.fields["blocked"] for p in points) == sum(blocked.values())
    for reason, n in blocked.items():
        assert sum(p.fields.get(reason, 0) for p in points) == n


def test_blocking_reasons_seen_in_threads_mvar():
    points = count_points(run(ThreadsDeriver(), events(THREADS_MVAR, ThreadsDeriver.wants)))
    seen = {k for p in points for k in p.fields if k.startswith("blocked_")}
    # the program blocks on an STM gate, a black hole, an MVar, readMVar and threadDelay
    assert {"blocked_stm", "blocked_black_hole", "blocked_mvar", "blocked_mvar_read"} <= seen


@pytest.mark.parametrize("name", [THREADS_MVAR, pick("stop.hT", "sleep.h")], ids=log_id)
@pytest.mark.parametrize("top,max_labels", [(3, 100), (3, 7)])
def test_labels_not_thread_ids_and_named_stably(name, top, max_labels):
    evs = events(name, ThreadsDeriver.wants)
    labels = {ev.fields[1] for ev in evs if ev.type == 44}
    full = label_points(run(ThreadsDeriver(DeriveSettings(top_n=1000, max_labels=1000)), evs))
    d = ThreadsDeriver(DeriveSettings(top_n=top, max_labels=max_labels))
    cut = label_points(run(d, evs))
    allowed = labels | {"unlabelled", "other"}
    assert {p.tags["label"] for p in full} <= allowed
    assert all(set(p.tags) == {"label"} for p in full)
    for field in ("runtime_ns", "runs"):
        assert sum(p.fields[field] for p in cut) == sum(p.fields[field] for p in full)
    # named the first time among a window's busiest, then kept; the rest in other
    want, named, folded = expected(per_window(full, ("runtime_ns", "runs")), top, max_labels)
    assert per_window(cut, ("runtime_ns", "runs")) == want
    assert d.folded == folded
    assert len({p.tags["label"] for p in cut} - {"other"}) <= max_labels


def test_labelled_workers_get_their_labels():
    evs = events(THREADS_MVAR, ThreadsDeriver.wants)
    points = label_points(run(ThreadsDeriver(DeriveSettings(top_n=1000, max_labels=1000)), evs))
    labelled = {p.tags["label"] for p in points} - {"unlabelled"}
    # (from the official parser's view:) every label the program gave; it
    # labels each of its workers, as many as its first argument says
    ref = reference(THREADS_MVAR)
    given = {e["fields"]["threadlabel"] for e in ref if e["type"] == "ThreadLabel"}
    workers = int(next(e for e in ref if e["type"] == "ProgramArgs")["fields"]["args"][1])
    assert labelled == given
    assert len(labelled) >= workers >= 20


@pytest.mark.parametrize("name", [THREADS_MVAR, pick("sparks.N2.la", "sparks-small.N2.l")],
                         ids=log_id)
def test_late_events_are_folded_in(name):
    evs = file_order_events(name, ThreadsDeriver.wants)
    d = ThreadsDeriver(DeriveSettings(window_ns=10 * MS))
    points = run_unordered(d, evs)
    assert d.late > 0
    assert sum(p.fields["runs"] for p in label_points(points)) == summary(name)["counts"]["RunThread"]
    assert sum(p.fields["created"] for p in count_points(points)) == summary(name)["counts"]["CreateThread"]
    assert all(p.fields["runtime_ns"] >= 0 for p in label_points(points))
