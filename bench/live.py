"""Live lag: from an event entering a named pipe to its point being queryable.

usage: python bench/live.py [FILE] [--speed X] [--chunk BYTES] [--poll SECONDS]
                            [--max-lag SECONDS] [--window SECONDS]
                            [--flush-interval SECONDS] [--serve-arg ARG ...]

Starts a private ``influxd`` (tests/servers.py ``InfluxServer``) in a temp dir
and ``liveprof serve --fifo <tmp>/events.fifo --influx-url ... --database ...``
as a subprocess (its own state dir under the temp dir, otherwise the defaults:
1 s sink batches, 1 s windows, 10 s max lag), then writes FILE (default the
corpus ``gc-heap.N2.l.eventlog``) into the FIFO, opened ``O_RDWR`` as GHC
opens its ``-ol`` file, in ``--chunk`` byte pieces paced by the log's own
timeline: a chunk is written when the wall clock since the first chunk reaches
(the largest event time in the log up to the end of that chunk - the first
event time) / ``--speed``.  A block whose events are all older than what was
already written goes out at once (the RTS writes a capability's buffer when it
is full, so its older events come in a burst, as here).

For every chunk the script records the wall time its write returned and the
eventlog time it reached.  Meanwhile it polls InfluxDB every ``--poll``
seconds for the ``gc`` points (one per collection, stamped with the
collection's start) and records when each timestamp was first seen.  The
collections are found in the log by this script itself (``protocol.Decoder``:
a collection opens with a ``StartGC`` while no capability is in GC and closes
with the ``EndGC`` of the last capability in it, as docs/schema.md says); a
point is matched to its collection by timestamp: Unix = ``WallClockTime``
sample + (start - its eventlog time) when the stream's clock came from it,
otherwise the constant offset the stream's fallback clock used (found as the
offset that makes the most timestamps match exactly; printed).

  lag = (wall time the point was first seen in a query)
        - (wall time the write of the chunk holding its collection's last
           EndGC returned)

p50/p90/p99/max lag and the number of points are printed.

Where the lag comes from (pipe -> decode -> merge -> window -> sink -> InfluxDB):

  pipe      the FIFO source reads whatever is in the pipe (64 KiB reads): well
            under a millisecond once the chunk is written.
  decode    synchronous, per read: about 25 MB/s on this machine, i.e. a few ms
            for a 64 KiB read; it adds up only if the writer outpaces it (then
            the pipe fills and the writer blocks, which shows as lag too).
  merge     the live merge (ingest/derive/order.py, docs/schema.md "Order")
            releases an event only once every capability has shown events past
            it (the watermark, minus 50 ms slack), or once it is ``--max-lag``
            (default 10 s of eventlog time) behind the newest event.  The RTS
            writes each capability's buffer as a block when it fills (2 MB,
            hundreds of ms of a busy program) and the global buffer at exit, so
            a collection closed in one capability's block waits until the
            *other* capability's block covering the same time arrives.  The
            watermark is trusted only when the stream has block markers and no
            capability appeared within the last ``--max-lag``: ``Startup``
            announces every capability at once, so a capability that has not
            shown its first block yet holds the watermark at minus infinity,
            and a stream (the global buffer, cap None) that first appears late
            makes the merge fall back to the lag bound for the next
            ``--max-lag`` of eventlog time.  Startup announces the caps at
            eventlog time ~0, so for the first ``--max-lag`` (10 s) of every
            stream the watermark is not trusted at all, and an event leaves the
            merge only when it is 10 s (/ speed, in wall time) behind the
            newest, or when the merge's memory bound (500,000 held events)
            releases the oldest half early.  Every corpus log is shorter than
            10 s of eventlog time, so at the default max lag *none* of them is
            ever merged by watermark: small logs come out at the end of the
            stream, big.eventlog (about 1M events/s) in bursts set by the
            memory bound, roughly every 0.5-1.5 s of its eventlog time
            (``--speed 0.25`` makes that 4x longer in wall time).  That bound,
            not the 1 s batches, is the lag's worst case; ``--max-lag 1``
            (the service's ``LIVEPROF_DERIVE_MAX_LAG``, no serve flag) lets
            the watermark work after the first second.
  derive    a gc point is made when its collection has closed and the leader's
            GCStatsGHC came (or the next collection started); the pipeline
            also holds every point until the clock and identity are settled
            (WallClockTime, pid and program seen, or 1 s of eventlog time or
            200,000 events after the first event): a one-off wait at the start.
  window    per-window measurements wait for their window (1 s) to end; gc
            points are per collection and do not.
  sink      a point waits for its batch: 5000 lines or ``flush_interval``
            (1 s) after the oldest line of the batch was buffered, whichever
            comes first; then one gzip'd HTTP /write.
  InfluxDB  a point is queryable once /write has answered (the WAL and the
            in-memory cache are queried directly): a few ms to tens of ms.
  poll      this script sees a point up to ``--poll`` (100 ms) plus one query
            after it became queryable.

To split the lag, the script also replays the same chunks through liveprof's
own ``Decoder`` and live ``Pipeline`` in-process before the run (no pacing, no
InfluxDB): the chunk at which each gc point comes out of the pipeline is the
*data* lag (decode + merge + derive: how long the point must wait for later
bytes, whatever the CPU speed), printed as its own p50/p90/p99/max in wall
seconds of the paced schedule.  The rest of the measured lag is the sink batch,
InfluxDB, polling, and CPU (two cores shared by influxd, liveprof and this
script).

This script only measures and prints; it asserts nothing about speed.
"""

