"""The GC-pause rules alone (ingest/alerts): a real log's derived points in,
alerts out, with every expectation computed here from the points and the
rules as docs/alerts.md states them; no broker, no event loop."""

from __future__ import annotations

import ast
import dataclasses
import random
from datetime import datetime
from pathlib import Path

import pytest

from ingest.alerts import ALERT_GC_PAUSE, ALERT_GC_PAUSE_SHARE, GcPauseRules, iso_time
from tests.alerts.helpers import derive_points, gc_points
from tests.corpus import DATA, REPO

LOG = DATA / "heapprof.prof.nonthreaded.hb.eventlog"  # 199 collections over some 1.2 s
WINDOW_NS = 50_000_000  # 50 ms: the log spans some two dozen windows


@pytest.fixture(scope="module")
def points() -> list:
    return derive_points(LOG)


def pauses(gcs) -> list:
    return sorted(p.fields["pause_ns"] for p in gcs)


def window_sums(gcs, window_ns: int = WINDOW_NS) -> dict[tuple, list]:
    """(app, host, session, window start) -> the pauses of the collections
    starting in that window."""
    sums: dict[tuple, list] = {}
    for p in gcs:
        t = p.tags
        key = (t.get("app", ""), t.get("host", ""), t.get("session", ""), p.time - p.time % window_ns)
        sums.setdefault(key, []).append(p.fields["pause_ns"])
    return sums


def feed_in(rules: GcPauseRules, points: list, sizes) -> list:
    out = []
    i = 0
    while i < len(points):
        n = next(sizes)
        out += rules.feed(points[i:i + n])
        i += n
    return out + rules.end()


