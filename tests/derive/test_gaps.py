"""Issue 12 item 1: a time gap costs a bounded number of points, however long,
and an absurd jump is a logged stream fault.  The log is the issue's own: the
271 KB threads-mvar.nonthreaded.l with the second half of its events shifted
later (block markers' end times too)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from ingest.derive.base import DAY, GAP_WINDOWS, SECOND, DeriveSettings

try:
    from .mutate import Log, derive
except ImportError:
    from mutate import Log, derive

DATA = Path(__file__).resolve().parents[1] / "data"
LOG = Log((DATA / "threads-mvar.nonthreaded.l.eventlog").read_bytes())
SPLIT = LOG.median_time()
NO_LIMIT = DeriveSettings(max_gap_ns=1 << 70)


def series(lines) -> set[str]:
    """measurement,tags of each line (the series it writes)."""
    return {line.split(" ", 1)[0] for line in lines}


_ORIGINAL: dict = {}


def original(live: bool, events: bool = False):
    if live not in _ORIGINAL:
        lines, pipe, error = derive(LOG.data, settings=NO_LIMIT, live=live)
        assert error is None and pipe.stream_fault is None
        _ORIGINAL[live] = lines, pipe.stats.events
    return _ORIGINAL[live][events]


def unix(line: str) -> int:
    return int(line.rsplit(" ", 1)[1])


@pytest.mark.parametrize("live", [False, True])
def test_a_gap_costs_a_bounded_number_of_points_whatever_its_length(live):
    """Windows are 1 s and the shifts are whole seconds, so the windows after
    the gap are those of the original moved: the gap adds at most
    GAP_WINDOWS + 2 windows (the one split in two, the empty ones carried one
    by one, the rest as one), each with at most one point per series."""
    whole = original(live)
    counts = []
    for shift in (10**5 * SECOND, 10**7 * SECOND, 10**9 * SECOND):
        lines, pipe, error = derive(LOG.shift(SPLIT, shift), settings=NO_LIMIT, live=live)
        assert error is None and pipe.stream_fault is None and not pipe.deriver_faults
        assert len(lines) <= len(whole) + (GAP_WINDOWS + 2) * len(series(whole))
        counts.append(len(lines))
    # the cost does not grow with the gap: 10^5 s to 10^9 s give as many points
    # (10^10 s ends past MAX_TIME, 146 years: a fault, below)
    assert counts[0] == counts[1] == counts[2]


@pytest.mark.parametrize("live", [False, True])
@pytest.mark.parametrize("shift", [10**5 * SECOND, 10**10 * SECOND])
def test_an_absurd_jump_is_a_logged_stream_fault(caplog, live, shift):
    """Over derive.max_gap (a day by default): the stream's points end before
    the jump, the rest is dropped and counted, and a warning says where."""
    assert shift > DAY
    with caplog.at_level(logging.WARNING, logger="liveprof.derive"):
        lines, pipe, error = derive(LOG.shift(SPLIT, shift), live=live)
    assert error is None and not pipe.deriver_faults
    fault = pipe.stream_fault
    assert fault is not None and fault.startswith("time jump: ")
    assert "over derive.max_gap" in fault or "beyond any real eventlog" in fault
    assert 0 < pipe.stats.dropped_events
    assert pipe.stats.events + pipe.stats.dropped_events == original(live, events=True)
    assert [r for r in caplog.records if r.name == "liveprof.derive"
            and r.levelno == logging.WARNING and "time jump" in r.getMessage()]
    # nothing after the jump; everything well before it as the whole log has it
    split = pipe.clock.offset + SPLIT
    assert lines and max(map(unix, lines)) <= split
    got = set(lines)
    assert all(line in got for line in original(live) if unix(line) < split - 2 * SECOND)


def test_a_stream_starting_past_any_real_time_is_a_fault():
    data = LOG.shift(0, 10**10 * SECOND)
    lines, pipe, error = derive(data)
    assert pipe.stream_fault is not None and "beyond any real eventlog" in pipe.stream_fault
    assert pipe.stats.events == 0 and pipe.stats.dropped_events > 0
    assert all(unix(line) < 1 << 63 for line in lines)


def test_capabilities_past_the_bound_make_no_series():
    """A stream naming 5,000 capabilities (CapCreate, then a run on each, in
    every one of 3 windows): capability points for at most MAX_CAPS of them."""
    from ingest.derive.capability import MAX_CAPS
    from ingest.derive.pipeline import Identity, Pipeline
    from protocol import Event

    n = 5000
    evs = [Event(45, "CapCreate", 1, None, (c,)) for c in range(n)]
    for w in range(3):
        for c in range(n):
            t = w * SECOND + 10 + c
            evs += [Event(1, "RunThread", t, c, (1,)), Event(2, "StopThread", t + 1, c, (1, 3, 0))]
    pipe = Pipeline(identity=Identity(host="h", session="s"), derivers=["capability"])
    points = pipe.feed(evs) + pipe.close()
    caps = {p.tags["cap"] for p in points}
    assert len(caps) == MAX_CAPS
    assert len(points) <= MAX_CAPS * 3
    assert pipe.derivers[0].refused_caps > 0
