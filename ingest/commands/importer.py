"""``liveprof import FILE...``: one-shot import of eventlog files into InfluxDB.

Each file is one session, derived as ``liveprof derive`` does (the whole file
sorted by time, the start-up events found by a pre-scan) and written through
the InfluxDB sink.  Importing the same file twice writes the same points
(same tags, same timestamps: the session id comes from the log's process id
and wall-clock sample), so InfluxDB keeps one copy.  A progress line on
standard error (when it is a terminal) shows bytes and events per second; a
summary line per file follows.

A one-shot command, not the service: nothing waits for InfluxDB beyond
``--timeout`` (the first answer, and each time the data waits to be
taken), and when InfluxDB is away the command says so and ends (exit 2,
commands/outcome.py); nothing is kept for later.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import stat
import sys
import time

from ..errors import ConfigError, SourceError
from ..session import settings_from
from ..split import IMPORT_SECOND, Spare, large, open_session
from .derive import tune_gc, workers_flag
from .outcome import BAD_DATA, OK, USAGE, InputError, check_input
from .serve import DERIVE_FLAGS, INFLUX_FLAGS, add_influx_flags, influx_overrides

# seconds a line may wait for its batch to fill, at least, in an import: the
# configured influx.batch.flush_interval is set for live streams (short), while
# an import fills batches by size and flushes at the end of each file
IMPORT_FLUSH_INTERVAL = 5.0


def add_parser(sub) -> None:
    p = sub.add_parser("import", help="import eventlog files into InfluxDB",
                       description="Derive the time series of each eventlog file and write them "
                                   "to InfluxDB; importing a file again leaves the same data.")
    p.add_argument("paths", nargs="+", metavar="FILE")
    p.add_argument("--config", metavar="FILE", help="TOML settings file (also LIVEPROF_CONFIG)")
    add_influx_flags(p)
    p.add_argument("--app", help="app tag (default: the program's name)")
    p.add_argument("--host", help="host tag (default: this machine's name)")
    p.add_argument("--window", type=float, metavar="SECONDS",
                   help="aggregation window (default {derive.window})")
    p.add_argument("--workers", type=workers_flag, default=None, metavar="{auto,1,2}",
                   help="processes deriving each file: 2 splits the measurements between two "
                        "(both cores), 1 keeps one, auto splits files "
                        "of 16 MiB or more on a machine of 2 cores or more (default "
                        "{derive.workers})")
    p.add_argument("--retention-policy", metavar="NAME",
                   help="write into this retention policy (default: the database's default, "
                        "`raw` once `liveprof influx setup` ran; InfluxDB drops points older "
                        "than the policy keeps, so an old log needs a longer policy)")
    p.add_argument("--timeout", type=float, default=120.0, metavar="SECONDS",
                   help="give up when InfluxDB does not answer, or takes no data, for this "
                        "long (default %(default)g)")
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


class Unavailable(Exception):
    """InfluxDB did not answer or take data within --timeout."""


async def import_file(path: str, sink, settings, args, show: bool,
                      spare: Spare | None = None) -> dict:
    session = open_session(path, settings_from(settings.derive, live=False,
                                               fallback_host=socket.gethostname()),
                           workers=settings.derive.workers, second=IMPORT_SECOND, spare=spare)
    size = os.path.getsize(path)  # noqa: ASYNC240 (one stat; the command reads the file in this loop anyway)
    progress = Progress(os.path.basename(path), size, show)
    limit = sink.config.buffer.memory_max_bytes // 2
    try:
        for out in session.read(path):
            sink.submit(out)
            if sink.backlog_bytes > limit:       # let InfluxDB catch up
                await flush(sink, args.timeout)
            else:
                await asyncio.sleep(0)      # the sink sends while the next chunk is derived
            progress.show(session.bytes, session.events)
    finally:
        sink.submit(session.close())
        progress.show(session.bytes, session.events, force=True)
        progress.done()
    tags = session.tags or {}
    # cut (a killed program), empty, or not an eventlog
    problem = session.end.describe(path) if session.end else None
    return {"path": path, "events": session.events, "decoded": session.decoded,
            "points": session.points, "session": tags.get("session"), "app": tags.get("app"),
            "clock": session.stats.clock, "problem": problem,
            "seconds": time.monotonic() - progress.start}


async def flush(sink, timeout: float) -> None:
    try:
        await sink.flush(timeout)
    except TimeoutError:
        raise Unavailable(f"InfluxDB at {sink.config.url} took no data for {timeout:g} s "
                          f"(--timeout {timeout:g})") from None


async def connect(sink, timeout: float) -> None:
    """Create the database (when allowed) and check that InfluxDB takes
    writes, trying again after transient errors (5xx, a dropped connection)
    until ``timeout``; ``Unavailable`` then.  Nothing listening at the
    address (connection refused, unknown host) fails at once."""
    import aiohttp

    from ..sinks.errors import SinkAuthError, SinkError

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay, last = 0.2, "no answer"
    while True:
        try:
            async with asyncio.timeout_at(deadline):
                try:
                    await sink.client.ensure_database(sink.config.database)
                except SinkAuthError:
                    pass        # a user that may write but not create: the write below tells
                await sink.healthcheck()
            return
        except TimeoutError:
            break
        except SinkAuthError:
            raise
        except SinkError as exc:
            if isinstance(exc.__cause__, aiohttp.ClientConnectorError) or not (
                    exc.retryable or (exc.status or 0) >= 500):
                raise
            last = str(exc)
        if loop.time() + delay >= deadline:
            break
        await asyncio.sleep(delay)
        delay = min(2 * delay, 2.0)
    raise Unavailable(f"InfluxDB at {sink.config.url} did not answer within {timeout:g} s "
                      f"(--timeout {timeout:g}): {last}")


def sink_config(influx, timeout: float):
    """The InfluxDB sink settings of an import: no spool, no start-up checks
    (``connect`` waits for InfluxDB), requests within ``timeout``, batches cut
    by size (time only after ``IMPORT_FLUSH_INTERVAL`` at least)."""
    return influx.updated({
        "check_on_start": False, "create_database": False, "buffer": {"spool_dir": None},
        "timeout": min(influx.timeout, timeout),
        "batch": {"flush_interval": max(influx.batch.flush_interval, IMPORT_FLUSH_INTERVAL)}})


def run(args) -> int:
    # a large first file is read by two processes (ingest/split.py): the second
    # starts now and loads its modules while this one loads the settings and
    # the sink (about 0.2 s); it is stopped if the file is not split after all
    first = args.paths[0] if args.paths else None
    spare = Spare() if str(args.workers) != "1" and first and large(first) else None
    try:
        return _run(args, spare)
    finally:
        if spare is not None:
            spare.stop()


def _run(args, spare: Spare | None) -> int:
    from ..config import load
    from ..sinks import InfluxSink
    from ..sinks.errors import SinkError

    if not args.timeout > 0:
        print(f"liveprof import: --timeout {args.timeout:g}: must be more than 0 seconds",
              file=sys.stderr)
        return USAGE
    over = influx_overrides(args)
    over.update({"derive.app": args.app, "derive.host": args.host, "derive.window": args.window,
                 "derive.workers": args.workers, "influx.retention_policy": args.retention_policy})
    try:
        settings = load(args.config, over, {**INFLUX_FLAGS, **DERIVE_FLAGS,
                                            "influx.retention_policy": "--retention-policy",
                                            "derive.workers": "--workers"})
    except (ConfigError, ValueError) as exc:
        print(f"liveprof import: {exc}", file=sys.stderr)
        return USAGE
    for path in args.paths:
        try:
            if not stat.S_ISREG(check_input(path)):
                raise InputError(f"{path}: not a regular file (import reads files; "
                                 f"`liveprof serve --fifo` reads named pipes)")
        except InputError as exc:
            print(f"liveprof import: {exc}", file=sys.stderr)
            return USAGE
    show = args.progress == "always" or (args.progress == "auto" and sys.stderr.isatty())
    # the sink's own log lines speak of a service that keeps data for later; this
    # command says itself what became of the data
    logging.getLogger("liveprof.sinks").setLevel(logging.CRITICAL)
    config = sink_config(settings.influx, args.timeout)
    tune_gc()

    async def main() -> int:
        status = OK
        async with InfluxSink(config) as sink:
            try:
                await connect(sink, args.timeout)
                for i, path in enumerate(args.paths):
                    s = await import_file(path, sink, settings, args, show,
                                          spare if i == 0 else None)
                    await flush(sink, args.timeout)
                    if s["problem"]:
                        print(f"liveprof import: {s['problem']}", file=sys.stderr)
                        status = BAD_DATA
                    print(f"{path}: {s['events']} events read ({s['decoded']} decoded), "
                          f"{s['points']} points, session {s['session']} (app {s['app']}, clock "
                          f"{s['clock']}), {s['seconds']:.1f} s", file=sys.stderr)
            except BaseException:
                await sink.close(0)         # no waiting for what cannot be delivered
                st = sink.stats
                if st.submitted:
                    print(f"liveprof import: {st.written} points written, "
                          f"{st.submitted - st.written - st.dropped_4xx} not written",
                          file=sys.stderr)
                raise
            st = sink.stats
            print(f"liveprof import: {st.written} points written to {config.database} at "
                  f"{config.url}; {st.dropped_4xx} refused by InfluxDB", file=sys.stderr)
            if st.dropped_4xx or st.dropped_overflow:
                status = BAD_DATA
            if st.written:
                print("liveprof import: rollups of past data: liveprof influx backfill "
                      "--start TIME", file=sys.stderr)
        return status

    try:
        return asyncio.run(main())
    except (Unavailable, SinkError, SourceError) as exc:
        print(f"liveprof import: {exc}", file=sys.stderr)
        return USAGE
