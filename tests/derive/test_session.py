"""``ingest.session``: the same bytes give the same points and the same end
whichever way they come: whole, in chunks of odd sizes, or through
``liveprof derive`` (real logs, a log cut inside an event, a corrupt one)."""

from __future__ import annotations

import itertools
import re
import socket
from collections import defaultdict
from pathlib import Path

import pytest

from ingest.config import DeriveConfig
from ingest.session import Session, SessionEnd, settings_from
from protocol import DecodeError, Decoder
from tests.cli.helpers import liveprof
from tests.corpus import DATA, pick

LOGS = {
    "threads": pick("threads-mvar.N2.l", "threads-mvar-small.N2.l"),
    "gc-heap": DATA / "gc-heap-small.N2.hT.eventlog",
    "heap-profile": DATA / "heapprof-small.prof.N2.hc-p.eventlog",
    "cut": pick("threads-mvar.N2.l.killed", "threads-mvar.nonthreaded.l.cut"),
}
ODD = (1, 3, 7, 61, 509, 4093, 65521)   # chunk sizes, in turn
OPTIONS = DeriveConfig.model_validate({"host": "test"})  # `liveprof derive`'s defaults too


def settings(live: bool):
    return settings_from(OPTIONS, live=live, fallback_host=socket.gethostname())


def whole(path: Path, live: bool) -> tuple[Session, list[str]]:
    session = Session.for_file(str(path), settings(live))
    points = session.feed(path.read_bytes()) + session.close()
    return session, [p.to_line() for p in points]


def chunked(path: Path, live: bool) -> tuple[Session, list[str]]:
    session = Session.for_file(str(path), settings(live))
    data, pos, points = path.read_bytes(), 0, []
    for size in itertools.cycle(ODD):
        if pos >= len(data):
            break
        points += session.feed(data[pos:pos + size])
        pos += size
    points += session.close()
    return session, [p.to_line() for p in points]


def by_measurement(lines: list[str]) -> dict[str, list[str]]:
    """Each measurement's lines in order (how measurements interleave may
    depend on the batches; each one's own order may not)."""
    out: dict[str, list[str]] = defaultdict(list)
    for line in lines:
        out[line.split(",", 1)[0]].append(line)
    return dict(out)


def corrupt(tmp_path: Path) -> Path:
    """A real log with two bytes overwritten where the decoder refuses them
    (the first such place after 40 000 bytes)."""
    src = (DATA / "gc-heap-small.N2.hT.eventlog").read_bytes()
    for pos in range(40_000, len(src) - 2):
        bad = src[:pos] + b"\xfe\x00" + src[pos + 2:]
        try:
            Decoder().feed(bad)
        except DecodeError:
            path = tmp_path / "corrupt.eventlog"
            path.write_bytes(bad)
            return path
    raise AssertionError("no place found where the decoder refuses the log")


def check_same(path: Path, live: bool) -> tuple[Session, list[str]]:
    one, lines = whole(path, live)
    other, lines2 = chunked(path, live)
    assert lines, "no points at all: nothing compared"
    assert by_measurement(lines2) == by_measurement(lines)
    assert sorted(lines2) == sorted(lines)
    assert other.end == one.end and isinstance(one.end, SessionEnd)
    figures = ("bytes", "events", "decoded", "points", "failed", "error_offset")
    assert {f: getattr(other, f) for f in figures} == {f: getattr(one, f) for f in figures}
    assert one.bytes == path.stat().st_size and one.points == len(lines)

    run = liveprof("derive", path, "--host", "test", "--stats", *(["--live"] if live else []))
    assert "Traceback" not in run.stderr, run.stderr
    cli = run.stdout.splitlines()
    assert by_measurement(cli) == by_measurement(lines)
    assert sorted(cli) == sorted(lines)
    stats = re.search(r"(\d+) events read \((\d+) decoded for the measurements\), (\d+) points",
                      run.stderr)
    assert stats and tuple(map(int, stats.groups())) == (one.events, one.decoded, one.points)
    assert one.end is not None
    problem = one.end.describe(str(path))
    assert run.returncode == (0 if problem is None else 1), run.stderr
    if problem is not None:
        assert f"liveprof: {problem}\n" in run.stderr
    return one, lines


@pytest.mark.parametrize("name", sorted(LOGS))
def test_whole_chunked_and_cli_give_the_same_points(name):
    session, _ = check_same(LOGS[name], live=False)
    assert session.end is not None and session.end.clock == session.stats.clock


@pytest.mark.parametrize("name", ["threads", "cut"])
def test_live_order_too(name):
    check_same(LOGS[name], live=True)


def test_a_cut_log_ends_with_where_it_was_cut(tmp_path):
    src = LOGS["gc-heap"].read_bytes()
    path = tmp_path / "cut-inside.eventlog"
    for size in range(len(src) // 2, len(src)):      # a cut inside an event, not between two
        dec = Decoder()
        dec.feed(src[:size])
        if dec.close().reason == "event":
            path.write_bytes(src[:size])
            break
    session, _ = check_same(path, live=False)
    end = session.end
    assert end is not None and not end.complete and end.reason == "event" and end.pending > 0
    assert end.error is not None and str(end.offset) in end.error
    assert not session.failed and session.error_offset is None


def test_a_corrupt_log_keeps_the_points_before_the_bad_byte(tmp_path):
    path = corrupt(tmp_path)
    session, lines = check_same(path, live=False)
    assert session.failed and session.error_offset is not None
    assert session.error_offset < path.stat().st_size
    end = session.end
    assert end is not None and end.reason == "decode error" and not end.complete
    assert end.offset == session.error_offset and end.error.startswith("not a valid eventlog")
    # the points are those of the log's bytes up to the bad one (the same pre-scan)
    upto = Session.for_file(str(path), settings(False))
    before = upto.feed(path.read_bytes()[:session.error_offset]) + upto.close()
    assert sorted(lines) == sorted(p.to_line() for p in before)
    assert not upto.failed and upto.end is not None and upto.end.reason != "decode error"
    # bytes after the error are counted, not decoded
    more = session.feed(b"\0" * 100)
    assert more == [] and session.bytes == path.stat().st_size + 100
