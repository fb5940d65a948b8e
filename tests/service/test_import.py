"""``liveprof import`` into a real InfluxDB."""

from __future__ import annotations

import subprocess
import sys

from tests.corpus import DATA, all_logs, summary

CLI = [sys.executable, "-m", "ingest.cli"]


def run_import(server, database, *paths, extra=()):
    return subprocess.run(CLI + ["import", *map(str, paths), "--influx-url", server.url,
                                 "--database", database, *extra],
                          capture_output=True, text=True, timeout=300)


def points(server, database) -> dict[str, int]:
    out = {}
    for m in server.series("SHOW MEASUREMENTS", database)[0]["values"]:
        rows = server.series(f'SELECT count(*) FROM "{m[0]}"', database)
        out[m[0]] = max(v for v in rows[0]["values"][0][1:])
    return out


def test_import_twice_leaves_the_same_data(influxd):
    log = all_logs().get("gc-heap.N2.l", DATA / "threads-mvar.nonthreaded.l.eventlog")
    db = "import_twice"
    first = run_import(influxd, db, log, extra=["--progress", "always"])
    assert first.returncode == 0, first.stderr
    assert " MB/s" in first.stderr and "events/s" in first.stderr
    after_one = points(influxd, db)
    series_one = influxd.series("SHOW SERIES", db)[0]["values"]
    second = run_import(influxd, db, log)
    assert second.returncode == 0, second.stderr
    assert points(influxd, db) == after_one
    assert influxd.series("SHOW SERIES", db)[0]["values"] == series_one
    assert after_one["gc"] == summary(log)["gc"]["collections"]
    # the summary line names the session that the points carry
    session = [w for w in first.stderr.split() if len(w) == 16 and w.isalnum()]
    tags = influxd.series('SHOW TAG VALUES FROM "gc" WITH KEY = "session"', db)
    assert [v[1] for v in tags[0]["values"]] == session[:1]


def test_several_files_and_a_truncated_one(influxd, tmp_path):
    good = DATA / "hello-ghc-8.6.5.eventlog"
    cut = tmp_path / "cut.eventlog"
    data = (DATA / "threads-mvar.nonthreaded.l.eventlog").read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    run = run_import(influxd, "import_many", good, cut)
    assert run.returncode == 1, run.stderr       # a cut log is bad data; its points are kept
    assert "stream ends" in run.stderr or "cut inside" in run.stderr
    assert run.stderr.count(" points, session ") == 2
    tags = influxd.series('SHOW TAG VALUES WITH KEY = "session"', "import_many")
    assert len({v[1] for series in tags for v in series["values"]}) == 2


def test_unreachable_influxdb_fails_at_once(tmp_path):
    run = subprocess.run(CLI + ["import", str(DATA / "hello-ghc-8.6.5.eventlog"),
                                "--influx-url", "http://127.0.0.1:9", "--timeout", "5"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "unreachable" in run.stderr


def test_imported_figures_equal_the_reference_summary(influxd):
    """GC count and pause sum, span totals per label and the allocation total,
    queried back from InfluxDB, equal the official parser's summary."""
    import os

    log = all_logs().get("gc-heap.N2.l", DATA / "threads-mvar.nonthreaded.l.eventlog")
    db = "import_figures"
    env = dict(os.environ, LIVEPROF_DERIVE_TOP="1000")      # every span label by name
    run = subprocess.run(CLI + ["import", str(log), "--influx-url", influxd.url,
                                "--database", db], capture_output=True, text=True,
                         timeout=300, env=env)
    assert run.returncode == 0, run.stderr
    ref = summary(log)
    (row,) = influxd.series('SELECT count("pause_ns"), sum("pause_ns") FROM "gc"', db)[0]["values"]
    assert row[1:] == [ref["gc"]["collections"], ref["gc"]["pause_union_ns"]]
    (row,) = influxd.series('SELECT sum("allocated_bytes") FROM "heap"', db)[0]["values"]
    assert row[1] == ref["heap"]["allocated_bytes_total"]
    spans = {s["tags"]["label"]: s["values"][0][1:] for s in influxd.series(
        'SELECT sum("time_ns"), sum("starts"), sum("stops") FROM "spans" GROUP BY "label"', db)}
    want = {label: [s["total_ns"], s["starts"], s["stops"]]
            for label, s in ref["user"]["spans"].items()}
    assert spans == want


def test_refused_credentials_are_a_clear_error(influxd_factory):
    server = influxd_factory(auth=True)
    run = subprocess.run(CLI + ["import", str(DATA / "hello-ghc-8.6.5.eventlog"),
                                "--influx-url", server.url, "--influx-user", "nobody",
                                "--influx-password", "wrong-secret"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2
    assert "401" in run.stderr or "authoriz" in run.stderr.lower()
    assert "wrong-secret" not in run.stderr
