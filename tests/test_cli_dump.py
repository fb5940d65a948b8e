"""``liveprof dump`` on files, stdin and named pipes, as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest

from .corpus import REPO, all_logs, reference_lines, summary, with_reference

LIVEPROF = [sys.executable, "-m", "ingest.cli"]


def liveprof(*args, stdin=None, input_=None):
    return subprocess.run(LIVEPROF + list(args), cwd=REPO, input=input_, stdin=stdin,
                          capture_output=True, timeout=120)


@pytest.mark.parametrize("name", ["threads-mvar.nonthreaded.l", "parallelTest", "testlog"])
def test_dump_file_equals_reference(name):
    path = all_logs()[name]
    result = liveprof("dump", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().splitlines() == reference_lines(path)
    assert result.stderr == b""


def test_dump_stdin():
    path = all_logs()["unicode"]
    result = liveprof("dump", "-", input_=path.read_bytes())
    assert result.returncode == 0
    assert result.stdout.decode().splitlines() == reference_lines(path)


def test_dump_named_pipe(tmp_path):
    path = all_logs()["hello-ghc-8.6.5"]
    fifo = tmp_path / "ghc.eventlog"
    os.mkfifo(fifo)
    data = path.read_bytes()

    def writer():
        with open(fifo, "wb") as f:
            for i in range(0, len(data), 100):
                f.write(data[i:i + 100])
                f.flush()

    thread = threading.Thread(target=writer)
    thread.start()
    result = liveprof("dump", str(fifo))
    thread.join()
    assert result.returncode == 0
    assert result.stdout.decode().splitlines() == reference_lines(path)


@pytest.mark.parametrize("path", [p for p in with_reference(".summary.json")
                                  if p.stat().st_size < 3_000_000], ids=lambda p: p.name)
def test_summary_counts_equal_reference(path):
    result = liveprof("dump", "--summary", str(path))
    # a log without its end-of-data marker (the program died) is bad data: 1
    assert result.returncode == (0 if path.read_bytes().endswith(b"\xff\xff") else 1)
    import json
    ours = json.loads(result.stdout)
    ref = summary(path)
    assert ours["counts"] == ref["counts"]
    assert ours["event_count"] == ref["event_count"]


def test_truncated_file_keeps_events_and_says_where(tmp_path):
    path = all_logs()["unicode"]
    data = path.read_bytes()
    cut = tmp_path / "cut.eventlog"
    cut.write_bytes(data[:-5])
    result = liveprof("dump", str(cut))
    assert result.returncode == 1      # a cut log is bad data; its events are still printed
    lines = result.stdout.decode().splitlines()
    assert lines == reference_lines(path)[: len(lines)] and lines
    assert b"byte offset" in result.stderr and str(cut).encode() in result.stderr


def test_garbage_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.eventlog"
    bad.write_bytes(b"not an eventlog at all")
    result = liveprof("dump", str(bad))
    assert result.returncode == 1
    assert b"bad.eventlog" in result.stderr and b"byte offset 0" in result.stderr


def test_missing_file():
    result = liveprof("dump", "/nonexistent/x.eventlog")
    assert result.returncode == 2 and b"/nonexistent/x.eventlog: No such file" in result.stderr
