"""Throughput of ``liveprof derive`` on one file: eventlog bytes to line protocol.

usage: python bench/derive.py FILE [--chunk BYTES] [--window SECONDS]
                              [--measurements LIST] [--live] [--repeat N]
                              [--pure-python] [--no-cli]

Runs in a fresh Python subprocess per repeat (so peak RSS is its own): read
FILE in chunks (after the CLI's quick pre-scan for the clock, start-up events
and release plan; in the plan's order, as the CLI reads it),
``Decoder(only=pipeline.wants).feed``, ``Pipeline.feed``, ``point.lines``
(compiled ``Point.to_line``) of every batch, written to /dev/null; then ``close()``;
with the cyclic GC off, as the CLI runs (``tune_gc``).
Prints MB/s (1 MB = 10**6 bytes of FILE; best and median of the repeats, by
wall and by CPU time: other work on the machine shows as the difference),
events decoded (those the pipeline wants), points, points per 100 events of
the whole log (its total event count, counted separately, untimed), wall and
CPU time, peak RSS and the resident set at 10/25/50/75/100% of the file read
(flat memory: the later figures stay near the early ones), the most events the
time-order merge held after a chunk (and whether the pre-scan gave it a release
plan), and a per-stage split (decode / derive / render) of the best run.

Each repeat also times, in the same run: ghc-events' CountEvents on the same
file (bench/baseline.py finds it), and, unless ``--no-cli``, the command
itself, ``liveprof derive FILE > /dev/null`` from spawn to exit (Python start
and imports included), as it runs by default: a large file in two processes
(ingest/split.py; ``--workers 1`` or ``2`` is passed on to it); printed as
MB/s, CPU seconds of both processes, and as the ratio of wall times to
CountEvents', best to best and median to median.  Its peak RSS is the sum
over its processes (``TreePeak``: each one's VmHWM, sampled every 50 ms, the
command's own also from ``os.wait4``), and each process's.  ``--pure-python`` runs all
of it with ``LIVEPROF_PURE_PYTHON=1`` (the reference derivers and decoder).

Targets of issue 4: at least 25 MB/s and at most 5 points per 100 events at
default settings on a real log of 20 MB or more; peak RSS flat in file size.
Issue 16: ``liveprof derive`` to /dev/null at 60 MB/s; peak RSS at most 120 MB.
This script only measures and prints.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import baseline

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ingest.commands.derive import tune_gc  # noqa: E402
from ingest.counts import decoded_events  # noqa: E402
from ingest.derive.base import DeriveSettings  # noqa: E402
from ingest.derive.order import OrderSettings  # noqa: E402
from ingest.derive.pipeline import Identity, Pipeline  # noqa: E402
from ingest.derive.point import lines  # noqa: E402
from ingest.session import scan  # noqa: E402
from protocol import Decoder  # noqa: E402

BLOCK_MARKER = 18


def _measure(path: str, chunk: int, window: float, measurements, live: bool) -> dict:
    size = os.path.getsize(path)
    clock = time.perf_counter
    c0 = time.process_time()
    w0 = clock()
    found = scan(path)  # as `liveprof derive FILE` does
    t_pre = clock() - w0
    pipe = Pipeline(DeriveSettings(window_ns=int(window * 1e9)),
                    Identity(host="bench", start_wall_ns=found.start_wall_ns),
                    derivers=measurements, order=OrderSettings(live=live),
                    preamble=found.preamble, plan=found.plan)
    tune_gc()  # as `liveprof derive` does
    dec = Decoder(only=pipe.wants)
    t_dec = t_der = t_out = 0.0
    n_points = n_events = 0
    read = held = 0
    curve = []  # (fraction of the file read, resident set now)
    page = os.sysconf("SC_PAGE_SIZE")
    # the file in the release plan's order, as Session.read gives it, if the merge follows one
    with open(path, "rb") as f, open(os.devnull, "w") as out, open("/proc/self/statm") as statm:
        source = pipe.plan.chunks(chunk) if pipe.plan is not None else iter(
            lambda: f.read(chunk), b"")
        while True:
            a = clock()
            data = next(source, b"")
            if not data:
                break
            events = dec.feed(data)
            b = clock()
            points = pipe.feed(events)
            c = clock()
            if points:
                out.write("\n".join(lines(points)) + "\n")
            d = clock()
            t_dec += b - a
            t_der += c - b
            t_out += d - c
            n_events += decoded_events(events, pipe.wants)
            n_points += len(points)
            read += len(data)
            held = max(held, pipe.merge.held)
            statm.seek(0)
            curve.append((read / size, int(statm.read().split()[1]) * page))
        dec.close()
        b = clock()
        points = pipe.close()
        c = clock()
        out.write("\n".join(lines(points)) + "\n")
        d = clock()
        t_der += c - b
        t_out += d - c
        n_points += len(points)
    wall = clock() - w0
    cpu = time.process_time() - c0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"bytes": size, "wall_s": wall, "cpu_s": cpu, "events_decoded": n_events,
            "points": n_points, "peak_rss": rss, "decode_s": t_dec, "derive_s": t_der,
            "render_s": t_out, "prescan_s": t_pre, "late": pipe.stats.late_events,
            "evicted": pipe.stats.evicted_events, "curve": curve,
            "held": held, "planned": found.plan is not None}


def rss_curve(curve: list) -> str:
    """The resident set at 10%, 25%, 50%, 75% and 100% of the file read."""
    if not curve:
        return "(no samples)"
    parts = []
    for frac in (0.10, 0.25, 0.50, 0.75, 1.0):
        rss = next((r for f, r in curve if f >= frac), curve[-1][1])
        parts.append(f"{int(frac * 100)}%:{rss / 1e6:.0f}")
    return " ".join(parts)


class TreePeak:
    """The peak RSS (VmHWM) of a process and of its children, sampled from
    /proc every ``every`` seconds until ``stop``: ``ru_maxrss`` of a waited
    process is the largest of it and its children, not their sum.  A child's
    last sample is at most ``every`` before its end (VmHWM only grows).  The
    sum of RSS counts the pages both share (the interpreter's and the
    libraries' code) twice; ``pss`` counts them once."""

    def __init__(self, pid: int, every: float = 0.05):
        self.pid, self.every = pid, every
        self.peaks: dict[int, int] = {}
        self.pss = 0    # the largest sum of their proportional set sizes, sampled
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _hwm(self, pid: int) -> None:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        kb = int(line.split()[1]) * 1024
                        self.peaks[pid] = max(self.peaks.get(pid, 0), kb)
                        return
        except (OSError, ValueError):
            return

    @staticmethod
    def _pss(pid: int) -> int:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        return int(line.split()[1]) * 1024
        except (OSError, ValueError):
            pass
        return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self._hwm(self.pid)
            try:
                with open(f"/proc/{self.pid}/task/{self.pid}/children") as f:
                    children = [int(c) for c in f.read().split()]
            except OSError:
                children = []
            for child in children:
                self._hwm(child)
            # (the same sample of each: shared pages, the interpreter's and
            # libraries' code above all, counted once, split between them)
            self.pss = max(self.pss, sum(self._pss(p) for p in (self.pid, *children)))
            self._stop.wait(self.every)

    def stop(self, own_maxrss: int = 0) -> list[int]:
        """Each process's peak in bytes, the command's first (``own_maxrss``:
        its ``ru_maxrss`` in bytes, when it is the larger: the last samples)."""
        self._stop.set()
        self._thread.join()
        own = self.peaks.pop(self.pid, 0)
        children = list(self.peaks.values())
        if not children:
            own = max(own, own_maxrss)
        return [own, *children]


def _cli(path: str, env: dict, args: list[str]) -> dict:
    """``liveprof derive FILE > /dev/null``, timed from spawn to exit."""
    cmd = [sys.executable, "-m", "ingest.cli", "derive", path, *args]
    t0 = time.perf_counter()
    with open(os.devnull, "w") as null:
        proc = subprocess.Popen(cmd, stdout=null, env=env, cwd=ROOT)
        peak = TreePeak(proc.pid)
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    peaks = peak.stop(usage.ru_maxrss * 1024)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"liveprof derive exited with status {os.waitstatus_to_exitcode(status)}")
    return {"seconds": seconds, "cpu": usage.ru_utime + usage.ru_stime,
            "peak_rss": sum(peaks), "peaks": peaks, "pss": peak.pss}


