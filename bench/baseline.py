"""The baseline of the throughput benchmarks: ghc-events' CountEvents (parse
and count, ``../shared/corpus/src/CountEvents.hs`` built with ``ghc -O2``),
timed on the same file in the same run as liveprof, so that other load on the
shared machine weighs on both.

``find()``: ``$LIVEPROF_COUNTEVENTS``, else ``bench/data/CountEvents`` (what
``bench/make_log.sh`` builds), else ``~/.cache/liveprof-bench/CountEvents``.
``run(binary, path)``: one timed run (wall, CPU, the count it printed, peak RSS
of that process alone, from ``os.wait4``)."""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLACES = (ROOT / "bench" / "data" / "CountEvents", Path.home() / ".cache" / "liveprof-bench" / "CountEvents")


def find() -> str | None:
    env = os.environ.get("LIVEPROF_COUNTEVENTS")
    if env:
        return env
    for p in PLACES:
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
    return None


def run(binary: str, path: str) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.Popen([binary, path], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    out = proc.stdout.read()
    proc.stdout.close()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{binary} exited with status {code}")
    return {"seconds": seconds, "cpu": usage.ru_utime + usage.ru_stime,
            "events": int(out.split()[-1]), "peak_rss": usage.ru_maxrss * 1024}


def ratio_line(what: str, ours: list[float], base: list[float]) -> str:
    """``what``'s wall time over CountEvents' (best to best, median to median)."""
    med = statistics.median(ours) / statistics.median(base)
    return (f"ratio to CountEvents  {what}: {min(ours) / min(base):.2f}x best "
            f"({min(ours):.2f} s / {min(base):.2f} s), {med:.2f}x median")


def missing() -> str:
    return ("CountEvents not found (set LIVEPROF_COUNTEVENTS, or build it with bench/make_log.sh "
            "into bench/data/): no ratio")
