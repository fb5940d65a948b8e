"""Items 5 and 6 of issue 11: ``liveprof --version``; and every command
counts the same events for the same file (``dump --summary`` said 53,060
where ``derive --stats`` and ``import`` said 34,781: they counted only the
events they decode)."""

from __future__ import annotations

import json
import re
import tomllib

import pytest

from tests.corpus import DATA, REPO, all_logs, summary

from .helpers import liveprof


def test_version_is_the_package_version():
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    run = liveprof("--version")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == f"liveprof {declared}"


LOGS = [all_logs().get("threads-mvar.N2.l", DATA / "threads-mvar.nonthreaded.l.eventlog"),
        DATA / "hello-ghc-8.6.5.eventlog"]


@pytest.mark.parametrize("log", LOGS, ids=lambda p: p.name)
def test_every_command_counts_every_event(log, influxd):
    want = summary(log)["event_count"]          # the reference parser's count
    dump = liveprof("dump", "--summary", log)
    assert dump.returncode == 0, dump.stderr
    assert json.loads(dump.stdout)["event_count"] == want
    derive = liveprof("derive", "--stats", log)
    assert derive.returncode == 0, derive.stderr
    read, decoded = map(int, re.search(r"(\d+) events read \((\d+) decoded",
                                       derive.stderr).groups())
    assert read == want and 0 < decoded <= read
    imported = liveprof("import", log, "--influx-url", influxd.url, "--database", "counts",
                        "--timeout", "60", timeout=300)
    assert imported.returncode == 0, imported.stderr
    assert re.search(rf"{want} events read \({decoded} decoded\)", imported.stderr), \
        imported.stderr


def test_the_decoder_counts_what_it_skips(decoder_cls):
    """Both record loops: decoded plus skipped is every event (block markers
    frame events and are counted by neither)."""
    data = (DATA / "threads-mvar.nonthreaded.l.eventlog").read_bytes()
    everything = decoder_cls()
    every = [ev for ev in everything.feed(data) if ev.type != 18]
    assert everything.skipped == 0
    some = decoder_cls(only={0, 1, 2})       # thread creation, run, stop
    got = some.feed(data)
    assert {ev.type for ev in got} <= {0, 1, 2}
    assert len(got) + some.skipped == len(every)
    # fed in pieces, the same
    pieces = decoder_cls(only={0, 1, 2})
    n = sum(len(pieces.feed(data[i:i + 777])) for i in range(0, len(data), 777))
    assert (n, pieces.skipped) == (len(got), some.skipped)