from __future__ import annotations

import argparse
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
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from protocol import Decoder  # noqa: E402
from tests.servers import InfluxServer  # noqa: E402

DEFAULT_FILE = "/work/shared/corpus/eventlogs/gc-heap.N2.l.eventlog"
START_GC, END_GC, WALL_CLOCK_TIME, BLOCK_MARKER = 9, 10, 43, 18


@dataclass
class Plan:
    chunks: list[bytes] = field(default_factory=list)
    reached: list[int] = field(default_factory=list)  # eventlog time reached by chunk i
    starts: list[int] = field(default_factory=list)  # collection start (eventlog ns)
    closing: list[int] = field(default_factory=list)  # chunk of the collection's last EndGC
    anchor: int | None = None  # Unix ns of eventlog time 0 from WallClockTime
    anchor_chunk: int | None = None


def plan(path: str, chunk: int) -> Plan:
    """Cut the file into chunks; find the collections and their closing chunk."""
    p = Plan()
    dec = Decoder()
    gc_events = []  # (time, order, type, cap, chunk index)
    reached = None
    with open(path, "rb") as f:
        while data := f.read(chunk):
            i = len(p.chunks)
            p.chunks.append(data)
            for ev in dec.feed(data):
                t = ev.time
                if ev.type != BLOCK_MARKER and (reached is None or t > reached):
                    reached = t
                if ev.type == START_GC or ev.type == END_GC:
                    gc_events.append((t, len(gc_events), ev.type, ev.cap, i))
                elif ev.type == WALL_CLOCK_TIME and p.anchor is None:
                    _capset, sec, nsec = ev.fields
                    p.anchor = sec * 1_000_000_000 + nsec - t
                    p.anchor_chunk = i
            p.reached.append(reached if reached is not None else 0)
    dec.close()
    gc_events.sort()
    in_gc: dict = {}
    start = last_chunk = None
    for t, _, ty, cap, i in gc_events:
        if ty == START_GC:
            if not in_gc:
                start, last_chunk = t, i
            in_gc[cap] = in_gc.get(cap, 0) + 1
            last_chunk = max(last_chunk, i)
        elif in_gc.get(cap):
            in_gc[cap] -= 1
            if not in_gc[cap]:
                del in_gc[cap]
            last_chunk = max(last_chunk, i)
            if not in_gc:
                p.starts.append(start)
                p.closing.append(last_chunk)
    return p


