"""End-to-end import throughput: an eventlog file into a real InfluxDB.

usage: python bench/import.py FILE [--influx-url URL] [--runs N] [--keep] [--pure-python]

Each run is ``liveprof import FILE --influx-url URL --database DB`` in a
subprocess (a fresh database per run, so every run writes new points instead
of overwriting the previous run's), timed from spawn to exit: Python start,
InfluxDB health check, reading and decoding the file, deriving the points and
writing them all (the import flushes the sink and waits for InfluxDB to take
every batch before it exits).  Printed per run and as best and median of the
runs (the machine may be shared):

  MB/s        size of FILE (1 MB = 10**6 bytes) / wall seconds
  events/s    events of the log (as ``liveprof import`` reports them) / wall seconds
  points/s    points written / wall seconds
  ratio       wall seconds over those of ghc-events' CountEvents on the same
              file, run once before each import (bench/baseline.py finds it):
              best to best and median to median (issue 16's target: 3x)
  points      as counted back in InfluxDB after the run, next to what
              ``liveprof import`` said it wrote
  peak RSS    the sum over the import's processes (a large file is derived by
              two, ingest/split.py; ``--workers`` is passed on), and each's:
              VmHWM sampled every 50 ms (bench/derive.py ``TreePeak``; the
              import's own also from ``os.wait4``'s ``ru_maxrss``, which is the
              largest of it and its children, not their sum)
  CPU         user + system seconds of the import and its second process
  RSS curve   the import's resident set sampled from /proc/PID/status every
              50 ms, shown at 10%, 25%, 50%, 75% and 100% of the run: flat
              memory means the later samples stay near the early ones instead of
              growing with the bytes read

Points are counted as the rows of ``SELECT * FROM "m" GROUP BY *`` per
measurement and retention policy, read as chunked JSON: a point is one
(series, timestamp) and is one row whichever of its fields it has (``count(*)``
would undercount measurements with sparse fields, e.g. ``markers``).  The
count is compared with what ``liveprof import`` reports; a difference is
printed.

Without ``--influx-url`` a private ``influxd`` (tests/servers.py
``InfluxServer``, Debian's binary) is started in a temp dir on free loopback
ports and stopped afterwards; its data dir lives on the same disk as /tmp.
With ``--influx-url`` the databases ``liveprof_bench_import_N`` are created
there and dropped after counting (``--keep`` keeps them).

``--pure-python`` runs the imports with ``LIVEPROF_PURE_PYTHON=1`` (the
reference derivers and decoder).

This script only measures and prints; it asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import baseline  # noqa: E402
from derive import TreePeak, rss_line  # noqa: E402

from tests.servers import InfluxServer  # noqa: E402


def liveprof_command() -> list[str]:
    exe = shutil.which("liveprof", path=str(Path(sys.executable).parent)) or shutil.which("liveprof")
    if exe:
        return [exe]
    return [sys.executable, "-m", "ingest.cli"]


class Influx:
    """The few InfluxQL calls this script needs, on any URL."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")

    def query(self, q: str, db: str | None = None) -> list[dict]:
        params = {"q": q, "epoch": "ns"}
        if db:
            params["db"] = db
        req = urllib.request.Request(f"{self.url}/query?{urllib.parse.urlencode(params)}",
                                     data=b"", method="POST")
        with urllib.request.urlopen(req, timeout=120) as resp:
            results = json.loads(resp.read()).get("results", [])
        for r in results:
            if "error" in r:
                raise RuntimeError(f"{q!r}: {r['error']}")
        return results

    def series(self, q: str, db: str | None = None) -> list[dict]:
        return self.query(q, db)[0].get("series", [])

    def count_rows(self, q: str, db: str) -> int:
        """Rows a query returns, read as chunked JSON (no server row limit)."""
        params = {"q": q, "db": db, "epoch": "ns", "chunked": "true", "chunk_size": "20000"}
        req = urllib.request.Request(f"{self.url}/query?{urllib.parse.urlencode(params)}",
                                     data=b"", method="POST")
        rows = 0
        with urllib.request.urlopen(req, timeout=600) as resp:
            for line in resp:
                if not line.strip():
                    continue
                for r in json.loads(line).get("results", []):
                    if "error" in r:
                        raise RuntimeError(f"{q!r}: {r['error']}")
                    rows += sum(len(s.get("values", [])) for s in r.get("series", []))
        return rows

    def count_points(self, db: str) -> dict[str, int]:
        """Points per measurement over every retention policy of ``db``: the
        rows of ``SELECT * ... GROUP BY *`` (one row per series and timestamp,
        i.e. per point, whichever fields it has)."""
        rps = [row[0] for s in self.series("SHOW RETENTION POLICIES", db) for row in s["values"]]
        names = [row[0] for s in self.series("SHOW MEASUREMENTS", db) for row in s["values"]]
        out: dict[str, int] = {}
        for rp in rps:
            for m in names:
                n = self.count_rows(f'SELECT * FROM "{db}"."{rp}"."{m}" GROUP BY *', db)
                if n:
                    out[m] = out.get(m, 0) + n
        return out


