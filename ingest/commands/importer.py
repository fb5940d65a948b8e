"""``liveprof import FILE...``: one-shot import of eventlog files into InfluxDB.

Each file is one session, derived as ``liveprof derive`` does (the whole file
sorted by time, the start-up events found by a pre-scan) and written through
the InfluxDB sink.  Importing the same file twice writes the same points
(same tags, same timestamps: the session id comes from the log's process id
and wall-clock sample), so InfluxDB keeps one copy.  A progress line on
standard error (when it is a terminal) shows bytes and events per second; a
summary line per file follows.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

from protocol import DecodeError

from ..chunks import read_chunks
from ..derive.base import DeriveSettings
from ..derive.order import OrderSettings
from ..errors import ConfigError, SourceError
from .derive import file_pipeline, tune_gc
from .dump import describe_end
from .serve import add_influx_flags, influx_overrides


def add_parser(sub) -> None:
    p = sub.add_parser("import", help="import eventlog files into InfluxDB",
                       description="Derive the time series of each eventlog file and write them "
                                   "to InfluxDB; importing a file again leaves the same data.")
    p.add_argument("paths", nargs="+", metavar="FILE")
    p.add_argument("--config", metavar="FILE", help="TOML settings file (also LIVEPROF_CONFIG)")
    add_influx_flags(p)
    p.add_argument("--app", help="app tag (default: the program's name)")
    p.add_argument("--host", help="host tag (default: this machine's name)")
    p.add_argument("--window", type=float, metavar="SECONDS", help="aggregation window")
    p.add_argument("--retention-policy", metavar="NAME",
                   help="write into this retention policy (default: the database's default, "
                        "`raw` once `liveprof influx setup` ran; InfluxDB drops points older "
                        "than the policy keeps, so an old log needs a longer policy)")
    p.add_argument("--timeout", type=float, default=120.0, metavar="SECONDS",
                   help="give up when InfluxDB takes no data for this long (default 120)")
    p.add_argument("--progress", choices=("auto", "always", "never"), default="auto",
                   help="progress line on standard error (auto: when it is a terminal)")
    p.set_defaults(run=run)


class Progress:
    def __init__(self, name: str, total: int, enabled: bool):
        self.name, self.total, self.enabled = name, total, enabled
        self.start = time.monotonic()
        self._last = 0.0

    def show(self, done: int, events: int, force: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not force and now - self._last < 0.2):
            return
        self._last = now
        secs = max(now - self.start, 1e-6)
        pct = f"{100 * done / self.total:5.1f}%" if self.total else ""
        sys.stderr.write(f"\r{self.name}: {done / 1e6:8.1f}/{self.total / 1e6:.1f} MB {pct} "
                         f"{done / secs / 1e6:6.1f} MB/s {events / secs / 1e3:8.0f}k events/s")
        sys.stderr.flush()

    def done(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


async def import_file(path: str, sink, settings, args, show: bool) -> dict:
    derive = settings.derive
    pipe, decoder = file_pipeline(
        path, DeriveSettings(window_ns=max(1, int(derive.window * 1e9)), top_n=derive.top),
        app=derive.app, host=derive.host, derivers=derive.measurements,
        order=OrderSettings(live=False))
    progress = Progress(os.path.basename(path), os.path.getsize(path), show)
    limit = sink.config.memory_max_bytes // 2
    done = events = points = 0
    problem = note = None
    try:
        for chunk in read_chunks(path):
            done += len(chunk)
            try:
                evs = decoder.feed(chunk)
            except DecodeError as exc:
                evs, problem = exc.events, f"{path}: {exc}"
            events += len(evs)
            out = pipe.feed(evs)
            points += len(out)
            sink.submit(out)
            if sink.stats.buffered_bytes > limit:       # let InfluxDB catch up
                await sink.flush(args.timeout)
            else:
                await asyncio.sleep(0)      # the sink sends while the next chunk is derived
            progress.show(done, events)
            if problem:
                break
        else:
            end = decoder.close()
            if end.truncated:      # a killed program's log: what is there is good
                note = describe_end(path, end)
    finally:
        out = pipe.close()
        points += len(out)
        sink.submit(out)
        progress.show(done, events, force=True)
        progress.done()
    tags = pipe.tags or {}
    return {"path": path, "events": events, "points": points, "session": tags.get("session"),
            "app": tags.get("app"), "clock": pipe.stats.clock, "problem": problem, "note": note,
            "seconds": time.monotonic() - progress.start}


def run(args) -> int:
    from ..config import load
    from ..sinks.errors import SinkError
    from ..sinks.influx import InfluxSink

    over = influx_overrides(args)
    over.update({"derive.app": args.app, "derive.host": args.host, "derive.window": args.window,
                 "influx.create_database": True,
                 "influx.retention_policy": args.retention_policy})
    try:
        settings = load(args.config, over)
    except (ConfigError, ValueError) as exc:
        print(f"liveprof: {exc}", file=sys.stderr)
        return 2
    for path in args.paths:
        if not os.path.isfile(path):
            print(f"liveprof: {path}: not a file", file=sys.stderr)
            return 2
    show = args.progress == "always" or (args.progress == "auto" and sys.stderr.isatty())
    tune_gc()

    async def main() -> int:
        status = 0
        async with InfluxSink(settings.influx) as sink:
            # transient trouble (5xx, a restart) is retried like writes; an import fails
            # when InfluxDB stays away for --timeout, or at once for a configuration error
            await sink.wait_ready(args.timeout)
            for path in args.paths:
                s = await import_file(path, sink, settings, args, show)
                await sink.flush(args.timeout)
                if s["note"]:
                    print(f"liveprof: {s['note']}", file=sys.stderr)
                if s["problem"]:
                    print(f"liveprof: {s['problem']}", file=sys.stderr)
                    status = 1
                print(f"{path}: {s['events']} events, {s['points']} points, session "
                      f"{s['session']} (app {s['app']}, clock {s['clock']}), "
                      f"{s['seconds']:.1f} s", file=sys.stderr)
            st = sink.stats
            print(f"liveprof: {st.written} points written to {settings.influx.database} at "
                  f"{settings.influx.url}; {st.dropped_4xx} refused by InfluxDB",
                  file=sys.stderr)
            if st.dropped_4xx or st.dropped_overflow:
                status = 1
            if st.written:
                print("liveprof: rollups of past data: liveprof influx backfill --start TIME",
                      file=sys.stderr)
        return status

    try:
        return asyncio.run(main())
    except (SinkError, TimeoutError, SourceError) as exc:
        print(f"liveprof: import failed: {exc or 'InfluxDB took no data for --timeout'}",
              file=sys.stderr)
        return 1
