"""``liveprof serve``: run the ingest service (see ingest/service.py).

Settings come from flags, then ``LIVEPROF_...`` environment variables, then a
TOML file (``--config``), then defaults (ingest/config.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys

from ..errors import ConfigError, PermanentSourceError, SourceError
from ..sources.base import parse_address
from .defaults import setting_default


def add_influx_flags(p) -> None:
    """The InfluxDB target, the same flags for every command that writes."""
    g = p.add_argument_group("InfluxDB (also LIVEPROF_INFLUX_URL, _DATABASE, _USER, "
                             "_PASSWORD, _TOKEN)")
    g.add_argument("--influx-url", metavar="URL", help="default {influx.url}")
    g.add_argument("--database", metavar="NAME", help="default {influx.database}")
    g.add_argument("--influx-user", metavar="USER")
    g.add_argument("--influx-password", metavar="PASSWORD")
    g.add_argument("--influx-token", metavar="TOKEN")


# the settings each flag sets, so that a configuration error names the flag
INFLUX_FLAGS = {"influx.url": "--influx-url", "influx.database": "--database",
                "influx.user": "--influx-user", "influx.password": "--influx-password",
                "influx.token": "--influx-token"}
DERIVE_FLAGS = {"derive.window": "--window", "derive.app": "--app", "derive.host": "--host",
                "derive.max_lag": "--max-lag", "derive.stream_idle": "--stream-idle"}


def influx_overrides(args) -> dict:
    return {"influx.url": args.influx_url, "influx.database": args.database,
            "influx.user": args.influx_user, "influx.password": args.influx_password,
            "influx.token": args.influx_token}


def add_parser(sub) -> None:
    p = sub.add_parser("serve", help="run the ingest service (sources -> InfluxDB)",
                       description="Take eventlogs from every configured source at once, derive "
                                   "the time series and write them to InfluxDB.")
    p.add_argument("--config", metavar="FILE", help="TOML settings file (also LIVEPROF_CONFIG)")
    add_influx_flags(p)
    p.add_argument("--monitor", action="append", metavar="HOST:PORT", default=[],
                   help="dial a live-profile-monitor (repeatable; default host "
                        "{monitors.host}, port {monitors.port})")
    p.add_argument("--udp", metavar="[HOST:]PORT",
                   help="listen for monitor datagrams (default host {monitor_udp.host}, port "
                        "{monitor_udp.port})")
    p.add_argument("--udp-allow", action="append", metavar="NETWORK", default=[],
                   help="--udp: hear senders in this network only (repeatable; default loopback "
                        "and private ranges; the shared secret: LIVEPROF_MONITOR_UDP_SECRET)")
    p.add_argument("--socket", action="append", metavar="PATH|HOST:PORT", default=[],
                   help="dial a program serving its eventlog on a Unix or TCP socket "
                        "(repeatable)")
    p.add_argument("--fifo", action="append", metavar="PATH", default=[],
                   help="read a named pipe a program writes with +RTS -l -ol<PATH> "
                        "(repeatable; created if missing)")
    p.add_argument("--file", action="append", metavar="PATH", default=[],
                   help="import an eventlog file once (repeatable)")
    p.add_argument("--follow", action="append", metavar="PATH", default=[],
                   help="follow a growing eventlog file, like tail -F (repeatable)")
    p.add_argument("--stdin", action="store_true", help="read an eventlog stream on stdin")
    p.add_argument("--http", metavar="HOST:PORT",
                   help="serve the HTTP API (docs/api.md) here (default host {api.host}, port "
                        "{api.port}; LIVEPROF_ADMIN_TOKEN gives the first admin token)")
    p.add_argument("--window", type=float, metavar="SECONDS",
                   help="aggregation window (default {derive.window})")
    p.add_argument("--max-lag", type=float, metavar="SECONDS",
                   help="longest a live event waits for time order (default {derive.max_lag}; "
                        "lower it for less delay when the program flushes its eventlog often, "
                        "e.g. with +RTS --eventlog-flush-interval)")
    p.add_argument("--stream-idle", type=float, metavar="SECONDS",
                   help="live: a capability this far behind the newest event stops holding the "
                        "others back (eventlog time; default {derive.stream_idle}; docs/live.md)")
    p.add_argument("--app", help="app tag for every stream (default: the program's name)")
    p.add_argument("--host", help="host tag for every stream (default: the stream's peer)")
    p.add_argument("--start-influxd", action="store_true",
                   help="if nothing answers at the InfluxDB URL and it is on this machine, start "
                        "influxd with its data in the state directory, on loopback only, and "
                        "stop it with the service (./run sets this)")
    p.add_argument("--print-config", action="store_true",
                   help="print the settings (secrets masked) and exit")
    p.set_defaults(run=run)


def overrides(args) -> dict:
    out = influx_overrides(args)
    out.update({"derive.window": args.window, "derive.app": args.app, "derive.host": args.host,
                "derive.max_lag": args.max_lag, "derive.stream_idle": args.stream_idle})
    if args.monitor:
        monitors = []
        for text in args.monitor:
            host, port = _address("--monitor", text, "monitors")
            monitors.append({"host": host, "port": port})
        out["monitors"] = monitors
    if args.socket:
        out["sockets"] = [{"address": a} for a in args.socket]
    if args.fifo:
        out["fifos"] = [{"path": p} for p in args.fifo]
    if args.file or args.follow:
        out["files"] = ([{"path": p} for p in args.file]
                        + [{"path": p, "follow": True} for p in args.follow])
    if args.stdin:
        out["stdin"] = {}
    if args.http:
        host, port = _address("--http", args.http, "api")
        out["api"] = {"host": host, "port": port}
    if args.udp:
        host, port = _address("--udp", args.udp, "monitor_udp")
        out["monitor_udp"] = {"host": host, "port": port}
        if args.udp_allow:
            out["monitor_udp"]["allow"] = args.udp_allow
    return out


def _address(flag: str, text: str, section: str) -> tuple[str, int]:
    """``[HOST:]PORT`` as a flag gives it; what it leaves out, the section's defaults."""
    try:
        return parse_address(text, setting_default(f"{section}.port"),
                             default_host=setting_default(f"{section}.host"))
    except ValueError as exc:
        raise ValueError(f"{flag}: {exc}") from None


