"""Throughput of the eventlog decoder on one file.

usage: python bench/decode.py FILE [--chunk BYTES] [--repeat N] [--pure-python]
                               [--countevents PATH]

Two modes, each run in a fresh Python subprocess so that its peak RSS is its own:

  decode  FILE read in chunks, ``Decoder().feed(chunk)`` for each one: every
          event decoded with all its fields, and counted
  dump    the same, plus ``event_json(ev)`` for every event but the block
          markers (type 18), written one per line to /dev/null

For each mode: MB/s (1 MB = 10**6 bytes of FILE), events/s and peak RSS.  The
clock starts after the imports and covers reading the file, decoding and (dump)
rendering; the CPU time of the process is printed too (it is less disturbed
by other load on the machine).  ``--countevents`` also times the ghc-events CountEvents binary
(bench/make_log.sh builds it) on the same file, best of 3 runs, and prints how
many times longer our decode takes.

The decoder uses its C record loop when ``protocol/eventlog/_speedups`` is
compiled; ``--pure-python`` sets LIVEPROF_PURE_PYTHON=1 in the measured
processes to time the pure Python loop instead.  The loop used is printed.

This script only measures and prints; it asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

try:
    from protocol.eventlog import Decoder, event_json
except ImportError:  # not installed: use the working tree
    sys.path.insert(0, str(ROOT))
    from protocol.eventlog import Decoder, event_json

BLOCK_MARKER = 18
MODES = ("decode", "dump")


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def run_mode(mode: str, path: str, chunk: int) -> dict:
    """One timed pass over the file, in this process."""
    decoder = Decoder()
    feed = decoder.feed
    events = 0
    c0 = time.process_time()
    t0 = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        read = f.read
        if mode == "decode":
            while data := read(chunk):
                events += len(feed(data))
        else:
            with open(os.devnull, "w", encoding="utf-8") as out:
                write = out.write
                while data := read(chunk):
                    for ev in feed(data):
                        if ev.type != BLOCK_MARKER:
                            write(event_json(ev) + "\n")
                            events += 1
    end = decoder.close()
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - c0
    return {
        "mode": mode,
        "seconds": seconds,
        "cpu": cpu,
        "events": events,
        "bytes": decoder.offset,
        "complete": end.complete,
        "end_reason": end.reason,
        "peak_rss": _peak_rss_bytes(),
        "loop": "C" if getattr(decoder, "native", False) else "pure Python",
    }


def run_child(mode: str, path: str, chunk: int, pure_python: bool) -> dict:
    """``run_mode`` in a fresh interpreter; returns its result."""
    cmd = [sys.executable, str(Path(__file__).resolve()), path,
           "--chunk", str(chunk), "--child", mode]
    env = dict(os.environ)
    if pure_python:
        env["LIVEPROF_PURE_PYTHON"] = "1"
    proc = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True, env=env)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def time_countevents(binary: str, path: str, runs: int = 3) -> tuple[float, float, int, int]:
    """Best wall time of ``runs`` runs, the CPU time of that run, the count it
    printed, its peak RSS (bytes)."""
    best = float("inf")
    best_cpu = 0.0
    count = -1
    rss = 0
    for _ in range(runs):
        t0 = time.perf_counter()
        proc = subprocess.Popen([binary, path], stdout=subprocess.PIPE)
        out = proc.stdout.read()
        proc.stdout.close()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise SystemExit(f"{binary} exited with status {proc.returncode}")
        if seconds < best:
            best, best_cpu = seconds, usage.ru_utime + usage.ru_stime
        count = int(out.split()[-1])
        rss = max(rss, usage.ru_maxrss * 1024)
    return best, best_cpu, count, rss


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Benchmark the eventlog decoder on one file.")
    ap.add_argument("file")
    ap.add_argument("--chunk", type=int, default=1 << 20, metavar="BYTES",
                    help="bytes per read/feed (default 1 MiB)")
    ap.add_argument("--repeat", type=int, default=1, metavar="N",
                    help="run each mode N times (fresh process each), keep the fastest")
    ap.add_argument("--pure-python", action="store_true",
                    help="time the pure Python record loop (LIVEPROF_PURE_PYTHON=1)")
    ap.add_argument("--countevents", metavar="PATH",
                    help="also time this ghc-events CountEvents binary (best of 3)")
    ap.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        print(json.dumps(run_mode(args.child, args.file, args.chunk)))
        return 0

    size = os.path.getsize(args.file)
    print(f"file       {args.file}")
    print(f"size       {size:,} bytes ({_mb(size)})")
    print(f"chunk      {args.chunk:,} bytes")
    print(f"python     {sys.version.split()[0]}")
    print()

    results = {}
    for mode in MODES:
        runs = [run_child(mode, args.file, args.chunk, args.pure_python) for _ in range(max(1, args.repeat))]
        r = min(runs, key=lambda x: x["seconds"])
        r["peak_rss"] = max(x["peak_rss"] for x in runs)
        results[mode] = r
        what = "decode (all fields)" if mode == "decode" else "decode + event_json to /dev/null"
        print(f"[{mode}] {what}, {r['loop']} record loop")
        print(f"  events     {r['events']:,}"
              + ("" if mode == "decode" else " (block markers not dumped)"))
        print(f"  time       {r['seconds']:.2f} s wall, {r['cpu']:.2f} s CPU"
              + (f" (fastest of {len(runs)})" if len(runs) > 1 else ""))
        print(f"  MB/s       {r['bytes'] / 1e6 / r['seconds']:.2f}")
        print(f"  events/s   {r['events'] / r['seconds']:,.0f}")
        print(f"  peak RSS   {_mb(r['peak_rss'])}")
        if not r["complete"]:
            print(f"  note: stream incomplete ({r['end_reason']}) after {r['bytes']:,} bytes")
        print()

    if args.countevents:
        best, best_cpu, count, rss = time_countevents(args.countevents, args.file)
        ours = results["decode"]
        print(f"[countevents] {args.countevents} (ghc-events, best of 3)")
        print(f"  events     {count:,}"
              f" (ours without block markers: {results['dump']['events']:,})")
        print(f"  time       {best:.2f} s wall, {best_cpu:.2f} s CPU")
        print(f"  MB/s       {size / 1e6 / best:.2f}")
        print(f"  events/s   {count / best:,.0f}")
        print(f"  peak RSS   {_mb(rss)}")
        print(f"  ratio      decode/countevents {ours['seconds'] / best:.2f}x wall"
              f" ({ours['cpu'] / best_cpu:.2f}x CPU),"
              f" dump/countevents {results['dump']['seconds'] / best:.2f}x wall")
    return 0


if __name__ == "__main__":
    sys.exit(main())