def match(timestamps, starts: list[int], anchor: int | None) -> tuple[dict, int, str]:
    """timestamp -> collection index; the offset used and where it came from."""
    by_start = {s: k for k, s in enumerate(starts)}
    ts = sorted(timestamps)
    if not ts:
        return {}, 0, "none"
    candidates = []
    if anchor is not None:
        candidates.append((anchor, "WallClockTime"))
    for s in starts[:64]:
        candidates.append((ts[0] - s, "fallback clock"))
    best = (-1, 0, "none")
    for off, how in candidates:
        n = sum(1 for x in ts if x - off in by_start)
        if n > best[0]:
            best = (n, off, how)
        if n == len(ts):
            break
    _, off, how = best
    return {x: by_start[x - off] for x in ts if x - off in by_start}, off, how


def simulate(p: Plan, max_lag: float, window: float) -> tuple[list[int], object]:
    """Replay the chunks through liveprof's live Pipeline in-process; for each
    collection, the chunk after which its gc point came out (-1: at close)."""
    from ingest.derive.base import DeriveSettings
    from ingest.derive.order import OrderSettings
    from ingest.derive.pipeline import Identity, Pipeline
    pipe = Pipeline(DeriveSettings(window_ns=max(1, int(window * 1e9))),
                    Identity(host="bench", start_wall_ns=0),
                    order=OrderSettings(live=True, max_lag_ns=int(max_lag * 1e9)))
    dec = Decoder(only=pipe.wants)
    out: dict[int, int] = {}
    for i, data in enumerate(p.chunks):
        for pt in pipe.feed(dec.feed(data)):
            if pt.measurement == "gc":
                out.setdefault(pt.time, i)
    dec.close()
    last = len(p.chunks) - 1
    for pt in pipe.close():
        if pt.measurement == "gc":
            out.setdefault(pt.time, last)
    m, _, _ = match(out, p.starts, p.anchor)
    chunk_of = [-1] * len(p.starts)
    for ts, k in m.items():
        chunk_of[k] = out[ts]
    return chunk_of, pipe.stats


class Poller(threading.Thread):
    """Query the gc points every ``every`` seconds; first-seen times by timestamp."""

    def __init__(self, url: str, db: str, every: float):
        super().__init__(daemon=True)
        self.url, self.db, self.every = url, db, every
        self.seen: dict[int, float] = {}
        self.stop_flag = threading.Event()
        self.queries = 0
        self.query_seconds: list[float] = []
        self.errors = 0
        self.margin = 2_000_000_000  # re-read this far (ns) below the newest timestamp seen

    def query(self, since: int | None) -> list[int]:
        where = f" WHERE time >= {since}" if since is not None else ""
        q = f'SELECT "pause_ns" FROM "gc"{where}'
        params = {"q": q, "db": self.db, "epoch": "ns"}
        req = urllib.request.Request(f"{self.url}/query?{urllib.parse.urlencode(params)}",
                                     data=b"", method="POST")
        with urllib.request.urlopen(req, timeout=30) as resp:
            body = json.loads(resp.read())
        out = []
        for r in body.get("results", []):
            if "error" in r:
                if "database not found" in r["error"]:
                    return []
                raise RuntimeError(r["error"])
            for s in r.get("series", []):
                out.extend(row[0] for row in s["values"])
        return out

    def poll_once(self, full: bool = False) -> None:
        since = None if full or not self.seen else max(self.seen) - self.margin
        t0 = time.monotonic()
        try:
            rows = self.query(since)
        except (OSError, RuntimeError, ValueError):
            self.errors += 1
            return
        now = time.monotonic()
        self.queries += 1
        self.query_seconds.append(now - t0)
        for ts in rows:
            if ts not in self.seen:
                self.seen[ts] = now

    def run(self) -> None:
        while not self.stop_flag.is_set():
            t0 = time.monotonic()
            self.poll_once()
            self.stop_flag.wait(max(0.0, self.every - (time.monotonic() - t0)))


