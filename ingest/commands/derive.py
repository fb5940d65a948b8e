"""``liveprof derive FILE|-``: the derived points as InfluxDB line protocol
(nanosecond precision) on stdout; no server needed."""

from __future__ import annotations

import argparse
import gc
import socket
import stat
import sys

from ..derive.config import DeriveConfig
from ..derive.point import lines
from ..derive.registry import REGISTRY
from ..errors import SourceError
from ..session import settings_from
from ..split import WORKERS, open_session
from .outcome import BAD_DATA, OK, USAGE, InputError, check_input


def add_parser(sub) -> None:
    from .defaults import SettingDefault  # (here: the rest of this module is the command's run)

    p = sub.add_parser(
        "derive", help="print the derived time series as InfluxDB line protocol",
        description="Decode an eventlog (a file, a named pipe, or - for stdin), derive the "
                    "time series (gc, heap, capability, threads, ...) and print them as "
                    "InfluxDB line protocol with nanosecond timestamps.")
    p.add_argument("path", metavar="FILE|-")
    p.add_argument("--window", type=float, default=SettingDefault("derive.window"),
                   metavar="SECONDS", help="aggregation window of the per-window measurements "
                                           "(default {derive.window})")
    p.add_argument("--top", type=int, default=SettingDefault("derive.top"), metavar="N",
                   help="labels kept by name: the busiest thread and span labels per window, "
                        "the largest heap-profile labels per census (default {derive.top}; the "
                        "rest are summed as 'other')")
    p.add_argument("--measurements", default=None, metavar="LIST",
                   help="comma-separated measurements to derive (default all: "
                        + ",".join(REGISTRY) + ")")
    p.add_argument("--app", default=None, help="app tag (default: the program name)")
    p.add_argument("--host", default=None, help="host tag (default: this machine's name)")
    p.add_argument("--session", default=None,
                   help="session tag (default: a hash of the pid and the log's wall clock)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--live", dest="live", action="store_true", default=None,
                      help="merge with a watermark as events come (default for named pipes)")
    mode.add_argument("--whole", dest="live", action="store_false",
                      help="sort the whole stream by time, within a memory bound (default for "
                           "files and stdin)")
    p.add_argument("--max-lag", type=float, default=SettingDefault("derive.max_lag"),
                   metavar="SECONDS", help="live: never hold an event longer than this behind "
                                           "the newest (eventlog time; default {derive.max_lag})")
    p.add_argument("--stream-idle", type=float, default=SettingDefault("derive.stream_idle"),
                   metavar="SECONDS", help="live: a capability this far behind the newest event "
                                           "stops holding the others back (eventlog time; "
                                           "default {derive.stream_idle}; docs/live.md)")
    p.add_argument("--workers", type=workers_flag, default=SettingDefault("derive.workers"),
                   metavar="{auto,1,2}",
                   help="processes deriving a regular file: 2 splits the measurements between "
                        "two (both cores), 1 keeps one, auto splits files "
                        "of 16 MiB or more on a machine of 2 cores or more (default "
                        "{derive.workers})")
    p.add_argument("--stats", action="store_true", help="print counters to stderr at the end")
    p.set_defaults(run=run)


def workers_flag(text: str) -> str | int:
    """``--workers``: auto, 1 or 2."""
    value: str | int = int(text) if text.isdigit() else text
    if value not in WORKERS:
        raise argparse.ArgumentTypeError(f"{text!r}: auto, 1 or 2")
    return value


def tune_gc() -> None:
    """Turn the cyclic garbage collector off for the run.  The decoded events
    are tuple subclasses, which the collector keeps tracking: each young
    collection walks every new one (and again when it moves a generation up),
    some 8% of a run.  Deriving makes no reference cycles per event or batch
    (reference counting frees it all; only the pipeline's own objects, once,
    form cycles), so the collector would find nothing; memory stays flat."""
    gc.disable()


def run(args) -> int:
    names = None
    if args.measurements:
        names = [n.strip() for n in args.measurements.split(",") if n.strip()]
        unknown = [n for n in names if n not in REGISTRY]
        if unknown:
            print(f"liveprof: --measurements: unknown measurement(s) {', '.join(unknown)}; "
                  f"known: {', '.join(REGISTRY)}", file=sys.stderr)
            return USAGE
    for flag, value in (("--window", args.window), ("--max-lag", args.max_lag),
                        ("--stream-idle", args.stream_idle)):
        if not value > 0:
            print(f"liveprof: {flag} {value}: must be more than 0 seconds", file=sys.stderr)
            return USAGE
    if args.top < 1:
        print(f"liveprof: --top {args.top}: must be at least 1", file=sys.stderr)
        return USAGE
    try:
        mode = check_input(args.path)
    except InputError as exc:
        print(f"liveprof: {exc}", file=sys.stderr)
        return USAGE
    regular, fifo = stat.S_ISREG(mode), stat.S_ISFIFO(mode)
    # a named pipe is most likely a running program: merge live; a file or stdin
    # (usually a file piped in) is sorted whole, within the memory bound
    live = fifo if args.live is None else args.live
    flags = DeriveConfig(window=args.window, top=args.top, measurements=names, app=args.app,
                         host=args.host, max_lag=args.max_lag, stream_idle=args.stream_idle)
    settings = settings_from(flags, live=live, fallback_host=socket.gethostname(), session=args.session)
    try:
        session = open_session(args.path, settings, regular=regular, workers=args.workers)
    except SourceError as exc:
        print(f"liveprof: {exc}", file=sys.stderr)
        return USAGE
    tune_gc()
    out = sys.stdout
    status = OK

    def write(points) -> None:
        if points:
            out.write("\n".join(lines(points)) + "\n")

    try:
        for points in session.read(args.path):
            write(points)
    except SourceError as exc:
        print(f"liveprof: {exc}", file=sys.stderr)
        status = USAGE
    last = session.close()
    problem = session.end.describe(args.path) if status == OK and session.end else None
    if problem:
        print(f"liveprof: {problem}", file=sys.stderr)
        status = BAD_DATA
    write(last)
    out.flush()
    if args.stats:
        s = session.stats
        print(f"liveprof: {session.events} events read ({session.decoded} decoded for the "
              f"measurements), {s.points} points, {s.late_events} late, "
              f"{s.evicted_events} released early (memory bound), clock: {s.clock}",
              file=sys.stderr)
    return status
