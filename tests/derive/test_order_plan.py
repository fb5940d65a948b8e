"""The whole-file merge under a release plan (ingest/derive/plan.py): a file is
still exactly a stable sort by time (in file order) however it is read and
chunked, while the merge holds only the blocks that overlap; the plan is made
only when the file is sure to follow the block rule; the points are the same
as holding everything to the end.

Besides the corpus, hand-made logs (the header of a real one, then blocks
written as the RTS writes them: each when full, so not in time order) with
several capabilities, times on a coarse grid (equal times across blocks), GC
ends older than their block's start (the RTS times them before posting), a
global block in the middle whose events are older than its start (as an Eden
``CreateMachine`` is) and one at the end that starts at the beginning."""

from __future__ import annotations

import dataclasses
import random
import struct
from pathlib import Path

import pytest

from ingest.derive.base import DeriveSettings
from ingest.derive.order import Merge, OrderSettings
from ingest.derive.pipeline import Identity, Pipeline
from ingest.derive.plan import read_plan
from ingest.session import Session, SessionSettings, scan
from protocol import Decoder
from tests.corpus import DATA, log_id, logs
from tests.corpus import read as data
from tests.derive.helpers import chunks_of

LOGS = logs()
BASE = DATA / "threads-mvar-small.N2.l.eventlog"  # whose header the hand-made logs use
_MARK = struct.Struct(">HQIQH")
_RUN = struct.Struct(">HQI")  # RunThread: thread id
_MSG = struct.Struct(">HQH")  # UserMessage: length, then the text
_GC = struct.Struct(">HQ")  # StartGC, EndGC: no payload


def _blocks_of(path: Path) -> tuple[list, int | None]:
    dec = Decoder(only={18})
    markers = dec.feed(path.read_bytes())
    end = dec.close()
    return markers, end.offset if end.complete else None


