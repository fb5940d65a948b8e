"""The pipeline on real logs: the same points whole, per byte and in random
chunks; capability time adds up per window; identity and clock."""

from __future__ import annotations

import pytest

from ingest.derive.base import GAP_WINDOWS, DeriveSettings
from ingest.derive.order import OrderSettings
from ingest.derive.pipeline import Identity
from tests.corpus import big, log_id, logs, pick, reference, sibling, summary
from tests.derive.helpers import run_pipeline as run
from tests.derive.helpers import whole

LOGS = logs()
SMALL = [p for p in LOGS if p.stat().st_size <= 300_000]


def lines(points):
    """The points as lines, per measurement in the order they came: each
    deriver's own sequence is fixed by its events, while the interleaving of
    different derivers' points depends on how the events were batched."""
    out: dict[str, list[str]] = {}
    for p in points:
        out.setdefault(p.measurement, []).append(p.to_line())
    return out


@pytest.mark.parametrize("log", SMALL, ids=log_id)
def test_same_points_per_byte(log):
    assert lines(run(log, 1)[0]) == lines(whole(log)[0])


@pytest.mark.parametrize("log", LOGS, ids=log_id)
@pytest.mark.parametrize("seed", [1, 2])
def test_same_points_random_chunks(log, seed):
    assert lines(run(log, seed)[0]) == lines(whole(log)[0])


@pytest.mark.parametrize("log", LOGS, ids=log_id)
def test_same_points_live_mode_any_chunking(log):
    # (corrections off: what a correction rewrites depends on what was written before
    # it, i.e. on the chunking; test_corrections.py checks what they leave)
    order = OrderSettings(live=True, max_lag_ns=20_000_000, correct_ns=None)
    a = lines(run(log, "whole", order=order)[0])
    assert lines(run(log, 3, order=order)[0]) == a


@pytest.mark.parametrize("log", LOGS, ids=log_id)
@pytest.mark.parametrize("window", [1_000_000_000, 7_000_000])
def test_capability_time_adds_up(log, window):
    """Every point of a capability covers the time up to its next point: one
    window, or, after GAP_WINDOWS empty windows one by one, the rest of a gap."""
    points, _ = run(log, settings=DeriveSettings(window_ns=window))
    per_cap: dict = {}
    for p in points:
        if p.measurement == "capability":
            f = p.fields
            total = f["mutator_ns"] + f["gc_ns"] + f["idle_ns"]
            assert min(f.values()) >= 0
            assert total > 0
            per_cap.setdefault(p.tags["cap"], []).append((p.time, total))
    for cap, rows in per_cap.items():
        times = [t for t, _ in rows]
        assert times == sorted(times)
        steps = [b - a for a, b in zip(times, times[1:])]
        assert rows[0][1] <= window and rows[-1][1] <= window
        # a whole window or stretch in between first and last: exactly its length
        for (t, total), step in zip(rows[1:-1], steps[1:]):
            assert total == step, (cap, t)
        for i, step in enumerate(steps):
            assert step % window == 0 and step > 0, "a window of an existing capability is missing"
            if step > window:
                assert i >= GAP_WINDOWS and steps[i - GAP_WINDOWS:i] == [window] * GAP_WINDOWS, \
                    (cap, times[i])


@pytest.mark.parametrize("log", [p for p in LOGS if sibling(p, ".summary.json").exists()],
                         ids=log_id)
def test_capability_gc_time_matches_pairs(log):
    """Per-cap GC time summed over windows = the summary's pause_total_ns (sum of
    StartGC..EndGC pairs over all caps)."""
    points, _ = run(log, settings=DeriveSettings(window_ns=5_000_000))
    gc = sum(p.fields["gc_ns"] for p in points if p.measurement == "capability")
    s = summary(log)["gc"]
    assert gc == s["pause_total_ns"]


@pytest.mark.parametrize("log", [p for p in LOGS if sibling(p, ".summary.json").exists()],
                         ids=log_id)
def test_clock_and_identity(log):
    points, pipe = whole(log)
    ref = reference(log)
    wall = [e for e in ref if e["type"] == "WallClockTime"]
    args = [e for e in ref if e["type"] == "ProgramArgs"]
    if not points:
        return
    if wall:
        w = wall[0]
        offset = w["fields"]["sec"] * 10**9 + w["fields"]["nsec"] - w["t"]
        assert pipe.clock.source == "wall_clock_event"
        assert pipe.clock.offset == offset
        session = [p for p in points if p.measurement == "session"]
        if session:
            assert session[0].time == offset  # eventlog time 0
    else:
        assert pipe.clock.source == "fallback"
    expected_app = args[0]["fields"]["args"][0].rsplit("/", 1)[-1] if args else "unknown"
    assert {p.tags["app"] for p in points} == {expected_app}
    assert {p.tags["host"] for p in points} == {"test"}
    # stable per stream: a second run gives the same session id
    assert run(log)[1].tags["session"] == pipe.tags["session"]


def test_identity_overrides_and_fallback():
    log = pick("threads-mvar.N2.l.killed", "threads-mvar.nonthreaded.l.cut")
    points, pipe = run(log, identity=Identity(app="svc", host="h1", session="s1",
                                              start_wall_ns=1_700_000_000_000_000_000))
    assert pipe.clock.source == "fallback"
    assert {(p.tags["app"], p.tags["host"], p.tags["session"]) for p in points} == \
        {("svc", "h1", "s1")}
    first_gc = min(p.time for p in points if p.measurement == "gc")
    assert first_gc >= 1_700_000_000_000_000_000


@pytest.mark.parametrize("log", big(), ids=log_id)
def test_preamble_keeps_identity_under_memory_bound(log):
    """With a memory bound far below the log, the global buffer at the end of
    the file arrives late; a file's pre-scan (as `liveprof derive` does) still
    gives the same clock, tags and gc kinds as the unbounded run."""
    from ingest.session import prescan

    _, preamble = prescan(str(log))
    order = OrderSettings(max_held=2000, check_every=256)
    bounded, pipe = run(log, 5, order=order, preamble=preamble)
    bounded_whole, _ = run(log, "whole", order=order, preamble=preamble)
    assert lines(bounded) == lines(bounded_whole)
    full, ref = whole(log)
    assert pipe.clock.source == ref.clock.source and pipe.clock.offset == ref.clock.offset
    assert pipe.tags == ref.tags
    # (the bound is far too small for these files' whole-run blocks, so the gc
    # points themselves differ; but the generations are known from the start)
    if any(ev.type == 52 for ev in preamble):  # HeapInfoGHC (a killed log has none)
        gc = [p for p in bounded if p.measurement == "gc" and "gen" in p.tags]
        assert gc and all("kind" in p.tags for p in gc)
    assert {p.tags["app"] for p in bounded} == {p.tags["app"] for p in full}
