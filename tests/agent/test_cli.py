"""``liveprof agent`` on the command line: help, exit status, counters."""

from __future__ import annotations

import subprocess

from protocol import Decoder, EventType
from tests.agent.helpers import CLI, ROOT
from tests.corpus import DATA

LOG = DATA / "threads-mvar-small.N2.l.eventlog"


def agent(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + ["agent", *args], capture_output=True, text=True, timeout=60,
                          cwd=ROOT)


def test_help_names_every_source_and_output():
    run = agent("--help")
    assert run.returncode == 0
    for flag in ("--fifo", "--socket", "--follow", "--file", "--stdin", "--listen", "--send",
                 "--redundancy", "--repeat", "--secret-file", "--app", "--queue-bytes"):
        assert flag in run.stdout


def test_a_file_is_sent_once_and_counted():
    run = agent("--file", str(LOG), "--no-listen", "--send", "127.0.0.1:9")
    assert run.returncode == 0, run.stderr
    events = [e for e in Decoder().feed(LOG.read_bytes()) if e.type != EventType.BLOCK_MARKER]
    assert f"run ended: {len(events)} events in 3 blocks" in run.stderr
    assert "stopped: runs 1," in run.stderr


def test_exit_status_for_bad_data_and_bad_usage(tmp_path):
    data = LOG.read_bytes()
    bad = tmp_path / "bad.eventlog"
    bad.write_bytes(data[:data.index(b"datb") + 4] + b"\x7f\x7f" + bytes(64))
    run = agent("--file", str(bad), "--no-listen", "--send", "127.0.0.1:9")
    assert run.returncode == 1 and "is not declared in the header" in run.stderr
    bad.write_bytes(data[:len(data) // 2])                     # cut short
    run = agent("--file", str(bad), "--no-listen", "--send", "127.0.0.1:9")
    assert run.returncode == 1 and "ended before the end marker" in run.stderr
    bad.write_bytes(bytes(5000))
    run = agent("--file", str(bad), "--no-listen", "--send", "127.0.0.1:9")
    assert run.returncode == 1 and "0 eventlog(s)" in run.stderr
    run = agent("--file", str(LOG), "--send", "host:notaport")
    assert run.returncode == 2 and "bad port" in run.stderr
    run = agent("--file", str(LOG), "--no-listen")
    assert run.returncode == 2 and "nowhere to send" in run.stderr
    short = tmp_path / "secret"
    short.write_text("too short\n")
    run = agent("--file", str(LOG), "--send", "127.0.0.1:9", "--secret-file", str(short))
    assert run.returncode == 2 and "16 characters" in run.stderr
    assert agent("--fifo", str(tmp_path)).returncode == 2     # a directory is no pipe
