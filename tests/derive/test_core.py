"""The compiled deriver loops (ingest/derive/_core.c) against the pure Python
derivers, the reference: the same points on every corpus log, whole and in
random chunks, live and whole-file, at the default and at small windows; the
same from every deriver fed runs of events with late ones among them; the
same on mutated logs (odd layouts, ``None`` fields, huge times and integers);
and every deriver survives ``copy.deepcopy`` mid-stream, the copy going on
exactly as the original would (the live pipeline snapshots derivers so)."""

from __future__ import annotations

import copy
import os
import random
import subprocess
import sys
from typing import Any

import pytest

from ingest.derive import _native
from ingest.derive.base import DeriveSettings
from ingest.derive.order import OrderSettings
from ingest.derive.pipeline import Identity, Pipeline
from ingest.derive.point import Point, lines
from ingest.derive.registry import REGISTRY
from protocol import Decoder
from protocol.eventlog import StopStatus
from tests.corpus import log_id, logs, pick, read
from tests.derive.helpers import events, file_order_events
from tests.derive.mutate import DEFAULT_LOGS, Log, mutate
from tests.derive.mutate import derive as derive_mutated

LOGS = logs()
SMALL_WINDOWS = DeriveSettings(window_ns=3_000_000, top_n=3, max_labels=5)
try:  # the compiled loops whatever LIVEPROF_PURE_PYTHON says (it selects, it does not hide)
    from ingest.derive import _core as COMPILED
except ImportError:
    COMPILED = None  # type: ignore[assignment]  # not built: test_core_is_built fails


@pytest.fixture
def pure(monkeypatch):
    """Run the block with the reference derivers."""

    def use(flag: bool) -> None:
        monkeypatch.setattr(_native, "core", None if flag else COMPILED)

    return use


def test_core_is_built():
    assert COMPILED is not None, "ingest/derive/_core was not compiled (gcc, Python headers?)"
    assert (_native.core is None) == bool(os.environ.get("LIVEPROF_PURE_PYTHON"))


