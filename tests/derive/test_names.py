"""Stable label names (issue 14 item 3, issue 12 item 6): once named a label
keeps its name, at most ``max_labels`` names per session and measurement, a
named label's series sums to its total from the window it was named in, and
the naming does not depend on how the stream was cut into batches."""

from __future__ import annotations

import collections
import random
from pathlib import Path

import pytest

from ingest.derive.base import SECOND, DeriveSettings
from ingest.derive.pipeline import Identity, Pipeline
from ingest.derive.spans import SpansDeriver
from protocol import Event

try:
    from .mutate import derive
except ImportError:
    from mutate import derive

MS = 1_000_000
USER_MESSAGE, THREAD_LABEL, RUN, STOP, CREATE = 19, 44, 1, 2, 0


def msg(t: int, text: str) -> Event:
    return Event(USER_MESSAGE, "UserMessage", t, 0, (text,))


def rotating_spans(windows: int = 40, labels: int = 30, seed: int = 3) -> list[Event]:
    """Spans whose busiest labels change from window to window (1 s windows):
    in window w, a random few labels run long spans, the rest short ones."""
    rng = random.Random(seed)
    evs = []
    for w in range(windows):
        base = w * SECOND
        busy = set(rng.sample(range(labels), 4))
        t = base + MS
        for k in rng.sample(range(labels), 12):
            length = 200 * MS if k in busy else rng.randint(1, 20) * MS // 10
            evs.append(msg(t, f"START L{k:02}"))
            evs.append(msg(t + length, f"STOP L{k:02}"))
            t += length + MS
    # one span across many windows, stopped late
    evs.append(msg(5 * SECOND + 1, "START long"))
    evs.append(msg(33 * SECOND + 7, "STOP long"))
    return sorted(evs, key=lambda e: e.time)


def by_label(points) -> dict[str, list]:
    out = collections.defaultdict(list)
    for p in points:
        if p.measurement == "spans":
            out[p.tags["label"]].append(p)
    return out


def recompute(evs, label: str, since: int) -> tuple[int, int, int]:
    """time_ns, starts, stops of ``label``'s spans from ``since`` on, straight
    from the messages (STOP closes the label's most recent open START)."""
    stack, time_ns, starts, stops = [], 0, 0, 0
    for ev in evs:
        text = ev.fields[0]
        if text == f"START {label}":
            stack.append(ev.time)
            starts += ev.time >= since
        elif text == f"STOP {label}":
            stops += ev.time >= since
            if stack:
                begin = stack.pop()
                time_ns += max(0, ev.time - max(begin, since))
    return time_ns, starts, stops


def run_spans(evs, top: int, max_labels: int):
    d = SpansDeriver(DeriveSettings(top_n=top, max_labels=max_labels))
    out = list(d.feed_many(evs))
    out += d.flush(evs[-1].time)
    return out, d


def test_names_stay_put_under_a_changing_top_set():
    evs = rotating_spans()
    points, d = run_spans(evs, top=3, max_labels=12)
    labels = by_label(points)
    named = set(labels) - {"other"}
    assert len(named) == 12 and d.folded > 0  # the bound was reached: labels were folded
    windows = sorted({p.time for p in points})
    for label in named:
        first = min(p.time for p in labels[label])
        mine = {p.time: p for p in labels[label]}
        for w in windows:
            if w < first:
                continue
            busy = tuple(a - b for a, b in zip(recompute(evs, label, w),
                                               recompute(evs, label, w + SECOND)))
            # once named, every window it was busy in has its own point, with its figures
            if any(busy):
                assert w in mine, (label, w)
                assert tuple(mine[w].fields[f] for f in ("time_ns", "starts", "stops")) == busy
            else:
                assert w not in mine


def test_a_named_label_sums_to_its_total_from_its_naming_on():
    evs = rotating_spans()
    points, _ = run_spans(evs, top=3, max_labels=12)
    labels = by_label(points)
    assert len(labels) > 3
    for label, pts in labels.items():
        if label == "other":
            continue
        since = min(p.time for p in pts)
        got = tuple(sum(p.fields[f] for p in pts) for f in ("time_ns", "starts", "stops"))
        assert got == recompute(evs, label, since), label
    # and nothing is lost: other holds the rest
    total = tuple(sum(p.fields[f] for p in points) for f in ("time_ns", "starts", "stops"))
    every = {ev.fields[0].split(" ", 1)[1] for ev in evs}
    assert total == tuple(map(sum, zip(*(recompute(evs, label, 0) for label in every))))