def sample_rss(pid: int, samples: list, stop: threading.Event, every: float = 0.05) -> None:
    t0 = time.perf_counter()
    path = f"/proc/{pid}/status"
    while not stop.is_set():
        try:
            with open(path) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        samples.append((time.perf_counter() - t0, int(line.split()[1]) * 1024))
                        break
        except OSError:
            return
        stop.wait(every)


def one_run(path: str, url: str, db: str, env: dict | None = None,
            workers: str | None = None) -> dict:
    cmd = liveprof_command() + ["import", path, "--influx-url", url, "--database", db,
                                "--progress", "never"]
    if workers:
        cmd += ["--workers", workers]
    samples: list = []
    stop = threading.Event()
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, env=env)
    sampler = threading.Thread(target=sample_rss, args=(proc.pid, samples, stop), daemon=True)
    sampler.start()
    peak = TreePeak(proc.pid)
    # read both pipes without deadlocking, then reap this very child with wait4
    out_chunks: dict[str, bytes] = {}

    def drain(name, stream):
        out_chunks[name] = stream.read()

    readers = [threading.Thread(target=drain, args=(n, s), daemon=True)
               for n, s in (("out", proc.stdout), ("err", proc.stderr))]
    for r in readers:
        r.start()
    for r in readers:
        r.join()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    peaks = peak.stop(usage.ru_maxrss * 1024)
    proc.returncode = os.waitstatus_to_exitcode(status)
    stop.set()
    sampler.join()
    err = out_chunks.get("err", b"").decode(errors="replace")
    if proc.returncode != 0:
        raise SystemExit(f"liveprof import exited with status {proc.returncode}:\n{err}")
    reported = events = None
    for line in err.splitlines():
        m = re.search(r"(\d+) points written to ", line)
        if m:
            reported = int(m[1])
        m = re.search(r"(\d+) events read", line)
        if m:
            events = int(m[1])
    return {"seconds": seconds, "cpu": usage.ru_utime + usage.ru_stime,
            "peak_rss": sum(peaks), "peaks": peaks, "pss": peak.pss, "rss": samples, "reported": reported,
            "events": events, "stderr": err}