def test_a_pause_strictly_over_the_threshold_makes_one_alert(points):
    gcs = gc_points(points)
    threshold = pauses(gcs)[len(gcs) * 3 // 4]  # a pause of the log itself: equal is not over
    expected = [p for p in gcs if p.fields["pause_ns"] > threshold]
    assert expected and len(expected) < len(gcs)
    assert any(p.fields["pause_ns"] == threshold for p in gcs)

    rules = GcPauseRules(pause_threshold_ns=threshold)
    alerts = rules.feed(points)
    assert rules.end() == []  # no share rule: nothing waits for the end
    assert rules.gc_points == len(gcs) and rules.share_late == 0
    assert [(a.kind, a.time_ns) for a in alerts] == [(ALERT_GC_PAUSE, p.time) for p in expected]
    for a, p in zip(alerts, expected):
        tags = p.tags
        assert (a.app, a.host, a.session) == (tags["app"], tags["host"], tags["session"])
        payload = a.payload
        assert payload["alert"] == ALERT_GC_PAUSE
        assert (payload["app"], payload["host"], payload["session"]) == (a.app, a.host, a.session)
        assert payload["time_ns"] == p.time and payload["time"] == iso_time(p.time)
        assert payload["pause_ns"] == p.fields["pause_ns"]
        assert payload["pause_ms"] == p.fields["pause_ns"] / 1e6
        assert (payload["threshold_ns"], payload["threshold_ms"]) == (threshold, threshold / 1e6)
        assert payload["generation"] == int(tags["gen"]) and payload["kind"] == tags["kind"]
        for key, value in p.fields.items():
            assert payload[key] == value


def test_iso_time_is_the_point_time(points):
    for p in gc_points(points)[:20]:
        text = iso_time(p.time)
        assert text.endswith("Z") and len(text.split(".")[1]) == 10
        whole = datetime.fromisoformat(text[:19] + "+00:00")
        assert int(whole.timestamp()) * 10**9 + int(text[20:29]) == p.time


def test_share_alerts_are_the_windows_over_the_share(points):
    gcs = gc_points(points)
    sums = window_sums(gcs)
    shares = sorted(sum(v) / WINDOW_NS for v in sums.values())
    threshold = shares[len(shares) // 2]
    expected = {key[3]: v for key, v in sums.items() if sum(v) / WINDOW_NS > threshold}
    assert expected and len(expected) < len(sums)

    rules = GcPauseRules(pause_threshold_ns=max(pauses(gcs)), share_threshold=threshold,
                         window_ns=WINDOW_NS)
    alerts = rules.feed(points) + rules.end()
    assert rules.share_late == 0 and rules.open_windows == 0
    assert all(a.kind == ALERT_GC_PAUSE_SHARE for a in alerts)
    assert [a.time_ns for a in alerts] == sorted(expected)  # one per window, in time order
    tags = gcs[0].tags
    for a in alerts:
        window = expected[a.time_ns]
        assert (a.app, a.host, a.session) == (tags["app"], tags["host"], tags["session"])
        p = a.payload
        assert p["alert"] == ALERT_GC_PAUSE_SHARE and p["time"] == iso_time(a.time_ns)
        assert (p["pause_total_ns"], p["pause_max_ns"], p["collections"]) == \
            (sum(window), max(window), len(window))
        assert p["window_ns"] == WINDOW_NS
        assert p["share"] == sum(window) / WINDOW_NS > p["threshold"] == threshold


def test_a_window_is_judged_when_a_later_collection_or_a_whole_window_passes(points):
    """Fed one point at a time, each share alert comes out with the first
    point after its window's collections that is a collection of a later
    window or any point a whole window past its end; the last one at end()."""
    gcs = gc_points(points)
    every = min(sum(v) for v in window_sums(gcs).values()) / WINDOW_NS / 2  # each window alerts
    rules = GcPauseRules(pause_threshold_ns=max(pauses(gcs)), share_threshold=every,
                         window_ns=WINDOW_NS)
    came: dict[int, int] = {}  # window start -> index of the point that made its alert
    for i, p in enumerate(points):
        for a in rules.feed([p]):
            came[a.time_ns] = i
    ended = [a.time_ns for a in rules.end()]
    starts = sorted({p.time - p.time % WINDOW_NS for p in gcs})
    assert len(came) + len(ended) == len(starts) and len(ended) == 1

    for start in starts:
        first = next(i for i, p in enumerate(points)
                     if p.measurement == "gc" and p.time - p.time % WINDOW_NS == start)
        due = next((i for i in range(first + 1, len(points))
                    if (points[i].measurement == "gc" and points[i].time >= start + WINDOW_NS)
                    or (points[i].measurement != "gc" and points[i].time >= start + 2 * WINDOW_NS)),
                   None)
        if due is None:
            assert ended == [start]
        else:
            assert came[start] == due


@pytest.mark.parametrize("split", ["whole", "one", "seven", "random"])
def test_any_batching_gives_the_same_alerts(points, split):
    gcs = gc_points(points)
    shares = sorted(sum(v) / WINDOW_NS for v in window_sums(gcs).values())
    settings = dict(pause_threshold_ns=pauses(gcs)[len(gcs) // 2],
                    share_threshold=shares[len(shares) // 3], window_ns=WINDOW_NS)
    reference = GcPauseRules(**settings)
    want = reference.feed(points) + reference.end()
    assert {a.kind for a in want} == {ALERT_GC_PAUSE, ALERT_GC_PAUSE_SHARE}
    rng = random.Random(13)
    sizes = {"whole": lambda: len(points), "one": lambda: 1, "seven": lambda: 7,
             "random": lambda: rng.randint(1, 50)}[split]
    assert feed_in(GcPauseRules(**settings), points, iter(sizes, None)) == want


def test_a_collection_after_its_window_was_judged_is_late(points):
    gcs = gc_points(points)
    rules = GcPauseRules(pause_threshold_ns=max(pauses(gcs)), share_threshold=1e-9,
                         window_ns=WINDOW_NS)
    rules.feed(points)
    assert rules.end()  # every window judged
    early = gcs[0]
    assert early.time - early.time % WINDOW_NS < gcs[-1].time - gcs[-1].time % WINDOW_NS
    assert rules.feed([early]) == [] and rules.end() == []
    assert rules.share_late == 1 and rules.gc_points == len(gcs) + 1


def test_sessions_have_their_own_windows(points):
    """Two sessions of the same log, their points interleaved by time: each
    session's share alerts are those of its own windows."""
    a, b = derive_points(LOG, session="a"), derive_points(LOG, session="b")
    both = sorted(a + b, key=lambda p: p.time)  # stable: a's point first on a tie
    sums = window_sums(gc_points(both))
    threshold = sorted(sum(v) / WINDOW_NS for v in sums.values())[len(sums) // 2]
    expected = sorted((key[2], key[3]) for key, v in sums.items() if sum(v) / WINDOW_NS > threshold)
    assert {s for s, _ in expected} == {"a", "b"}
    rules = GcPauseRules(pause_threshold_ns=max(pauses(gc_points(both))),
                         share_threshold=threshold, window_ns=WINDOW_NS)
    alerts = rules.feed(both) + rules.end()
    assert sorted((x.session, x.time_ns) for x in alerts) == expected
    for x in alerts:
        window = sums[(x.app, x.host, x.session, x.time_ns)]
        assert (x.payload["collections"], x.payload["pause_total_ns"]) == (len(window), sum(window))


def test_past_max_sessions_the_least_recent_window_is_forgotten(points):
    """With room for one session, b's first collection forgets a's open window
    unjudged: a's alerts are those it made while fed, b's all of its own."""
    a, b = derive_points(LOG, session="a"), derive_points(LOG, session="b")
    every = min(sum(v) for v in window_sums(gc_points(a)).values()) / WINDOW_NS / 2
    settings = dict(pause_threshold_ns=max(pauses(gc_points(a))), share_threshold=every,
                    window_ns=WINDOW_NS)
    alone_a, alone_b = GcPauseRules(**settings), GcPauseRules(**settings)
    fed_a, fed_b = alone_a.feed(a), alone_b.feed(b)
    end_a, end_b = alone_a.end(), alone_b.end()
    assert end_a and end_b  # each session's last window alerts at the end

    rules = GcPauseRules(**settings, max_sessions=1)
    assert rules.feed(a) + rules.feed(b) == fed_a + fed_b
    assert rules.end() == end_b


def test_a_gc_point_without_a_numeric_pause_makes_no_alert(points):
    gcs = gc_points(points)
    odd = [dataclasses.replace(p, fields={**p.fields, "pause_ns": "long"}) for p in gcs[:3]]
    odd.append(dataclasses.replace(gcs[3], fields={k: v for k, v in gcs[3].fields.items()
                                                    if k != "pause_ns"}))
    rules = GcPauseRules(pause_threshold_ns=0, share_threshold=1e-9, window_ns=WINDOW_NS)
    assert rules.feed(odd) + rules.end() == []
    assert rules.gc_points == len(odd)


@pytest.mark.parametrize("bad", [dict(window_ns=0), dict(max_sessions=0), dict(share_threshold=0)])
def test_bad_settings_are_refused(bad):
    with pytest.raises(ValueError):
        GcPauseRules(pause_threshold_ns=1, **bad)


FORBIDDEN = ("asyncio", "aiomqtt", "paho", "socket", "time", "ingest.sinks", "ingest.api",
             "ingest.service", "ingest.sources")


@pytest.mark.parametrize("module", sorted((REPO / "ingest" / "alerts").glob("*.py")), ids=lambda p: p.name)
def test_the_rules_package_does_no_io(module: Path):
    """ingest/alerts stays a pure transform: it imports no event loop, no
    network, no clock and nothing of the sinks, sources or API."""
    tree = ast.parse(module.read_text())
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    bad = [n for n in names if any(n == f or n.startswith(f + ".") for f in FORBIDDEN)]
    assert not bad, f"{module.name} imports {bad}"
    calls = [ast.unparse(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)]
    assert not [c for c in calls if c.endswith((".now", ".utcnow", ".today", "monotonic"))]