def test_pure_python_switch_turns_it_off():
    code = "from ingest.derive import _native; print(_native.core is None)"
    env = dict(os.environ, LIVEPROF_PURE_PYTHON="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "True"


def chunks(data: bytes, seed) -> list[bytes]:
    if seed == "whole":
        return [data]
    rng = random.Random(seed)
    out, i = [], 0
    while i < len(data):
        n = rng.choice((1, 7, 300, 4096, 65536, 300_000))
        out.append(data[i:i + n])
        i += n
    return out


def pipeline_points(log, how="whole", settings: DeriveSettings | None = None, live: bool = False):
    pipe = Pipeline(settings or DeriveSettings(), Identity(host="test", session="s"),
                    order=OrderSettings(live=live, max_lag_ns=20_000_000))
    dec = Decoder(only=pipe.wants)
    points = []
    for chunk in chunks(read(log), how):
        points.extend(pipe.feed(dec.feed(chunk)))
    dec.close()
    points.extend(pipe.close())
    return points, pipe


def pipeline_lines(log, how, settings: DeriveSettings, live: bool) -> list[str]:
    """Every point of ``log`` as line protocol, in the order the pipeline gave
    them (the same chunking gives the same interleaving of measurements)."""
    points, pipe = pipeline_points(log, how, settings, live)
    stats = pipe.stats
    return [p.to_line() for p in points] + [f"stats {stats.late_events} {stats.labels_folded} "
                                            f"{stats.deriver_faults} {stats.stream_fault}"]


@pytest.mark.parametrize("log", LOGS, ids=log_id)
@pytest.mark.parametrize("how", ["whole", 5])
@pytest.mark.parametrize("live", [False, True], ids=["file", "live"])
@pytest.mark.parametrize("settings", [DeriveSettings(), SMALL_WINDOWS], ids=["1s", "3ms"])
def test_compiled_pipeline_is_the_reference(log, how, live, settings, pure):
    compiled = pipeline_lines(log, how, settings, live)
    pure(True)
    assert compiled == pipeline_lines(log, how, settings, live)


DERIVER_LOGS = [pick("threads-mvar.N2.l", "threads-mvar-small.N2.l"),
                pick("sparks.N2.la", "sparks-small.N2.l"),
                pick("gc-heap.N2.nonmoving", "nonmoving-gc-census"),
                pick("threads-mvar.nonthreaded.l", "threads-mvar-small.N2.l")]


def feed_runs(deriver, evs, seed: int, late_every: int = 0) -> list[str]:
    """Feed in runs of random length; with ``late_every``, every so often an
    event (from file order: often older than the newest) goes alone as late."""
    rng = random.Random(seed)
    out, i = [], 0
    while i < len(evs):
        n = rng.choice((1, 2, 17, 500, 5000))
        out += deriver.feed_many(list(evs[i:i + n]))
        i += n
        if late_every and rng.randrange(late_every) == 0:
            out += deriver.feed_many((evs[rng.randrange(min(i, len(evs)))],), True)
    out += deriver.flush(evs[-1].time if evs else 0)
    return [p.to_line() for p in out]


@pytest.mark.parametrize("log", DERIVER_LOGS, ids=log_id)
@pytest.mark.parametrize("measurement", list(REGISTRY))
@pytest.mark.parametrize("order", ["time", "file"])
def test_compiled_deriver_is_the_reference(log, measurement, order, pure):
    """Each deriver alone, in time order (late ones among them) and in file
    order (not time order: many events older than the window)."""
    cls: Any = REGISTRY[measurement]
    evs = (events if order == "time" else file_order_events)(log, cls.wants)
    got = feed_runs(cls(SMALL_WINDOWS), evs, 1, late_every=5)
    pure(True)
    assert got == feed_runs(cls(SMALL_WINDOWS), evs, 1, late_every=5)


@pytest.mark.parametrize("seed", range(40))
def test_compiled_is_the_reference_on_mutated_logs(seed, pure):
    rng = random.Random(seed)
    name = DEFAULT_LOGS[seed % len(DEFAULT_LOGS)]
    data, _ = mutate(Log(read(pick(name, "threads-mvar-small.N2.l"))), rng)
    live = seed % 2 == 1
    got, pipe, err = derive_mutated(data, live=live, settings=SMALL_WINDOWS)
    pure(True)
    want, pipe2, err2 = derive_mutated(data, live=live, settings=SMALL_WINDOWS)
    assert (got, pipe.stats, err) == (want, pipe2.stats, err2)


SNAPSHOT_LOGS = DERIVER_LOGS[:3] + [pick("heapprof.prof.N2.hc-p", "heapprof-small.prof.N2.hc-p")]


@pytest.mark.parametrize("log", SNAPSHOT_LOGS, ids=log_id)
@pytest.mark.parametrize("measurement", list(REGISTRY))
@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "pure"])
def test_deepcopy_goes_on_as_the_original(log, measurement, compiled, pure):
    """A copy taken mid-stream (and the original after it) gives the points
    the uncopied run gives; the copy shares no state with the original."""
    pure(not compiled)
    cls: Any = REGISTRY[measurement]
    evs = list(events(log, cls.wants))
    straight = feed_runs(cls(SMALL_WINDOWS), evs, 2)
    for cut in (len(evs) // 3, 2 * len(evs) // 3):
        d = cls(SMALL_WINDOWS)
        head = [p.to_line() for p in d.feed_many(evs[:cut])]
        snap = copy.deepcopy(d)
        rest, end = evs[cut:], evs[-1].time if evs else 0
        # the original runs on first: the snapshot must not see any of it
        orig = head + [p.to_line() for p in d.feed_many(rest) + d.flush(end)]
        again = head + [p.to_line() for p in snap.feed_many(rest) + snap.flush(end)]
        assert again == orig
        assert orig == straight


ODD_FIELDS: dict[str, Any] = {  # every kind of value to_line writes (None: left out)
    "s": 'a"b\\c\nd"', "u": "\udcff", "t": True, "f": False, "none": None, "big": 1 << 70,
    "small": -(1 << 70), "x": 1.5e300, "nan": float("nan"), "k\\": 0, "é": "é"}
ODD: list[Any] = [Point("#m e,a", {"k\\": "v\\", "e": "", "x y": "a=b,c", "n": "l\nm"}, ODD_FIELDS, 5),
       Point("m", {}, {}, -3), Point("m", {"a": "1"}, {"v": 2}, 1 << 70), "a line as it is",
       Point("m", {"a": "\udcff"}, {"v": StopStatus.BlockedOnMVar, "w": 1}, 0)]


@pytest.mark.parametrize("log", [pick("gc-heap.N2.l", "threads-mvar-small.N2.l"),
                                 pick("heapprof.prof.N2.hc-p", "heapprof-small.prof.N2.hc-p")], ids=log_id)
def test_compiled_lines_are_to_line(log):
    points: list = pipeline_points(log)[0]
    assert lines(points + ODD) == [p if isinstance(p, str) else p.to_line() for p in points + ODD]


def test_pure_lines_are_to_line(pure):
    pure(True)
    assert lines(ODD) == [p if isinstance(p, str) else p.to_line() for p in ODD]


def test_route_is_the_pipeline_loop():
    """``_core.route`` (for pipeline.py's routing loop) calls, per item, each
    entry of table[item[0]] in order (-1, a late item's, is the last entry)."""
    assert COMPILED is not None
    evs = list(events(DERIVER_LOGS[0], frozenset(range(200))))
    late = (-1, None, 0, evs[0])
    items = evs[:300] + [late] + evs[300:600]

    def table(log: list) -> list:
        t: list = [()] * 201
        for ty in range(0, 200, 3):
            t[ty] = (log.append,)
        for ty in range(1, 200, 3):
            t[ty] = (log.append, lambda ev: log.append(("again", ev)))
        t[-1] = (lambda item: log.append(("late", item)),)
        return t

    want: list = []
    route = table(want)
    for ev in items[5:550]:
        for f in route[ev[0]]:
            f(ev)
    got: list = []
    COMPILED.route(items, 5, 550, table(got))
    assert got == want and len(got) > 500


@pytest.mark.parametrize("log", [pick("threads-mvar.N2.l", "threads-mvar-small.N2.l")], ids=log_id)
def test_liveprof_derive_same_output_with_the_switch(log):
    """End to end: ``liveprof derive`` prints the same lines compiled and
    with LIVEPROF_PURE_PYTHON=1 (decoder and derivers both pure)."""
    cmd = [sys.executable, "-m", "ingest.cli", "derive", str(log), "--window", "0.01", "--session", "s",
           "--host", "h"]
    env = {k: v for k, v in os.environ.items() if k != "LIVEPROF_PURE_PYTHON"}
    compiled = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    pure_out = subprocess.run(cmd, env=dict(env, LIVEPROF_PURE_PYTHON="1"), capture_output=True, text=True,
                              check=True).stdout
    assert compiled.count("\n") > 100 and compiled == pure_out