def write_paced(fifo: str, p: Plan, speed: float) -> tuple[list[float], float]:
    """Write every chunk on its schedule; the monotonic time each write returned,
    and the worst lateness of a write behind its schedule (a full pipe)."""
    fd = os.open(fifo, os.O_RDWR)  # as GHC: never waits for a reader
    written = []
    late = 0.0
    try:
        t0 = time.monotonic()
        first = p.reached[0]
        for data, reached in zip(p.chunks, p.reached):
            due = t0 + (reached - first) / 1e9 / speed
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
            done = time.monotonic()
            late = max(late, done - due)
            written.append(done)
    finally:
        # keep the write end until the reader has drained the pipe: closing it
        # would not end the stream anyway (the service holds its own write end)
        time.sleep(0.2)
        os.close(fd)
    return written, late


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    k = min(len(s) - 1, max(0, int(round(q / 100 * len(s) + 0.5)) - 1))
    return s[k]


def summary(name: str, values: list[float]) -> str:
    if not values:
        return f"{name}: no points"
    return (f"{name}: p50 {pct(values, 50):.3f} s  p90 {pct(values, 90):.3f} s  "
            f"p99 {pct(values, 99):.3f} s  max {max(values):.3f} s  "
            f"(mean {statistics.fmean(values):.3f} s, {len(values)} points)")