def rss_line(peaks: list[int], pss: int = 0) -> str:
    """``"105 MB (60 + 45, 2 processes; PSS 95 MB)"``: the sum over a
    command's processes, each, and the largest sum of their PSS sampled."""
    each = " + ".join(f"{p / 1e6:.0f}" for p in peaks)
    if len(peaks) < 2:
        return f"{sum(peaks) / 1e6:.0f} MB"
    return (f"{sum(peaks) / 1e6:.0f} MB ({each}, {len(peaks)} processes; their PSS "
            f"{pss / 1e6:.0f} MB at most, shared pages counted once)")


def _total_events(path: str) -> int:
    n = 0
    dec = Decoder()
    with open(path, "rb") as f:
        while data := f.read(1 << 20):
            n += sum(1 for ev in dec.feed(data) if ev.type != BLOCK_MARKER)
    return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("file")
    ap.add_argument("--chunk", type=int, default=1 << 20)
    ap.add_argument("--window", type=float, default=1.0)
    ap.add_argument("--measurements", default=None)
    ap.add_argument("--live", action="store_true")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--pure-python", action="store_true",
                    help="LIVEPROF_PURE_PYTHON=1: the reference derivers and decoder")
    ap.add_argument("--no-cli", action="store_true", help="do not time `liveprof derive` itself")
    ap.add_argument("--workers", choices=("auto", "1", "2"), default=None,
                    help="passed on to `liveprof derive` (default: its own, auto)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    names = args.measurements.split(",") if args.measurements else None
    if args.child:
        print(json.dumps(_measure(args.file, args.chunk, args.window, names, args.live)))
        return 0
    env = dict(os.environ)
    if args.pure_python:
        env["LIVEPROF_PURE_PYTHON"] = "1"
    cli_args = ["--window", str(args.window)] + (["--live"] if args.live else ["--whole"])
    if args.measurements:
        cli_args += ["--measurements", args.measurements]
    if args.workers:
        cli_args += ["--workers", args.workers]
    counter = baseline.find()
    runs, clis, bases = [], [], []
    for _ in range(args.repeat):  # interleaved, so that other load weighs on all three
        cmd = [sys.executable, __file__, args.file, "--child", "--chunk", str(args.chunk),
               "--window", str(args.window)]
        if args.measurements:
            cmd += ["--measurements", args.measurements]
        if args.live:
            cmd.append("--live")
        runs.append(json.loads(subprocess.run(cmd, check=True, capture_output=True,
                                              text=True, env=env).stdout))
        if not args.no_cli:
            clis.append(_cli(args.file, env, cli_args))
        if counter:
            bases.append(baseline.run(counter, args.file))
    best = min(runs, key=lambda r: r["wall_s"])
    total = _total_events(args.file)
    mb = best["bytes"] / 1e6
    print(f"file              {args.file} ({mb:.1f} MB, {total:,} events)")
    print(f"settings          window {args.window}s, measurements "
          f"{args.measurements or 'all'}, {'live' if args.live else 'whole'} order, "
          f"chunk {args.chunk} B, {'pure Python' if args.pure_python else 'compiled'} derivers")
    wall = sorted(mb / r["wall_s"] for r in runs)
    cpu = sorted(mb / r["cpu_s"] for r in runs)
    print(f"throughput        {wall[-1]:.1f} MB/s wall best of {len(runs)}, "
          f"{statistics.median(wall):.1f} median; cpu {cpu[-1]:.1f} best, "
          f"{statistics.median(cpu):.1f} median")
    print(f"time split        prescan {best['prescan_s']:.2f}s, decode {best['decode_s']:.2f}s, "
          f"derive {best['derive_s']:.2f}s, "
          f"render {best['render_s']:.2f}s (total {best['wall_s']:.2f}s)")
    print(f"events decoded    {best['events_decoded']:,} (of {total:,}; the rest skipped); "
          f"{total / best['wall_s'] / 1e6:.2f} M events/s of the log, "
          f"{best['events_decoded'] / best['wall_s'] / 1e6:.2f} M decoded/s")
    print(f"points            {best['points']:,} = {100 * best['points'] / max(total, 1):.2f} "
          f"per 100 events, {best['points'] / best['wall_s']:,.0f} points/s")
    print(f"late / evicted    {best['late']:,} / {best['evicted']:,}; most held by the merge "
          f"after a chunk {best['held']:,} ({'with' if best['planned'] else 'no'} release plan)")
    rss = ", ".join(f"{r['peak_rss'] / 1e6:.0f}" for r in runs)
    print(f"peak RSS          {best['peak_rss'] / 1e6:.0f} MB (runs: {rss})")
    print(f"RSS curve         {rss_curve(best['curve'])} (MB resident when that much of the file "
          f"was read, best run)")
    if clis:
        secs = [c["seconds"] for c in clis]
        cpus = sorted(c["cpu"] for c in clis)
        top = max(clis, key=lambda c: c["peak_rss"])
        print(f"liveprof derive   FILE > /dev/null{' --workers ' + args.workers if args.workers else ''}"
              f", spawn to exit: {mb / min(secs):.1f} MB/s best, "
              f"{mb / statistics.median(secs):.1f} median ({min(secs):.2f} s best, "
              f"{statistics.median(secs):.2f} median; CPU of its processes {cpus[0]:.2f} s best, "
              f"{statistics.median(cpus):.2f} median); peak RSS {rss_line(top['peaks'], top['pss'])}")
    if bases:
        secs = [b["seconds"] for b in bases]
        print(f"CountEvents       {min(secs):.2f} s best, {statistics.median(secs):.2f} median "
              f"({mb / min(secs):.1f} MB/s; {bases[0]['events']:,} events; peak RSS "
              f"{max(b['peak_rss'] for b in bases) / 1e6:.0f} MB)")
        print(baseline.ratio_line("derive in-process", [r["wall_s"] for r in runs], secs))
        if clis:
            print(baseline.ratio_line("liveprof derive", [c["seconds"] for c in clis], secs))
    else:
        print(baseline.missing())
    return 0


if __name__ == "__main__":
    sys.exit(main())
