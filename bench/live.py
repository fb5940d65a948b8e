# (over 400 lines: one script, the run and what it measures read top to bottom)
"""Live delay of a real GHC program: emission -> queryable in InfluxDB, and -> MQTT alert.

usage: python bench/live.py [--seconds 60] [--max-lag S] [--flush-interval S]
                            [--alert-ms MS] [--gc major|all] [--poll S]
                            [--serve-arg ARG ...] [--no-import]

Runs LiveSim (``../shared/live/LiveSim.hs``: a threaded GHC 9.0.2 program on
``-N2`` that flushes its capabilities' eventlog buffers every 100 ms and
emits a ``lag <wall-clock ns>`` user marker on each tick) for ``--seconds``
with ``+RTS -l -ol<prog.fifo>``; ``tee`` copies that pipe into the named pipe
``liveprof serve --fifo`` reads and into a file (the same bytes, imported
afterwards).  A private ``influxd`` and ``mosquitto`` (tests/servers.py) run
in a temp dir; the service runs with its defaults but for the database, the
MQTT alert sink (``pause_threshold_ms`` = ``--alert-ms``) and what the flags
here set.  Meanwhile the script polls InfluxDB every ``--poll`` seconds and
subscribes to the alert topics; a point or alert is *seen* at the wall time
(``time.time_ns``, CLOCK_REALTIME as LiveSim's markers) its answer arrived.

Delays, each printed as p50/p90/p99/max over the run:

  marker  seen - N, for each ``markers`` point whose ``text`` is ``lag N``
          (N: LiveSim's own clock when it emitted the marker).
  gc      seen - (time + pause_ns) of each ``gc`` point: the point is stamped
          with its collection's start and ``pause_ns`` runs to the last
          ``EndGC``, both mapped to wall clock by the session's anchor (the
          ``WallClockTime`` event, ingest/derive/clock.py), so this is the
          EndGC on the wall clock.  ``--gc major`` (default) polls the major
          collections only (about 12 a second; LiveSim makes some 670
          collections a second, and polling them all would load the 2 cores
          the measurement shares); they take the same path as the minor ones.
  alert   receipt - (time_ns + pause_ns) of each ``gc_pause`` alert: from the
          EndGC to the subscriber (the broker and one more hop included).

The anchor check prints the median of (marker point time - N): how far the
session's eventlog-to-wall mapping is from LiveSim's clock (it should be
microseconds; a session that fell back to its arrival time would show it).
Seen times carry up to one poll interval plus one query; a point first seen in
the final sweep (it came in below the re-read margin) is counted apart.

CPU: ``serve``'s user+system seconds (``/proc``) once every point is in,
before it is stopped, and ``liveprof import`` of the same bytes into another
database (``wait4`` rusage), each per MB of eventlog.  LiveSim itself uses
about half a core: the figures are those of a loaded 2-core machine.

This script only measures and prints; it asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
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

from protocol import Decoder  # noqa: E402
from tests.servers import InfluxServer, MosquittoServer  # noqa: E402

LIVESIM = Path(os.environ.get("LIVESIM_DIR", ROOT.parent / "shared" / "live"))
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "liveprof-bench"
USER_MARKER = 58
MARGIN_NS = 3_000_000_000  # each poll re-reads this far below the newest timestamp seen
TOPIC = "bench"


def livesim_binary() -> Path:
    """LiveSim built from its source (shared ``bin/`` if current, else a private build)."""
    src = LIVESIM / "LiveSim.hs"
    for exe in (LIVESIM / "bin" / "LiveSim", CACHE / "LiveSim"):
        if exe.exists() and exe.stat().st_mtime >= src.stat().st_mtime:
            return exe
    exe = CACHE / "LiveSim"
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as obj:
        subprocess.run(["ghc", "-O", "-threaded", "-rtsopts", "-eventlog", str(src),
                        "-outputdir", obj, "-o", str(exe)], check=True, stdout=subprocess.DEVNULL)
    return exe


def now_ns() -> int:
    return time.time_ns()


class Poller(threading.Thread):
    """Every ``every`` s, the new rows of one query; first-seen wall ns by (time, value)."""

    def __init__(self, url: str, db: str, select: str, every: float):
        super().__init__(daemon=True)
        self.url, self.db, self.select, self.every = url, db, select, every
        self.seen: dict[tuple[int, object], int] = {}
        self.swept: set[tuple[int, object]] = set()  # first seen by the final sweep
        self.newest: int | None = None
        self.stop_flag = threading.Event()
        self.queries = 0
        self.query_seconds: list[float] = []
        self.errors = 0

    def query(self, since: int | None) -> list[tuple[int, object]]:
        where = f" {'AND' if ' WHERE ' in self.select else 'WHERE'} time >= {since}" if since else ""
        params = {"q": self.select + where, "db": self.db, "epoch": "ns"}
        req = urllib.request.Request(f"{self.url}/query?{urllib.parse.urlencode(params)}",
                                     data=b"", method="POST")
        with urllib.request.urlopen(req, timeout=30) as resp:
            body = json.loads(resp.read())
        out: list[tuple[int, object]] = []
        for r in body.get("results", []):
            if "error" in r:
                if "database not found" in r["error"]:
                    return []
                raise RuntimeError(r["error"])
            for s in r.get("series", []):
                out.extend((row[0], row[1]) for row in s["values"])
        return out

    def poll_once(self, sweep: bool = False) -> None:
        since = None if sweep or self.newest is None else self.newest - MARGIN_NS
        t0 = time.monotonic()
        try:
            rows = self.query(since)
        except (OSError, RuntimeError, ValueError):
            self.errors += 1
            return
        seen = now_ns()
        self.queries += 1
        self.query_seconds.append(time.monotonic() - t0)
        for row in rows:
            if row not in self.seen:
                self.seen[row] = seen
                if sweep:
                    self.swept.add(row)
                if self.newest is None or row[0] > self.newest:
                    self.newest = row[0]

    def run(self) -> None:
        while not self.stop_flag.is_set():
            t0 = time.monotonic()
            self.poll_once()
            self.stop_flag.wait(max(0.0, self.every - (time.monotonic() - t0)))


class Alerts(threading.Thread):
    """Subscribes to ``bench/#``; keeps (receipt wall ns, payload) of each alert."""

    def __init__(self, host: str, port: int):
        super().__init__(daemon=True)
        self.host, self.port = host, port
        self.got: list[tuple[int, dict]] = []
        self.ready = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.task: asyncio.Task | None = None

    def run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.task = self.loop.create_task(self._listen())
        try:
            self.loop.run_until_complete(self.task)
        except asyncio.CancelledError:
            pass

    async def _listen(self) -> None:
        import aiomqtt

        async with aiomqtt.Client(self.host, self.port) as client:
            await client.subscribe(f"{TOPIC}/#", qos=1)
            self.ready.set()
            async for m in client.messages:
                self.got.append((now_ns(), json.loads(m.payload)))

    def stop(self) -> None:
        if self.task is not None:
            self.loop.call_soon_threadsafe(self.task.cancel)
        self.join(10)


