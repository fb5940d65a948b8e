"""Issue 12 item 10: every event the decoder returns is safe for every deriver.

Mutated real logs (tests/derive/mutate.py: bit flips, huge times and
integers, shorter declared layouts, cut variable payloads, truncation) run
through the whole pipeline, in both decoder loops, whole and live: each ends
with points, a stream fault (an absurd time jump, logged) or a DecodeError,
and never a deriver fault or any other exception.  A seeded loop, so a failure
replays; ``LIVEPROF_FUZZ_INPUTS`` sets how many inputs (default 300, some
15 s).  The longer campaign, by hand (prints inputs tried, failures, peak RSS):

    python -m tests.derive.mutate --inputs 5000
"""

from __future__ import annotations

import logging
import os
import random
import signal
from contextlib import contextmanager

import pytest

from ingest.derive.base import ByType
from ingest.derive.pipeline import Pipeline
from ingest.derive.point import Point
from ingest.derive.registry import REGISTRY
from protocol import Decoder
from tests.conftest import PythonDecoder
from tests.corpus import all_logs

try:
    from .mutate import DEFAULT_LOGS, Log, derive, mutate, redeclare
except ImportError:
    from mutate import DEFAULT_LOGS, Log, derive, mutate, redeclare

INPUTS = int(os.environ.get("LIVEPROF_FUZZ_INPUTS", "300"))
I64 = 1 << 63


@pytest.fixture(scope="module")
def logs():
    found = all_logs()
    return {name: Log(found[name].read_bytes()) for name in DEFAULT_LOGS}


@contextmanager
def deadline(seconds: int, what: str):
    """A generous bound, not a measurement: a hang fails instead of blocking CI."""
    def fire(signum, frame):
        raise TimeoutError(f"{what}: over {seconds} s")
    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def check(data: bytes, what, cls, live: bool, chunk: int) -> None:
    with deadline(30, f"{what}"):
        lines, pipe, error = derive(data, cls, chunk, live)
    assert not pipe.deriver_faults, (what, pipe.deriver_faults)
    assert lines or pipe.stream_fault or error is not None or not data, what
    for line in lines:
        assert -I64 <= int(line.rsplit(" ", 1)[1]) < I64, (what, line[:200])


def test_mutated_logs_end_with_points_or_a_documented_fault(logs, caplog):
    caplog.set_level(logging.ERROR, logger="liveprof.derive")
    rng = random.Random(12)
    names = sorted(logs)
    for i in range(INPUTS):
        name = rng.choice(names)
        data, what = mutate(logs[name], rng)
        live = rng.random() < 0.3
        chunk = rng.choice([1 << 20, 4096, 333])
        for cls in (Decoder, PythonDecoder):
            check(data, (i, name, what, cls.__name__, live), cls, live, chunk)


@pytest.mark.parametrize("name", ["hello-ghc-8.6.5", "ghc-9.2-events", "nonmoving-gc-census",
                                  "heapprof.prof.nonthreaded.hb"])
def test_every_shorter_layout_of_every_wanted_type(logs, name):
    """Each fixed-size type the pipeline wants, declared with every smaller
    size (its records cut to match): the decoder then returns an older layout
    or an UnknownEvent with no fields, and every deriver takes it."""
    log = logs.get(name) or Log(all_logs()[name].read_bytes())
    wants = Pipeline().wants
    tried = 0
    for ty, size in sorted(log.sizes.items()):
        if not size or ty not in wants or ty not in log.decls or ty == 18:
            continue
        if not any(r.type == ty for r in log.records):
            continue
        for new in range(size):
            data = redeclare(log, bytearray(log.data), ty, new)
            for cls in (Decoder, PythonDecoder):
                check(data, (name, ty, new, cls.__name__), cls, False, 1 << 20)
            tried += 1
    assert tried


def test_huge_integers_make_valid_points(logs):
    """A non-moving census of block size 2**65535 made a 4300-digit tag; u64
    fields past InfluxDB's int64 would have it refuse a whole batch."""
    log = logs["nonmoving-gc-census"]
    buf = bytearray(log.data)
    census = [r for r in log.records if r.type == 207]
    assert census
    for r in census:  # every field of every census at its largest
        buf[r.payload:r.payload + r.size] = b"\xff" * r.size
    for cls in (Decoder, PythonDecoder):
        lines, pipe, error = derive(bytes(buf), cls)
        assert not pipe.deriver_faults and error is None
        assert not [line for line in lines if line.startswith("nonmoving_census")]
        assert pipe.derivers[[d.measurement for d in pipe.derivers].index(
            "nonmoving_census")].bad == len(census)
    assert Point("m", {}, {"a": 1 << 64, "b": -(1 << 70), "c": 5}, 0).to_line() == \
        "m a=9223372036854775807i,b=-9223372036854775808i,c=5i 0"


class _Fragile(ByType):
    """A deriver with a bug: raises at its 10th GC event."""

    measurement = "fragile"
    wants = frozenset({9, 10})

    def __init__(self, settings=None):
        self.n = 0
        self._handlers = dict.fromkeys(self.wants, self._on)

    def _on(self, ev, late):
        self.n += 1
        if self.n == 10:
            raise KeyError("a bug")

    def flush(self, end):
        return []


def test_a_deriver_fault_ends_only_its_own_measurement(logs, monkeypatch, caplog):
    data = logs["threads-mvar.nonthreaded.l"].data
    good, _, _ = derive(data)
    dec = Decoder(only=_Fragile.wants)
    tenth = sorted(dec.feed(data), key=lambda e: e.time)[9]
    monkeypatch.setitem(REGISTRY, "fragile", _Fragile)
    with caplog.at_level(logging.ERROR, logger="liveprof.derive"):
        lines, pipe, error = derive(data)
    assert lines == good  # every other measurement as without it
    msg = pipe.deriver_faults["fragile"]
    assert "KeyError" in msg and "no more fragile points" in msg
    assert f"{tenth.name} (type {tenth.type}) at {tenth.time} ns, cap {tenth.cap}" in msg
    assert [r for r in caplog.records if "deriver fault" in r.getMessage()]
    assert pipe.stats.deriver_faults == {"fragile": msg}
