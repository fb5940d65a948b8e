"""A crash during an outage loses at most ``spill_after`` of data (issue 12,
item 9): a real ``liveprof serve`` imports a log while InfluxDB is down, is
killed with SIGKILL once the spill time has passed, and a second ``serve``
with InfluxDB up delivers every point the first one derived."""

from __future__ import annotations

import os
import re
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.corpus import DATA, all_logs

HEADER = struct.Struct("<4sIII")
GUARD = 90.0  # a deadline against a hung test, not a speed requirement


def lines_on_disk(spool: Path) -> int:
    """Lines in the spool's segment files, read raw (the spool itself is not
    opened: that would tidy the directory of the running service)."""
    total = 0
    for seg in spool.glob("*.seg"):
        data = seg.read_bytes()
        pos = 0
        while pos + HEADER.size <= len(data):
            _, length, n, _ = HEADER.unpack_from(data, pos)
            if pos + HEADER.size + length > len(data):
                break
            pos += HEADER.size + length
            total += n
    return total


class Serve:
    """``liveprof serve`` in a subprocess, its log collected by a thread."""

    def __init__(self, args: list[str], state: Path) -> None:
        env = dict(os.environ, LIVEPROF_STATE_DIR=str(state), LIVEPROF_SETUP="false")
        self.proc = subprocess.Popen([sys.executable, "-m", "ingest.cli", "serve", *args], env=env,
                                     stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        self.log: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.log.append(line)

    def text(self) -> str:
        return "".join(self.log)

    def wait_for(self, predicate, what: str) -> None:
        deadline = time.monotonic() + GUARD
        while not predicate():
            if self.proc.poll() is not None:
                raise AssertionError(f"serve exited ({self.proc.returncode}) before {what}:\n{self.text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {GUARD} s\n{self.text()}")
            time.sleep(0.05)

    def stop(self, sig=signal.SIGTERM) -> None:
        self.proc.send_signal(sig)
        self.proc.wait(60)
        self._reader.join(10)


def stored_points(server, database) -> int:
    measurements = server.series("SHOW MEASUREMENTS", database)
    total = 0
    for (name,) in (measurements[0]["values"] if measurements else []):
        for series in server.series(f'SELECT * FROM "{name}" GROUP BY *', database):
            total += len(series["values"])
    return total


def test_sigkill_during_an_outage_loses_nothing_past_the_spill_time(influxd_factory, tmp_path):
    log = all_logs().get("gc-heap.N2.l", DATA / "threads-mvar.nonthreaded.l.eventlog")
    server = influxd_factory()
    server.create_database("crash")
    server.stop()  # its port now refuses connections
    state = tmp_path / "state"
    spool = state / "spool"
    target = ["--influx-url", server.url, "--database", "crash"]

    first = Serve(["--file", str(log), *target], state)
    try:
        first.wait_for(lambda: " ended: " in first.text(), "the file's session ends")
        derived = int(re.search(r" ended: \d+ bytes, \d+ events, (\d+) points", first.text()).group(1))
        assert derived > 100
        # defaults: memory_max_bytes (64 MiB) is far away; only spill_after puts them on disk
        first.wait_for(lambda: lines_on_disk(spool) >= derived, "every derived point on disk")
    finally:
        first.stop(signal.SIGKILL)
    assert lines_on_disk(spool) == derived
    assert stat_mode(spool) == 0o700
    assert all(stat_mode(f) == 0o600 for f in spool.iterdir())

    server.start()
    second = Serve(target, state)  # no source: only what the first one left
    try:
        second.wait_for(lambda: stored_points(server, "crash") >= derived, "the spooled points arrive")
    finally:
        second.stop()
    assert second.proc.returncode == 0, second.text()
    assert stored_points(server, "crash") == derived
    assert "waiting from before" in second.text()
    assert list(spool.glob("*.seg")) == []


def stat_mode(path: Path) -> int:
    return path.stat().st_mode & 0o777