def markers_in(path: Path) -> int:
    """``lag`` markers in the eventlog file."""
    dec = Decoder()
    n = 0
    with open(path, "rb") as f:
        while data := f.read(1 << 20):
            n += sum(1 for ev in dec.feed(data)
                     if ev.type == USER_MARKER and str(ev.fields[0]).startswith("lag "))
    dec.close()
    return n


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    k = min(len(s) - 1, max(0, int(round(q / 100 * len(s) + 0.5)) - 1))
    return s[k]


def summary(name: str, values: list[float]) -> str:
    if not values:
        return f"{name:<7} no samples"
    return (f"{name:<7} p50 {pct(values, 50):7.3f} s  p90 {pct(values, 90):7.3f} s  "
            f"p99 {pct(values, 99):7.3f} s  max {max(values):7.3f} s  "
            f"(mean {statistics.fmean(values):.3f} s, {len(values)} samples)")


def liveprof_command() -> list[str]:
    exe = shutil.which("liveprof", path=str(Path(sys.executable).parent)) or shutil.which("liveprof")
    return [exe] if exe else [sys.executable, "-m", "ingest.cli"]


def wait_for(predicate, limit: float, step: float = 0.2) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


TINY = ROOT / "tests" / "data" / "hello-ghc-8.6.5.eventlog"


