"""Late events correct what was written (derive/corrections.py, docs/live.md).

What a store keeps of a stream is its *content*: for each point key
(measurement, tags, time) the last write of each field (InfluxDB's rule).  A
live pipeline with a tiny lag bound and idle time makes tens of thousands of
events late on the real logs; with corrections its content must hold every
point of an import of the same bytes, field for field, and nothing more than
the points it counted as stale (written before a correction moved them to
another time or series).
"""

from __future__ import annotations

import pytest

from ingest.derive.order import OrderSettings
from ingest.derive.pipeline import Identity, Pipeline
from ingest.session import prescan
from protocol import Decoder
from tests.corpus import log_id, logs, pick
from tests.derive.helpers import MINE, chunks_of, read, run_pipeline

LOGS = logs()
MS = 1_000_000
# everything a capability does not show within 20 ms is late
EAGER = OrderSettings(live=True, max_lag_ns=20 * MS, idle_ns=20 * MS)


def content(points) -> dict:
    out: dict = {}
    for p in points:
        key = (p.measurement, tuple(sorted(p.tags.items())), p.time)
        out[key] = {**out.get(key, {}), **p.fields}
    return out


def live_and_import(log, order: OrderSettings, how=3):
    # the identity events known from the start, as a GHC >= 9.2 program writes
    # them first (a late one would change every point's tags or clock)
    pre = prescan(str(log))[1]
    whole, _ = run_pipeline(log, preamble=pre)
    live, pipe = run_pipeline(log, how, preamble=pre, order=order)
    return content(whole), live, pipe


def stored(log, order: OrderSettings, how=3) -> tuple[dict, Pipeline]:
    """What a store holds after a live run, its deletes done as the InfluxDB
    sink does them: after what came before, each delete taking the point of
    exactly its tags (``""``: a tag the point has not), then its ``then``."""
    pipe = Pipeline(identity=Identity(host="test"), derivers=MINE, order=order,
                    preamble=prescan(str(log))[1])
    dec = Decoder(only=pipe.wants)
    out: dict = {}

    def write(p):
        key = (p.measurement, tuple(sorted(p.tags.items())), p.time)
        out[key] = {**out.get(key, {}), **p.fields}

    def apply(points):
        for p in points:
            write(p)
        for r in pipe.take_retractions():
            out.pop((r.measurement, tuple(sorted((k, v) for k, v in r.tags.items() if v)),
                     r.time), None)
            if r.then is not None:
                write(r.then)

    for chunk in chunks_of(read(log), how):
        apply(pipe.feed(dec.feed(chunk)))
    dec.close()
    apply(pipe.close())
    return out, pipe


@pytest.mark.parametrize("log", LOGS, ids=log_id)
def test_live_store_equals_the_import_once_moved_points_are_deleted(log):
    want, _, _ = live_and_import(log, EAGER)
    got, pipe = stored(log, EAGER)
    assert pipe.stats.late_events == pipe.stats.corrected_events
    assert got == want, [(k, got.get(k), want.get(k)) for k in sorted(got.keys() | want.keys())
                         if got.get(k) != want.get(k)][:3]


@pytest.mark.parametrize("log", LOGS, ids=log_id)
def test_live_content_holds_the_import(log):
    want, live, pipe = live_and_import(log, EAGER)
    got = content(live)
    s = pipe.stats
    wrong = [k for k in want if got.get(k) != want[k]]
    assert not wrong, (wrong[:3], [(want[k], got.get(k)) for k in wrong[:3]])
    assert len(got) - len(want) <= s.stale_points
    assert s.corrected_events == s.late_events and s.uncorrected_events == 0
    if s.stale_points == 0:
        assert got == want


def test_windows_written_again_with_their_corrected_values():
    """Some capability windows went out wrong (late events missing) and were
    written again, last with the import's values; without corrections they
    stay wrong."""
    rewritten = 0
    for log in LOGS:
        want, live, _ = live_and_import(log, EAGER)
        first: dict = {}
        for p in live:
            if p.measurement == "capability":
                key = (p.measurement, tuple(sorted(p.tags.items())), p.time)
                first.setdefault(key, p.fields)
        rewritten += sum(1 for k, f in first.items() if f != want.get(k))
        if rewritten:
            off = OrderSettings(live=True, max_lag_ns=20 * MS, idle_ns=20 * MS, correct_ns=None)
            _, uncorrected, pipe = live_and_import(log, off)
            got = content(uncorrected)
            assert pipe.stats.late_events > 0
            assert any(got.get(k) != want[k] for k in want if k[0] == "capability")
            break
    assert rewritten, "no log had a window written before its late events came"


# a log with many late events under EAGER, in tests/data (so in every clone)
BUSY = [pick("gc-heap.N2.l", "gc-heap-small.N2.hT")]


@pytest.mark.parametrize("log", BUSY, ids=log_id)
def test_beyond_the_correction_window_counted(log, caplog):
    order = OrderSettings(live=True, max_lag_ns=20 * MS, idle_ns=20 * MS, correct_ns=1,
                         correct_events=50)
    _, _, pipe = live_and_import(log, order)
    s = pipe.stats
    assert s.uncorrected_events > 0
    assert s.corrected_events + s.uncorrected_events == s.late_events
    assert "beyond the correction window" in caplog.text


@pytest.mark.parametrize("log", BUSY, ids=log_id)
def test_kept_events_bounded(log):
    bound = 2000
    order = OrderSettings(live=True, max_lag_ns=20 * MS, idle_ns=20 * MS, correct_events=bound)
    pre = prescan(str(log))[1]
    pipe = Pipeline(identity=Identity(host="test"), derivers=MINE, order=order, preamble=pre)
    dec = Decoder(only=pipe.wants)
    data = read(log)
    most = 0
    for i in range(0, len(data), 4096):
        pipe.feed(dec.feed(data[i:i + 4096]))
        fix = pipe._fix
        assert fix is not None
        most = max(most, len(fix.events) - fix.marks[0].index)
    pipe.close()
    # a mark is taken once a quarter of the bound is kept past the newest; the
    # oldest is dropped once the bound is passed: at most the bound plus a batch
    assert 0 < most <= bound + 4096