def liveprof_command() -> list[str]:
    exe = shutil.which("liveprof", path=str(Path(sys.executable).parent)) or shutil.which("liveprof")
    return [exe] if exe else [sys.executable, "-m", "ingest.cli"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("file", nargs="?", default=DEFAULT_FILE)
    ap.add_argument("--speed", type=float, default=1.0,
                    help="eventlog seconds per wall second (default 1: real time)")
    ap.add_argument("--chunk", type=int, default=4096, help="bytes per write (default 4096)")
    ap.add_argument("--poll", type=float, default=0.1, help="seconds between queries (default 0.1)")
    ap.add_argument("--max-lag", type=float, default=None,
                    help="LIVEPROF_DERIVE_MAX_LAG for the service (default: its own, 10 s)")
    ap.add_argument("--window", type=float, default=None, help="serve --window (default 1 s)")
    ap.add_argument("--flush-interval", type=float, default=None,
                    help="LIVEPROF_INFLUX_FLUSH_INTERVAL (default: the sink's own, 1 s)")
    ap.add_argument("--serve-arg", action="append", default=[],
                    help="extra argument for liveprof serve (repeatable)")
    ap.add_argument("--settle", type=float, default=None,
                    help="seconds to wait for the last points after the writer is done "
                         "(default max lag + 10)")
    ap.add_argument("--no-simulate", action="store_true",
                    help="skip the in-process replay that splits the data lag out")
    args = ap.parse_args()

    max_lag = args.max_lag if args.max_lag is not None else 10.0
    window = args.window if args.window is not None else 1.0
    p = plan(args.file, args.chunk)
    size = sum(map(len, p.chunks))
    span = (p.reached[-1] - p.reached[0]) / 1e9
    print(f"file {args.file}: {size / 1e6:.1f} MB, {span:.2f} s of eventlog time, "
          f"{len(p.starts)} collections; {len(p.chunks)} chunks of {args.chunk} B at speed "
          f"{args.speed:g} ({span / args.speed:.2f} s of writing, "
          f"{size / 1e6 / max(span / args.speed, 1e-9):.1f} MB/s)")
    if p.anchor_chunk is not None:
        print(f"WallClockTime in chunk {p.anchor_chunk} of {len(p.chunks)} "
              f"(byte {p.anchor_chunk * args.chunk})")
    sim = None
    if not args.no_simulate:
        sim, st = simulate(p, max_lag, window)
        print(f"in-process replay (max lag {max_lag:g} s): {st.late_events} late events, "
              f"{st.evicted_events} released early by the merge's memory bound; "
              f"{sum(1 for c in sim if c == len(p.chunks) - 1)} gc points only at the end "
              f"of the stream")

    tmp = Path(tempfile.mkdtemp(prefix="liveprof-bench-live-"))
    server = InfluxServer(tmp / "influxd")
    serve = None
    poller = None
    db = "liveprof_bench_live"
    try:
        server.start()
        fifo = str(tmp / "events.fifo")
        os.mkfifo(fifo, 0o600)
        env = dict(os.environ, LIVEPROF_STATE_DIR=str(tmp / "state"))
        if args.max_lag is not None:
            env["LIVEPROF_DERIVE_MAX_LAG"] = str(args.max_lag)
        if args.flush_interval is not None:
            env["LIVEPROF_INFLUX_FLUSH_INTERVAL"] = str(args.flush_interval)
        cmd = liveprof_command() + ["serve", "--fifo", fifo, "--influx-url", server.url,
                                    "--database", db]
        if args.window is not None:
            cmd += ["--window", str(args.window)]
        cmd += args.serve_arg
        print("service:", " ".join(cmd), " ".join(f"{k}={env[k]}" for k in sorted(env)
                                                  if k.startswith("LIVEPROF_")))
        serve_log = open(tmp / "serve.log", "wb")
        serve = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=serve_log,
                                 stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        # ready when the database exists (setup ran) and the service is reading
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if serve.poll() is not None:
                raise SystemExit(f"liveprof serve exited:\n{(tmp / 'serve.log').read_text()}")
            dbs = [r[0] for s in server.series("SHOW DATABASES", None) for r in s.get("values", [])]
            if db in dbs and "fifo" in (tmp / "serve.log").read_text(errors="replace"):
                break
            time.sleep(0.1)
        time.sleep(0.5)
        poller = Poller(server.url, db, args.poll)
        poller.start()
        written, worst_late = write_paced(fifo, p, args.speed)
        t_end = written[-1]
        want = len(p.starts)
        settle = args.settle if args.settle is not None else max_lag / args.speed + 10
        deadline = time.monotonic() + settle
        while time.monotonic() < deadline and len(poller.seen) < want:
            time.sleep(0.2)
        poller.stop_flag.set()
        poller.join()
        poller.poll_once(full=True)  # count every point, even one the window missed
    finally:
        if serve is not None and serve.poll() is None:
            serve.send_signal(signal.SIGTERM)
            try:
                serve.wait(15)
            except subprocess.TimeoutExpired:
                serve.kill()
                serve.wait()
        server.stop()

    m, off, how = match(poller.seen, p.starts, p.anchor)
    lags, data_lags, rest, tail = [], [], [], []
    for ts, k in m.items():
        lag = poller.seen[ts] - written[p.closing[k]]
        lags.append(lag)
        if sim is not None and sim[k] >= 0:
            d = written[sim[k]] - written[p.closing[k]]
            data_lags.append(d)
            rest.append(lag - d)
        tail.append((lag, k))
    print(f"writer: last chunk written {t_end - written[0]:.2f} s after the first "
          f"(schedule {span / args.speed:.2f} s; worst write {worst_late * 1e3:.0f} ms "
          f"behind schedule)")
    print(f"poller: {poller.queries} queries, median {statistics.median(poller.query_seconds) * 1e3:.0f} ms"
          f" each, {poller.errors} errors" if poller.query_seconds else "poller: no queries")
    print(f"points: {len(poller.seen)} gc points in InfluxDB, {len(m)} matched to the log's "
          f"{len(p.starts)} collections (clock: {how}, offset {off})")
    print(summary("lag (pipe -> queryable)", lags))
    if data_lags:
        print(summary("  of which data lag (decode+merge+derive, replayed in-process)", data_lags))
        if rest:
            print(summary("  rest (sink batch + InfluxDB + poll + CPU)", rest))
    if tail:
        tail.sort(reverse=True)
        worst = ", ".join(
            f"{lag:.2f} s (GC at {p.starts[k] / 1e9:.3f} s, closed in chunk {p.closing[k]}"
            + (f", out of the pipeline after chunk {sim[k]}" if sim is not None else "") + ")"
            for lag, k in tail[:3])
        print(f"worst: {worst}")
    print(f"merge lag bound: --max-lag {max_lag:g} s of eventlog time = "
          f"{max_lag / args.speed:.2f} s of wall time at speed {args.speed:g}")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