def run_import(path: Path, url: str, db: str, env: dict) -> float:
    """CPU seconds (user + system) of ``liveprof import`` of ``path``, in one
    process (``--workers 1``: a large file's second process, ingest/split.py,
    adds its own start-up and reading, so it costs more CPU per MB, not less)."""
    proc = subprocess.Popen(liveprof_command() + ["import", str(path), "--influx-url", url,
                                                  "--database", db, "--workers", "1"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=env, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode:
        raise SystemExit(f"liveprof import failed ({proc.returncode}):\n{err}")
    return usage.ru_utime + usage.ru_stime


# serve under cProfile, timed by its own CPU time (wall time on a busy machine
# would charge each call with the time others ran)
PROFILED = """import cProfile, sys, time
from ingest.cli import main
out = sys.argv.pop(1)
prof = cProfile.Profile(time.process_time)
try:
    prof.runcall(main, sys.argv[1:])
except SystemExit:
    pass
finally:
    prof.dump_stats(out)
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="LiveSim run time (default 60)")
    ap.add_argument("--max-lag", type=float, default=None, help="serve --max-lag (default: its own)")
    ap.add_argument("--flush-interval", type=float, default=None,
                    help="LIVEPROF_INFLUX_FLUSH_INTERVAL (default: the sink's own)")
    ap.add_argument("--alert-ms", type=float, default=2.0,
                    help="mqtt pause_threshold_ms of the service (default 2: some major collections)")
    ap.add_argument("--gc", choices=("major", "all"), default="major", help="gc points polled")
    ap.add_argument("--poll", type=float, default=0.1, help="seconds between queries (default 0.1)")
    ap.add_argument("--serve-arg", action="append", default=[], help="extra serve argument")
    ap.add_argument("--no-import", action="store_true", help="skip the import of the same bytes")
    ap.add_argument("--profile", metavar="FILE", default=None,
                    help="run serve under cProfile, its stats written to FILE (slows it down)")
    args = ap.parse_args()

    livesim = livesim_binary()
    tmp = Path(tempfile.mkdtemp(prefix="liveprof-bench-live-"))
    influx, broker = InfluxServer(tmp / "influxd"), MosquittoServer(tmp / "mosquitto")
    db = "liveprof_bench_live"
    saved = tmp / "LiveSim.eventlog"
    serve = tee = alerts = None
    pollers: list[Poller] = []
    try:
        influx.start()
        broker.start()
        prog_fifo, serve_fifo = tmp / "prog.fifo", tmp / "serve.fifo"
        os.mkfifo(prog_fifo, 0o600)
        os.mkfifo(serve_fifo, 0o600)
        config = tmp / "liveprof.toml"
        config.write_text(f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\n'
                          f'topic_prefix = "{TOPIC}"\npause_threshold_ms = {args.alert_ms}\n')
        env = dict(os.environ, LIVEPROF_STATE_DIR=str(tmp / "state"))
        if args.flush_interval is not None:
            env["LIVEPROF_INFLUX_FLUSH_INTERVAL"] = str(args.flush_interval)
        base = [sys.executable, "-c", PROFILED, args.profile] if args.profile else liveprof_command()
        cmd = base + ["serve", "--config", str(config), "--fifo", str(serve_fifo),
                                    "--influx-url", influx.url, "--database", db]
        if args.max_lag is not None:
            cmd += ["--max-lag", str(args.max_lag)]
        cmd += args.serve_arg
        print("service:", " ".join(cmd[1:]),
              " ".join(f"{k}={env[k]}" for k in sorted(env) if k.startswith("LIVEPROF_INFLUX")))
        serve_log = open(tmp / "serve.log", "wb")
        serve = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=serve_log,
                                 stderr=subprocess.STDOUT, env=env, cwd=ROOT)

        def ready() -> bool:
            if serve.poll() is not None:
                raise SystemExit(f"liveprof serve exited:\n{(tmp / 'serve.log').read_text()}")
            dbs = [r[0] for s in influx.series("SHOW DATABASES", "") for r in s.get("values", [])]
            return db in dbs and "fifo" in (tmp / "serve.log").read_text(errors="replace")

        if not wait_for(ready, 30):
            raise SystemExit("liveprof serve did not get ready in 30 s")
        time.sleep(1.0)  # (settled: start-up done)
        serve_start_cpu = cpu_seconds(serve.pid)
        alerts = Alerts(broker.host, broker.port)
        alerts.start()
        alerts.ready.wait(10)
        gc_where = " WHERE \"kind\" = 'major'" if args.gc == "major" else ""
        pollers = [Poller(influx.url, db, 'SELECT "text" FROM "markers"', args.poll),
                   Poller(influx.url, db, f'SELECT "pause_ns" FROM "gc"{gc_where}', args.poll)]
        for p in pollers:
            p.start()
        # tee waits for LiveSim to open the pipe (GHC opens it read-write: it never waits)
        tee = subprocess.Popen(f'exec tee "{saved}" < "{prog_fifo}" > "{serve_fifo}"', shell=True)
        started = time.monotonic()
        sim = subprocess.run([str(livesim), f"{args.seconds:g}", "+RTS", "-N2", "-l",
                              f"-ol{prog_fifo}", "-RTS"], stderr=subprocess.PIPE,
                             timeout=args.seconds + 300)
        tee.wait(30)
        print(f"LiveSim ran {time.monotonic() - started:.1f} s: "
              f"{sim.stderr.decode(errors='replace').strip()} (exit {sim.returncode})")
        size = saved.stat().st_size
        want = markers_in(saved)
        markers, gcs = pollers
        settle = (args.max_lag if args.max_lag is not None else 10.0) + 20
        wait_for(lambda: len(markers.seen) >= want, settle)
        for p in pollers:
            p.stop_flag.set()
            p.join()
            p.poll_once(sweep=True)
        over = [(t, v) for t, v in gcs.seen if isinstance(v, int) and v > args.alert_ms * 1e6]
        wait_for(lambda: sum(1 for _, a in alerts.got if a.get("alert") == "gc_pause") >= len(over)
, 10)
        serve_cpu = cpu_seconds(serve.pid)
    finally:
        if alerts is not None:
            alerts.stop()
        for p in pollers:
            p.stop_flag.set()
        if tee is not None and tee.poll() is None:
            tee.kill()
        if serve is not None and serve.poll() is None:
            serve.send_signal(signal.SIGTERM)
            try:
                serve.wait(30)
            except subprocess.TimeoutExpired:
                serve.kill()
                serve.wait()

    import_cpu = import_start_cpu = None
    try:
        if not args.no_import:
            import_env = dict(os.environ, LIVEPROF_STATE_DIR=str(tmp / "state-import"))
            import_cpu = run_import(saved, influx.url, db + "_import", import_env)
            # its fixed cost: the same command on a log of a few kB
            import_start_cpu = run_import(TINY, influx.url, db + "_tiny", import_env)
    finally:
        influx.stop()
        broker.stop()

    marker_delays, anchor = [], []
    for (t, text), seen in markers.seen.items():
        if isinstance(text, str) and text.startswith("lag "):
            emitted = int(text.split()[1])
            marker_delays.append((seen - emitted) / 1e9)
            anchor.append(t - emitted)
    gc_delays = [(seen - (t + v)) / 1e9 for (t, v), seen in gcs.seen.items() if isinstance(v, int)]
    pause_alerts = [(at, a) for at, a in alerts.got if a.get("alert") == "gc_pause"]
    alert_delays = [(at - (a["time_ns"] + a["pause_ns"])) / 1e9 for at, a in pause_alerts]

    mb = size / 1e6
    print(f"eventlog: {mb:.1f} MB, {want} lag markers; {len(markers.seen)} marker points, "
          f"{len(gcs.seen)} {args.gc} gc points, {len(pause_alerts)} gc_pause alerts "
          f"(> {args.alert_ms:g} ms; {len(over)} such {args.gc} gc points)")
    print(f"queries: {sum(p.queries for p in pollers)}, median "
          f"{statistics.median([s for p in pollers for s in p.query_seconds]) * 1e3:.0f} ms, "
          f"{sum(p.errors for p in pollers)} errors; first seen by the final sweep: "
          f"{len(markers.swept)} markers, {len(gcs.swept)} gc points")
    if anchor:
        print(f"anchor check: marker point time - marker value: median "
              f"{statistics.median(anchor) / 1e3:.1f} us")
    print(summary("marker", marker_delays))
    print(summary("gc", gc_delays))
    print(summary("alert", alert_delays))
    line = (f"cpu: serve {serve_cpu:.1f} s = {serve_cpu / mb:.3f} s/MB ({mb / max(serve_cpu, 1e-9):.1f} "
            f"MB/s; net of its start-up {(serve_cpu - serve_start_cpu) / mb:.3f} s/MB)")
    if import_cpu is not None:
        line += (f"; import {import_cpu:.1f} s = {import_cpu / mb:.3f} s/MB "
                 f"({mb / max(import_cpu, 1e-9):.1f} MB/s); serve/import {serve_cpu / import_cpu:.2f}")
        # net of each command's start-up (serve: its CPU once ready, before the
        # program ran; import: the same import of a log of a few kB): what a MB costs
        # on a long run, where the start-up is spread over hundreds of MB
        assert import_start_cpu is not None  # (measured with import_cpu)
        s_net, i_net = serve_cpu - serve_start_cpu, import_cpu - import_start_cpu
        line += (f"\ncpu net of start-up (serve {serve_start_cpu:.2f} s, import "
                 f"{import_start_cpu:.2f} s): serve {s_net / mb:.3f} s/MB; import "
                 f"{i_net / mb:.3f} s/MB; serve/import {s_net / max(i_net, 1e-9):.2f}")
    print(line)
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