def flags(args) -> dict[str, str]:
    """The flag behind each override (a list item: the flag with its value)."""
    out = {**INFLUX_FLAGS, **DERIVE_FLAGS}
    for key, flag, values in (("monitors", "--monitor", args.monitor),
                              ("sockets", "--socket", args.socket),
                              ("fifos", "--fifo", args.fifo),
                              ("files", "--file", args.file + args.follow)):
        for i, value in enumerate(values):
            if key == "files" and i >= len(args.file):
                flag = "--follow"
            out[f"{key}.{i}"] = f"{flag} {value}"
    out.update({"api": f"--http {args.http}", "monitor_udp": f"--udp {args.udp}",
                "stdin": "--stdin"})
    return out


def run(args) -> int:
    from ..config import load  # (heavy imports only for the command that runs)

    try:
        settings = load(args.config, overrides(args), flags(args))
    except (ConfigError, ValueError) as exc:
        print(f"liveprof: {exc}", file=sys.stderr)
        return 2
    if args.print_config:
        print(settings.describe())
        return 0
    logging.basicConfig(level=settings.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from ..service import Service

    async def main() -> None:
        service = Service(settings)
        for source in service.sources:      # a path that cannot work: refuse to start
            check = getattr(source, "check", None)
            try:
                if check is not None:
                    check()
            except PermanentSourceError:
                raise
            except SourceError:
                pass                        # transient: the source tries again itself
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, service.stop)
        await service.run()

    from ..local_influx import LocalInfluxError, influxd_for
    try:
        with (influxd_for(settings.influx.url, settings.state_dir) if args.start_influxd
              else contextlib.nullcontext()):
            asyncio.run(main())
    except PermanentSourceError as exc:  # a source that cannot work as configured
        print(f"liveprof serve: {exc}", file=sys.stderr)
        return 2
    except LocalInfluxError as exc:  # no InfluxDB and none to start: the environment
        print(f"liveprof: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a failure to start: say it plainly
        print(f"liveprof: {exc}", file=sys.stderr)
        return 1
    return 0
