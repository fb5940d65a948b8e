"""A real GHC program whose eventlog has quiet streams, read live from a named
pipe: its points must not wait for them (docs/live.md).

``Quiet.hs`` runs everything on capability 0 of four and writes that
capability's buffer to the pipe every tick; the global buffer reaches the pipe
once, at the first tick, and capabilities 1-3 only at exit.  A ``Session``
(live, the default settings) reads the pipe as the program runs.  Each "tick K"
marker's point must come out while the newest event read is at most the idle
time, plus a tick for the block it sits in to be followed by the next one,
plus the merge's slack, past the marker (eventlog time: the merge's decisions,
not the machine's speed).  The same bytes merged with the idle rule off wait
for the quiet streams until the end.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from ingest.derive.config import DeriveConfig
from ingest.derive.order import OrderSettings
from ingest.session import Session, settings_from
from protocol import Decoder, EventType
from tests.live.programs import build, stream_program

HERE = Path(__file__).parent
SOURCES = (HERE / "Quiet.hs", HERE / "quiet_flush.c")
BLOCK = int(EventType.BLOCK_MARKER)
MS = 1_000_000
SECONDS, TICK_MS = 3, 100
TICK = re.compile(r"tick (\d+)")


@pytest.fixture(scope="session")
def quiet_binary() -> Path:
    return build("Quiet", "Quiet.hs", "quiet_flush.c")


def run_live(binary: Path, fifo: Path, session: Session) -> tuple[list[bytes], list]:
    """Run Quiet writing into ``fifo``; feed what the pipe gives to ``session``
    as it comes.  The chunks read, and the points of each (the last: close)."""
    chunks: list[bytes] = []
    points: list = []

    def take(chunk: bytes) -> None:
        chunks.append(chunk)
        points.append(session.feed(chunk))

    ran = stream_program([str(binary), str(SECONDS), str(TICK_MS), "+RTS", "-N4", "-l",
                          f"-ol{fifo}", "-RTS"], fifo, take, SECONDS + 120)
    points.append(session.close())
    assert ran.returncode == 0, ran.stderr
    return chunks, points


def release_lag(chunks: list[bytes], points: list) -> tuple[dict[int, int],
                                                          dict[int, int | None]]:
    """Per tick: its marker's eventlog time, and how far past it the newest
    event read was when its point came out (None: only at the end)."""
    dec = Decoder()
    newest = -1
    at: dict[int, int] = {}
    lag: dict[int, int] = {}
    for i, chunk in enumerate(chunks):
        for ev in dec.feed(chunk):
            if ev.type != BLOCK:
                newest = max(newest, ev.time)
                m = TICK.fullmatch(str(ev.fields[0])) if ev.name == "UserMarker" else None
                if m:
                    at[int(m[1])] = ev.time
        for p in points[i]:
            m = TICK.fullmatch(str(p.fields.get("text", ""))) if p.measurement == "markers" else None
            if m:
                lag.setdefault(int(m[1]), newest)  # (first written: a correction rewrites)
    return at, {k: lag[k] - t if k in lag else None for k, t in at.items()}


def session_with(order: OrderSettings | None = None) -> Session:
    # (one fallback clock for every session: their points compare equal)
    settings = settings_from(DeriveConfig(host="test"), live=True, fallback_host="test",
                             start_wall_ns=1_700_000_000 * 10**9)
    if order is not None:
        settings = dataclasses.replace(settings, order=order)
    return Session(settings)


def lines(points: list) -> list[str]:
    return [p.to_line() for batch in points for p in batch]


def replay(chunks: list[bytes], session: Session) -> list:
    return [*(session.feed(c) for c in chunks), session.close()]


def test_quiet_streams_do_not_hold_points_back(quiet_binary, tmp_path):
    session = session_with()
    order = session.settings.order
    assert order.live and order.idle_ns == 250 * MS          # the defaults under test
    chunks, points = run_live(quiet_binary, tmp_path / "quiet.fifo", session)
    at, lag_live = release_lag(chunks, points)
    ticks = len(at)
    assert ticks >= SECONDS * 1000 // TICK_MS // 2, "too few ticks: the program did not run"
    # every marker but the last (its block is followed only by the exit's) came out live
    assert {k for k, v in lag_live.items() if v is None} <= {ticks - 1}

    # how far behind the newest event each marker came out, read finely: the same
    # bytes in small pieces give the same points (decisions depend only on the
    # events; with corrections off, as what a correction rewrites depends on what
    # was written before it), and the newest event read by then is known to a few events
    data = b"".join(chunks)
    fine = [data[i:i + 256] for i in range(0, len(data), 256)]
    fixed = dataclasses.replace(order, correct_ns=None)
    assert lines(replay(fine, session_with(fixed))) == lines(replay(chunks, session_with(fixed)))
    fine_points = replay(fine, session_with())
    _, lag = release_lag(fine, fine_points)
    in_time = {k: v for k, v in lag.items() if v is not None}
    # the idle time (the quiet streams), a tick (a block is complete when the next
    # one comes: the longest spacing of two ticks in this run, in eventlog time, so
    # that a slow machine stretches both alike), the slack
    times = [at[k] for k in sorted(at)]
    tick = max(b - a for a, b in zip(times, times[1:]))
    bound = order.idle_ns + tick + order.slack_ns
    assert max(in_time.values()) <= bound, sorted(in_time.items(), key=lambda kv: -kv[1])[:5]
    # the quiet capabilities' events came at exit, behind the frontier: late, not lost
    assert session.stats.late_events > 0

    # the same bytes with the idle rule off: the quiet streams hold every point
    # back to the lag bound (longer than the run), so most come out only at the end
    off = session_with(dataclasses.replace(order, idle_ns=None, settle_ns=order.max_lag_ns))
    _, lag_off = release_lag(chunks, replay(chunks, off))
    assert all(v is None or v > bound for v in lag_off.values())
    assert sum(v is None for v in lag_off.values()) > ticks // 2


def content(batches: list) -> dict:
    """What a store keeps: per point key the last write of each field."""
    out: dict = {}
    for p in (p for batch in batches for p in batch):
        key = (p.measurement, tuple(sorted(p.tags.items())), p.time)
        out[key] = {**out.get(key, {}), **p.fields}
    return out


def test_late_quiet_capabilities_correct_what_was_written(quiet_binary, tmp_path):
    """The quiet capabilities' events reach the pipe at exit, seconds late:
    the windows they fall in were written without them, and are written again.
    What the live session leaves holds every point an import of the same
    bytes makes, and nothing more than the points it counted as moved."""
    session = session_with()
    chunks, points = run_live(quiet_binary, tmp_path / "quiet.fifo", session)
    s = session.stats
    assert s.late_events > 0 and s.corrected_events == s.late_events
    settings = settings_from(DeriveConfig(host="test"), live=False, fallback_host="test",
                             start_wall_ns=1_700_000_000 * 10**9)
    want = content(replay(chunks, Session(settings)))
    got = content(points)
    wrong = [k for k in want if got.get(k) != want[k]]
    assert not wrong, [(k, want[k], got.get(k)) for k in wrong[:3]]
    assert len(got) - len(want) <= s.stale_points
    # and without corrections the late events' windows keep what was written first
    off = session_with(dataclasses.replace(session.settings.order, correct_ns=None))
    uncorrected = content(replay(chunks, off))
    assert any(uncorrected.get(k) != want[k] for k in want if k[0] == "capability")