def rss_curve(samples: list) -> str:
    if not samples:
        return "(no samples)"
    n = len(samples)
    parts = []
    for frac in (0.10, 0.25, 0.50, 0.75, 1.0):
        t, rss = samples[min(n - 1, max(0, int(round(frac * n)) - 1))]
        parts.append(f"{int(frac * 100)}%:{rss / 2**20:.0f}")
    return "RSS MiB at " + " ".join(parts)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("file")
    ap.add_argument("--influx-url", help="an InfluxDB 1.x to write into (default: start a private influxd)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--keep", action="store_true", help="keep the benchmark databases")
    ap.add_argument("--pure-python", action="store_true",
                    help="LIVEPROF_PURE_PYTHON=1: the reference derivers and decoder")
    ap.add_argument("--workers", choices=("auto", "1", "2"), default=None,
                    help="passed on to `liveprof import` (default: its own, auto)")
    args = ap.parse_args()
    size = os.path.getsize(args.file)

    tmp = None
    server = None
    if args.influx_url:
        url = args.influx_url
    else:
        tmp = tempfile.mkdtemp(prefix="liveprof-bench-import-")
        server = InfluxServer(Path(tmp) / "influxd")
        server.start()
        url = server.url
    influx = Influx(url)
    print(f"file {args.file}: {size / 1e6:.1f} MB; InfluxDB {url}"
          f"{f' (private influxd, {tmp})' if server else ''}")
    print(f"mode: `liveprof import{' --workers ' + args.workers if args.workers else ''}` as a "
          f"subprocess; peak RSS summed over its processes")
    env = dict(os.environ)
    if args.pure_python:
        env["LIVEPROF_PURE_PYTHON"] = "1"
        print("derivers and decoder: pure Python (LIVEPROF_PURE_PYTHON=1)")
    counter = baseline.find()
    results, bases = [], []
    try:
        for i in range(1, args.runs + 1):
            db = f"liveprof_bench_import_{i}_{os.getpid()}"
            if counter:  # the same file, in the same run, just before
                bases.append(baseline.run(counter, args.file))
            r = one_run(args.file, url, db, env, args.workers)
            counts = influx.count_points(db)
            r["counted"] = sum(counts.values())
            r["per_measurement"] = counts
            if not args.keep:
                influx.query(f'DROP DATABASE "{db}"')
            results.append(r)
            mismatch = "" if r["counted"] == r["reported"] else \
                f"  (liveprof reported {r['reported']}: MISMATCH)"
            ev_rate = f"{r['events'] / r['seconds'] / 1e6:5.2f} M events/s, " if r["events"] else ""
            print(f"run {i}: {r['seconds']:6.2f} s wall, {r['cpu']:6.2f} s CPU, "
                  f"{size / 1e6 / r['seconds']:6.1f} MB/s, {ev_rate}"
                  f"{r['counted'] / r['seconds']:9.0f} points/s, "
                  f"{r['counted']} points counted{mismatch}, peak RSS {rss_line(r['peaks'], r['pss'])}; "
                  f"{rss_curve(r['rss'])} (the import's own)")
    finally:
        if server:
            server.stop()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    if results:
        per = ", ".join(f"{m} {n}" for m, n in sorted(results[-1]["per_measurement"].items()))
        print(f"points per measurement (last run): {per}")
        secs = [r["seconds"] for r in results]
        best, med = min(secs), statistics.median(secs)
        pts = results[0]["counted"]
        rss = [r["peak_rss"] / 1e6 for r in results]
        cpus = sorted(r["cpu"] for r in results)
        print(f"best   {size / 1e6 / best:6.1f} MB/s  {pts / best:9.0f} points/s  ({best:.2f} s; "
              f"CPU {cpus[0]:.2f} s)")
        print(f"median {size / 1e6 / med:6.1f} MB/s  {pts / med:9.0f} points/s  ({med:.2f} s; "
              f"CPU {statistics.median(cpus):.2f} s)")
        print(f"points written {pts} (counted in InfluxDB); peak RSS of the import (summed over "
              f"its processes) {min(rss):.0f}..{max(rss):.0f} MB over {len(results)} runs")
        if bases:
            b = [x["seconds"] for x in bases]
            print(f"CountEvents {min(b):.2f} s best, {statistics.median(b):.2f} median "
                  f"({size / 1e6 / min(b):.1f} MB/s, {bases[0]['events']} events)")
            print(baseline.ratio_line("liveprof import", secs, b))
        else:
            print(baseline.missing())
    return 0


if __name__ == "__main__":
    sys.exit(main())
