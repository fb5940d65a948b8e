"""``liveprof import --workers 2`` into a real InfluxDB leaves what
``--workers 1`` leaves."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.corpus import DATA, pick

CLI = [sys.executable, "-m", "ingest.cli"]


def run_import(server, database, path, workers):
    return subprocess.run(CLI + ["import", str(path), "--influx-url", server.url,
                                 "--database", database, "--host", "h", "--workers", workers],
                          capture_output=True, text=True, timeout=300)


def content(server, database) -> dict[str, list]:
    """Every measurement's rows (tags and fields, by time)."""
    out = {}
    for (name,) in server.series("SHOW MEASUREMENTS", database)[0]["values"]:
        rows = server.series(f'SELECT * FROM "{name}"', database)[0]
        out[name] = sorted(tuple(map(str, row)) for row in [rows["columns"], *rows["values"]])
    return out


def test_two_processes_import_what_one_imports(influxd, tmp_path):
    log = pick("gc-heap.N2.l", "threads-mvar.nonthreaded.l")
    one = run_import(influxd, "split_one", log, "1")
    two = run_import(influxd, "split_two", log, "2")
    assert one.returncode == two.returncode == 0, two.stderr
    first, second = content(influxd, "split_one"), content(influxd, "split_two")
    assert {"threads", "capability", "gc"} <= set(first)
    assert second == first
    # the summary names the same points and session, all written
    summary = re.compile(r"(\d+) points, session (\w+)|(\d+) points written")
    assert summary.findall(two.stderr) == summary.findall(one.stderr)
    assert len(summary.findall(one.stderr)) == 2
    # a cut file: the same exit status, message and points
    data = (DATA / "threads-mvar.nonthreaded.l.eventlog").read_bytes()
    cut = tmp_path / "cut.eventlog"
    cut.write_bytes(data[: len(data) // 2])
    one = run_import(influxd, "split_cut_one", cut, "1")
    two = run_import(influxd, "split_cut_two", cut, "2")
    assert one.returncode == two.returncode == 1, two.stderr
    assert one.stderr.splitlines()[0] == two.stderr.splitlines()[0] and "cut.eventlog" in one.stderr
    assert content(influxd, "split_cut_two") == content(influxd, "split_cut_one")