def test_the_same_names_however_the_stream_is_cut():
    evs = rotating_spans()
    one, _ = run_spans(evs, top=3, max_labels=12)
    rng = random.Random(5)
    for _ in range(5):
        d = SpansDeriver(DeriveSettings(top_n=3, max_labels=12))
        got, i = [], 0
        while i < len(evs):
            n = rng.choice((1, 3, 50, 400))
            got += d.feed_many(evs[i:i + n])
            i += n
        got += d.flush(evs[-1].time)
        assert [(p.tags, p.fields, p.time) for p in got] == [(p.tags, p.fields, p.time) for p in one]


def flood(n: int) -> list[Event]:
    """``n`` distinct thread labels and span labels, a new one every 10 ms
    (100 windows of 1 s for n = 10,000), each running a little."""
    evs = []
    for i in range(n):
        t = i * 10 * MS
        thread = i + 1
        evs += [Event(CREATE, "CreateThread", t, 0, (thread,)),
                Event(THREAD_LABEL, "ThreadLabel", t, 0, (thread, f"worker-{i}")),
                Event(RUN, "RunThread", t + 1, 0, (thread,)),
                msg(t + 2, f"START job-{i}"),
                msg(t + 3 + i % 7, f"STOP job-{i}"),
                Event(STOP, "StopThread", t + 5 * MS, 0, (thread, 5, 0))]
    return evs


@pytest.mark.parametrize("max_labels", [100, 7])
def test_a_flood_of_labels_makes_at_most_the_bound_of_series(max_labels):
    n = 20_000
    pipe = Pipeline(DeriveSettings(max_labels=max_labels), Identity(host="h", session="s"),
                    derivers=["threads", "spans"])
    evs = flood(n)
    points = []
    for i in range(0, len(evs), 5000):
        points += pipe.feed(evs[i:i + 5000])
    points += pipe.close()
    labels = collections.defaultdict(set)
    for p in points:
        if "label" in p.tags:
            labels[p.measurement].add(p.tags["label"])
    assert set(labels) == {"threads", "spans"}
    for measurement, seen in labels.items():
        assert len(seen - {"other"}) <= max_labels, measurement
        assert "other" in seen
    folded = pipe.stats.labels_folded
    # every label of a window that was not named went to other: n labels, at most
    # max_labels of them ever named
    assert folded["spans"] >= n - max_labels and folded["threads"] >= n - max_labels
    assert sum(p.fields["starts"] for p in points if p.measurement == "spans") == n


def test_real_log_names_are_stable_and_bounded():
    """threads-mvar (100+ thread and span labels): with a bound of 20 names,
    a name never turns back into other, and totals are kept."""
    data = (Path(__file__).resolve().parents[1] / "data" / "threads-mvar.nonthreaded.l.eventlog")
    window = 10 * MS  # (the program runs about a second)
    lines, pipe, _ = derive(data.read_bytes(),
                            settings=DeriveSettings(window_ns=window, top_n=3, max_labels=20))
    full, _, _ = derive(data.read_bytes(),
                        settings=DeriveSettings(window_ns=window, top_n=10**4, max_labels=10**4))

    def series(ls, measurement):
        out = collections.defaultdict(list)
        for line in ls:
            if line.startswith(measurement + ","):
                head, fields, t = line.rsplit(" ", 2)
                label = dict(kv.split("=", 1) for kv in head.split(",")[1:]).get("label")
                if label is not None:
                    out[label].append((int(t), fields))
        return out

    for measurement in ("threads", "spans"):
        cut, every = series(lines, measurement), series(full, measurement)
        assert 3 < len(set(cut) - {"other"}) <= 20 and "other" in cut
        for label, rows in cut.items():
            if label == "other":
                continue
            since = min(t for t, _ in rows)
            # from its naming on, its points are the ones it has with every label named
            assert sorted(rows) == sorted(r for r in every[label] if r[0] >= since), label
        assert pipe.stats.labels_folded[measurement] > 0