def make_log(path: Path, seed: int, caps: int = 3, per_cap: int = 4000, block: int = 400,
             outside: bool = False) -> Path:
    """A hand-made eventlog (see the module doc); ``outside``: one event before
    the first block, which no plan can place."""
    rng = random.Random(seed)
    raw = BASE.read_bytes()
    header = raw[:raw.index(b"hdredatb") + 8]
    tid = 0
    written = []  # (end time, tie-break, bytes) of each block
    horizon = 0
    for cap in range(caps):
        t = rng.randrange(0, 50) * 10
        k = 0
        while k < per_cap:
            n = min(per_cap - k, rng.randrange(block // 4, block))
            start = t - rng.choice((0, 0, 10))  # begun at or before its first event
            body = b""
            if rng.random() < 0.3:  # the end of a GC, timed before the block began
                body += _GC.pack(10, max(0, start - rng.randrange(1, 30) * 10))
            for _ in range(n):
                t += rng.choice((0, 0, 10, 10, 20, 50))  # on a grid: equal times across caps
                tid += 1
                body += _RUN.pack(1, t, tid)
            written.append((t, rng.random(), _MARK.pack(18, start, 24 + len(body), t, cap) + body))
            k += n
            horizon = max(horizon, t)
    written.sort()  # each block is written when full: in order of its end

    def glob(start: int, times: list[int]) -> bytes:
        body = b""
        for i, t in enumerate(times):
            text = f"g{seed}.{i}".encode()
            body += _MSG.pack(19, t, len(text)) + text
        return _MARK.pack(18, start, 24 + len(body), max(times), 0xFFFF) + body

    middle = horizon // 2
    # in the middle: a global block with events older than its start (and equal times)
    old = sorted(rng.randrange(0, middle // 10) * 10 for _ in range(30))
    mid = glob(middle, old)
    # at the end: the global buffer written at exit, begun at the start
    last = glob(5, sorted(rng.randrange(0, horizon // 10) * 10 for _ in range(40)))
    blocks = [b for _, _, b in written]
    blocks.insert(len(blocks) // 2, mid)
    blocks.append(last)
    lead = _RUN.pack(1, 0, 0) if outside else b""
    path.write_bytes(header + lead + b"".join(blocks) + b"\xff\xff")
    return path


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("plan")
    return [make_log(root / f"made{seed}.eventlog", seed) for seed in range(4)]


def file_order(raw: bytes) -> list:
    dec = Decoder()
    events = dec.feed(raw)
    dec.close()
    return [e for e in events if e.type != 18]


def merged(chunks, settings=None, plan=None):
    merge = Merge(settings)
    if plan is not None:
        merge.follow(plan)
    dec = Decoder()
    out, peak = [], 0
    for chunk in chunks:
        out.extend(merge.push(dec.feed(chunk)))
        peak = max(peak, merge.held)
    out.extend(merge.flush())
    return [Merge.unwrap(x) for x in out], merge, peak


def read_as(plan, order: str) -> tuple:
    """The plan, and the file's bytes in the order it is read with it."""
    if order == "file":
        plan = plan.in_file_order()
    return plan, b"".join(plan.chunks())


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("order", ["start", "file"])
@pytest.mark.parametrize("how", ["whole", 7])
def test_made_log_is_stable_sort(made, seed, order, how):
    path = made[seed]
    plan = scan(str(path)).plan
    assert plan is not None
    # the middle global block holds events older than its start: known, not bounded by it
    mid = next(evs for k, evs in plan.known if plan.blocks[k].start > 5)
    assert min(e.time for e in mid) < max(b.start for b in plan.blocks if b.glob)
    # and GC events older than their block's start: read by the pre-scan
    assert any(b.low < b.start for b in plan.blocks)
    plan, raw = read_as(plan, order)
    out, merge, _ = merged(chunks_of(raw, how), plan=plan)
    events = file_order(path.read_bytes())
    assert len({e.time for e in events}) < len(events) // 2  # many equal times
    assert [e for e, _ in out] == sorted(events, key=lambda e: e.time)
    assert merge.late_events == merge.evicted == 0


@pytest.mark.parametrize("log", LOGS, ids=log_id)
@pytest.mark.parametrize("how", ["whole", 7])
def test_file_is_stable_sort_under_its_plan(log, how):
    """Every corpus log with a plan (the complete ones, blocks end to end),
    read in the plan's order: the stable sort of the file as it is."""
    plan = scan(str(log)).plan
    if plan is None:  # (no plan: read as it is, held to the end, as test_order checks)
        raw = data(log)
    else:
        plan, raw = read_as(plan, "start")
    out, merge, _ = merged(chunks_of(raw, how), plan=plan)
    assert [e for e, _ in out] == sorted(file_order(data(log)), key=lambda e: e.time)
    assert merge.late_events == 0


def test_plan_fits_where_holding_everything_does_not(made):
    """With a bound on held events a third of the file, the planned merge never
    reaches it (still exact), the merge without a plan has to release early."""
    path = made[0]
    events = file_order(path.read_bytes())
    settings = OrderSettings(max_held=len(events) // 3, check_every=64)
    plan, raw = read_as(scan(str(path)).plan, "start")
    out, merge, peak = merged(chunks_of(raw, 7), settings, plan)
    assert merge.evicted == 0 and peak <= settings.max_held
    assert [e for e, _ in out] == sorted(events, key=lambda e: e.time)
    out, merge, peak = merged(chunks_of(path.read_bytes(), 7), settings)
    assert merge.evicted > 0


@pytest.mark.parametrize("order", ["start", "file"])
def test_memory_bound_under_a_plan(made, order):
    """The bound is still the last resort: at most max_held + check_every held,
    nothing lost or doubled, in order but the late ones, whatever the chunking."""
    path = made[1]
    settings = OrderSettings(max_held=300, check_every=32)
    plan, raw = read_as(scan(str(path)).plan, order)
    out, merge, peak = merged(chunks_of(raw, 3), settings, plan)
    assert peak <= settings.max_held + settings.check_every
    assert merge.evicted > 0
    assert sorted(e for e, _ in out) == sorted(file_order(path.read_bytes()))
    in_order = [e.time for e, late in out if not late]
    assert in_order == sorted(in_order)
    assert sum(late for _, late in out) == merge.late_events
    assert merged(chunks_of(raw, "whole"), settings, plan)[0] == out


def test_no_plan_unless_sure(made, tmp_path):
    good = made[0]
    markers, end = _blocks_of(good)
    assert read_plan(str(good), markers, end) is not None
    # cut short: no end marker
    cut = tmp_path / "cut.eventlog"
    cut.write_bytes(good.read_bytes()[:-1000])
    assert scan(str(cut)).plan is None
    # an event outside any block
    outside = make_log(tmp_path / "outside.eventlog", 0, outside=True)
    assert scan(str(outside)).plan is None
    # global blocks larger than what is decoded ahead
    glob = sum(b.size for b in read_plan(str(good), markers, end).blocks if b.glob)
    assert read_plan(str(good), markers, end, known_bytes=glob - 1) is None
    # a block whose marker is not where the one before ends
    raw = bytearray(good.read_bytes())
    first = raw.index(b"hdredatb") + 8
    size = struct.unpack_from(">I", raw, first + 10)[0]
    struct.pack_into(">I", raw, first + 10, size + 1)
    moved = tmp_path / "moved.eventlog"
    moved.write_bytes(bytes(raw))
    markers, end = _blocks_of(moved)
    assert read_plan(str(moved), markers, end) is None


def test_blocks_once_marker_arrived_keep_their_order(made):
    plan = scan(str(made[0])).plan
    merge = Merge()
    merge.follow(plan.in_file_order())
    dec = Decoder()
    raw = b"".join(plan.in_file_order().chunks())
    merge.push(dec.feed(raw[:raw.index(b"hdredatb") + 40]))  # the first block began
    with pytest.raises(ValueError):
        merge.follow(plan)


# -- the points -----------------------------------------------------------------------

def _settings(found, max_held=500_000, window=1.0) -> SessionSettings:
    return SessionSettings(DeriveSettings(window_ns=int(window * 1e9)),
                           OrderSettings(max_held=max_held),
                           Identity(host="test", start_wall_ns=found.start_wall_ns))


def points(path: Path, how: str, window: float) -> tuple[list[str], Session]:
    """``read``: as the commands read a file (its plan's order); ``feed``: its
    bytes as they are; ``held``: no plan, nothing released before the end."""
    found = scan(str(path))
    if how == "held":
        session = Session(_settings(found, 10**9, window), found.preamble)
    else:
        session = Session(_settings(found, window=window), found.preamble, found.plan)
    if how == "feed":
        out = []
        for chunk in chunks_of(path.read_bytes(), 11):
            out.extend(session.feed(chunk))
    else:
        out = [p for batch in session.read(str(path)) for p in batch]
    out.extend(session.close())
    return [p.to_line() for p in out], session


@pytest.mark.parametrize("log", LOGS, ids=log_id)
@pytest.mark.parametrize("window", [1.0, 0.003])
def test_same_points_as_holding_everything(log, window):
    want, held = points(log, "held", window)
    got, session = points(log, "read", window)
    assert sorted(got) == sorted(want)
    assert dataclasses.astuple(session.stats) == dataclasses.astuple(held.stats)
    assert (session.events, session.decoded) == (held.events, held.decoded)


@pytest.mark.parametrize("how", ["read", "feed"])
def test_made_logs_same_points(made, how):
    for path in made:
        want, _ = points(path, "held", 0.003)
        got, session = points(path, how, 0.003)
        assert sorted(got) == sorted(want)
        assert session.stats.late_events == 0 and session.pipeline.plan is not None


def test_pipeline_ignores_a_plan_when_live(made):
    plan = scan(str(made[0])).plan
    pipe = Pipeline(order=OrderSettings(live=True), plan=plan)
    assert pipe.plan is None and pipe.merge.held == 0


def test_planned_file_gone_is_a_source_error(made, tmp_path):
    from ingest.errors import SourceError
    path = tmp_path / "gone.eventlog"
    path.write_bytes(made[0].read_bytes())
    found = scan(str(path))
    session = Session(_settings(found), found.preamble, found.plan)
    path.unlink()
    with pytest.raises(SourceError, match="cannot read"):
        list(session.read(str(path)))
