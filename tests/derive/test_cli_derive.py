"""``liveprof derive`` on a file, on stdin and on a named pipe (real logs)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

from ingest.cli import main
from tests.corpus import REPO, pick
from tests.derive.helpers import run_pipeline as run

LOG = pick("threads-mvar.N2.l", "threads-mvar-small.N2.l")
KILLED = pick("threads-mvar.N2.l.killed", "threads-mvar.nonthreaded.l.cut")
ARGS = ["--host", "test", "--measurements", "session,gc,heap,capability"]


def lines_of(out: str) -> list[str]:
    return out.splitlines()


def test_file(capsys):
    assert main(["derive", str(LOG), *ARGS]) == 0
    out = lines_of(capsys.readouterr().out)
    expected = [p.to_line() for p in run(LOG)[0]]
    assert out == expected
    for line in out:
        head, fields, ts = line.rsplit(" ", 2)
        assert int(ts) > 1_500_000_000 * 10**9  # anchored to the wall clock


def test_killed_file_falls_back_to_mtime(capsys):
    assert main(["derive", str(KILLED), *ARGS, "--stats"]) == 1    # cut: bad data, points kept
    captured = capsys.readouterr()
    assert "clock: fallback" in captured.err
    last_ts = max(int(line.rsplit(" ", 1)[1]) for line in lines_of(captured.out))
    assert abs(last_ts - os.stat(KILLED).st_mtime_ns) < 5 * 10**9


def test_stdin():
    proc = subprocess.run([sys.executable, "-m", "ingest.cli", "derive", "-", *ARGS],
                          input=LOG.read_bytes(), capture_output=True, cwd=REPO, check=True)
    assert lines_of(proc.stdout.decode()) == [p.to_line() for p in run(LOG)[0]]


def test_named_pipe(tmp_path):
    fifo = tmp_path / "log.fifo"
    os.mkfifo(fifo)

    def writer():
        with open(fifo, "wb") as f:
            f.write(LOG.read_bytes())

    t = threading.Thread(target=writer)
    t.start()
    proc = subprocess.run([sys.executable, "-m", "ingest.cli", "derive", str(fifo), *ARGS,
                           "--stats"], capture_output=True, cwd=REPO, check=True, timeout=60)
    t.join()
    out = lines_of(proc.stdout.decode())
    gc = [line for line in out if line.startswith("gc,")]
    assert gc and all(line.split(",", 1)[1].startswith("app=") for line in gc)
    assert "late" in proc.stderr.decode()


def test_unknown_measurement(capsys):
    assert main(["derive", str(LOG), "--measurements", "gc,nope"]) == 2
    assert "nope" in capsys.readouterr().err
