"""``liveprof derive FILE|-``: the derived points as InfluxDB line protocol
(nanosecond precision) on stdout; no server needed."""

from __future__ import annotations

import gc
import os
import socket
import stat
import sys
import time

from protocol import DecodeError, Decoder, EventType

from ..chunks import read_chunks
from ..counts import decoded_events
from ..derive.base import DeriveSettings
from ..derive.order import OrderSettings
from ..derive.pipeline import Identity, Pipeline
from ..derive.registry import REGISTRY
from ..errors import SourceError
from .outcome import BAD_DATA, OK, USAGE, InputError, check_input, describe_end

BLOCK_MARKER = int(EventType.BLOCK_MARKER)
# WallClockTime, ProgramArgs, OsProcessPid, OsProcessParentPid, RtsIdentifier, HeapInfoGHC
PREAMBLE = tuple(int(t) for t in (EventType.WALL_CLOCK_TIME, EventType.PROGRAM_ARGS,
                                  EventType.OSPROCESS_PID, EventType.OSPROCESS_PPID,
                                  EventType.RTS_IDENTIFIER, EventType.HEAP_INFO_GHC))


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
    p.add_argument("--stats", action="store_true", help="print counters to stderr at the end")
    p.set_defaults(run=run)


def prescan(path: str) -> tuple[int | None, list]:
    """A quick pass over a regular file (only block markers and start-up
    events are decoded).  Returns the fallback clock, its mtime minus its last
    event time (the RTS wrote the file last at about then), and the first
    event of each PREAMBLE type (see ``Pipeline(preamble=...)``)."""
    dec = Decoder(only=(BLOCK_MARKER, *PREAMBLE))
    last = 0
    first: dict = {}
    try:
        for chunk in read_chunks(path):
            for ev in dec.feed(chunk):
                if ev.type == BLOCK_MARKER:
                    last = max(last, ev.time, ev.fields[1])
                else:
                    last = max(last, ev.time)
                    first.setdefault(ev.type, ev)
    except DecodeError:
        pass
    return os.stat(path).st_mtime_ns - last, list(first.values())


def file_pipeline(path: str, settings: DeriveSettings, *, app: str | None, host: str | None,
                  session: str | None = None, derivers=None, order: OrderSettings,
                  regular: bool = True) -> tuple[Pipeline, Decoder]:
    """The pipeline of one eventlog read from ``path``, and its decoder: a
    regular file is pre-scanned (clock fallback, start-up events), anything
    else gets the time it is read from as its fallback clock; ``host`` None
    is this machine."""
    if regular:
        start_wall, preamble = prescan(path)
    else:
        start_wall, preamble = time.time_ns(), []
    identity = Identity(app=app, host=socket.gethostname() if host is None else host,
                        session=session, start_wall_ns=start_wall)
    pipe = Pipeline(settings, identity, derivers=derivers, order=order, preamble=preamble)
    return pipe, Decoder(only=pipe.wants)


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
    for flag, value in (("--window", args.window), ("--max-lag", args.max_lag)):
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
    settings = DeriveSettings(window_ns=max(1, int(args.window * 1e9)), top_n=args.top)
    order = OrderSettings(live=live, max_lag_ns=int(args.max_lag * 1e9))
    try:
        pipe, decoder = file_pipeline(args.path, settings, app=args.app, host=args.host,
                                      session=args.session, derivers=names, order=order,
                                      regular=regular)
    except SourceError as exc:
        print(f"liveprof: {exc}", file=sys.stderr)
        return USAGE
    tune_gc()
    out = sys.stdout
    status = OK
    decoded = 0

    def write(points) -> None:
        if points:
            out.write("".join([p.to_line() + "\n" for p in points]))

    try:
        for chunk in read_chunks(args.path):
            events = decoder.feed(chunk)
            decoded += decoded_events(events, pipe.wants)
            write(pipe.feed(events))
    except SourceError as exc:
        print(f"liveprof: {exc}", file=sys.stderr)
        status = USAGE
    except DecodeError as exc:
        decoded += decoded_events(exc.events, pipe.wants)
        write(pipe.feed(exc.events))
        print(f"liveprof: {args.path}: {exc}", file=sys.stderr)
        status = BAD_DATA
    else:
        problem = describe_end(args.path, decoder.close())
        if problem:
            print(f"liveprof: {problem}", file=sys.stderr)
            status = BAD_DATA
    write(pipe.close())
    out.flush()
    if args.stats:
        s = pipe.stats
        print(f"liveprof: {decoded + decoder.skipped} events read ({decoded} decoded for the "
              f"measurements), {s.points} points, {s.late_events} late, "
              f"{s.evicted_events} released early (memory bound), clock: {s.clock}",
              file=sys.stderr)
    return status
