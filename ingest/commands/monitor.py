"""``liveprof monitor``: receive eventlogs from a live-profile-monitor.

    liveprof monitor HOST:PORT [--dump] [--save FILE]       dial the monitor (TCP)
    liveprof monitor --udp [HOST:]PORT [--dump] [--save FILE]   listen for datagrams

Each session (a connection, or a datagram sender) is decoded by the same
decoder as files.  ``--dump`` prints its events as JSON lines, the shape of
``liveprof dump``; ``--save`` writes each session as a standard ``.eventlog``
(the second session of a run to FILE's name with ``-2`` before the
extension, and so on).  Without either, a line per session on stderr says
what arrived.

Exit status (commands/outcome.py): 0 when every session that ended was
whole, 1 when one was malformed or cut short (inside a record, or its
connection lost; a session still open when the command is stopped does not
count; the protocol has no end-of-data marker, so its absence is no fault),
2 for a bad address or a port that cannot be listened on.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

from protocol import event_json
from protocol.monitor import END_OF_DATA

from ..session import LogReader
from ..sources.base import StreamInfo, parse_address
from .outcome import BAD_DATA, OK, USAGE

log = logging.getLogger("liveprof.monitor")
DEFAULT_PORT = 8242


def add_parser(sub) -> None:
    from .defaults import SettingDefault  # (here: the rest of this module is the command's run)

    p = sub.add_parser(
        "monitor", help="receive eventlogs from a live-profile-monitor (TCP or datagrams)",
        description="Dial a live-profile-monitor at HOST:PORT (default port {monitors.port}) "
                    "and decode what it sends, redialling with backoff when it is down; or, "
                    "with --udp, listen on [HOST:]PORT for monitor datagrams.")
    p.add_argument("address", metavar="HOST:PORT")
    p.add_argument("--udp", action="store_true",
                   help="listen for datagrams on [HOST:]PORT (default host {monitor_udp.host})")
    p.add_argument("--dump", action="store_true", help="print events as JSON lines")
    p.add_argument("--save", metavar="FILE", help="write each session as a .eventlog file")
    p.add_argument("--once", action="store_true",
                   help="stop after the first session ends (no redial)")
    p.add_argument("--idle-timeout", type=float, metavar="S",
                   default=SettingDefault("monitor_udp.idle_timeout"),
                   help="--udp: a sender silent this long ends its session "
                        "(default {monitor_udp.idle_timeout})")
    p.add_argument("--allow", action="append", metavar="NETWORK", default=[],
                   help="--udp: hear senders in this network only (repeatable; default loopback "
                        "and private ranges)")
    p.add_argument("--secret-file", metavar="FILE",
                   help="--udp: datagrams must carry the HMAC tag of the secret in FILE "
                        "(docs/monitor-protocol.md 3.4; or LIVEPROF_MONITOR_UDP_SECRET)")
    p.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")
    p.set_defaults(run=run)


class SessionOutput:
    """One session's consumer: decode, print, save, count."""

    def __init__(self, info: StreamInfo, dump: bool, save: str | None, outcome: Outcome):
        self.info = info
        self.outcome = outcome
        self.dump = dump
        self.reader = LogReader()
        self.events = 0
        self.failed: str | None = None
        self.file = open(save, "wb") if save else None
        self.save = save

    def data(self, chunk: bytes) -> None:
        if self.file:
            self.file.write(chunk)
        if self.failed:
            return
        events = self.reader.feed(chunk)
        if self.reader.error is not None:
            self.failed = str(self.reader.error)
            log.error("%s: %s", self.info.name, self.reader.error)
        self.events += len(events)
        if self.dump and events:
            out = sys.stdout
            out.write("".join([event_json(ev) + "\n" for ev in events]))
            out.flush()

    def end(self, error: str | None) -> None:
        if self.file:
            if not self.reader.decoder.ended:      # (an agent's stream carries its own)
                self.file.write(END_OF_DATA)
            self.file.close()
        saved = f", saved to {self.save}" if self.save else ""
        if not self.failed and error is None:
            end = self.reader.close()
            # the protocol sends no end-of-data marker (--save adds one): a
            # session is cut only inside a record or its header
            if end.cut:
                error = end.describe(self.info.name)
        why = f" ({error})" if error else ""
        log.info("%s: session ended: %d events%s%s", self.info.name, self.events, saved, why)
        if (self.failed or error) and not self.outcome.stopping:
            self.outcome.bad += 1


class Outcome:
    """Sessions with bad data; ``stopping`` once the command is told to stop
    (the sessions it cuts then are not the data's fault)."""

    def __init__(self):
        self.bad = 0
        self.stopping = False


def save_path(base: str | None, number: int) -> str | None:
    if base is None or number == 1:
        return base
    stem, ext = os.path.splitext(base)
    return f"{stem}-{number}{ext}"


def run(args) -> int:
    from pydantic import ValidationError

    from ..sources.monitor_tcp import MonitorTcpConfig, MonitorTcpSource
    from ..sources.monitor_udp import MonitorUdpConfig, MonitorUdpSource

    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="liveprof: %(message)s", stream=sys.stderr)
    source: MonitorUdpSource | MonitorTcpSource
    try:
        if args.udp:
            host, port = parse_address(args.address, DEFAULT_PORT, default_host="0.0.0.0")
            options = {"allow": args.allow} if args.allow else {}
            secret = os.environ.get("LIVEPROF_MONITOR_UDP_SECRET") or None
            if args.secret_file:
                with open(args.secret_file, encoding="utf-8") as f:
                    secret = f.read().strip()
            source = MonitorUdpSource(MonitorUdpConfig.model_validate({
                "host": host, "port": port, "idle_timeout": args.idle_timeout, "once": args.once,
                "secret": secret, **options}))
        else:
            host, port = parse_address(args.address, DEFAULT_PORT)
            source = MonitorTcpSource(MonitorTcpConfig.model_validate(
                {"host": host, "port": port, "once": args.once}))
    except ValidationError as exc:     # (its text would quote the input: a secret)
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"])
            print(f"liveprof: {where}: {err['msg']}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as exc:
        print(f"liveprof: {exc}", file=sys.stderr)
        return USAGE

    outcome = Outcome()

    def opener(info: StreamInfo) -> SessionOutput:
        log.info("%s: session started", info.name)
        return SessionOutput(info, args.dump, save_path(args.save, info.number), outcome)

    async def main() -> None:
        task = asyncio.current_task()
        assert task is not None

        def stop() -> None:
            outcome.stopping = True
            task.cancel()

        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop)
        try:
            await source.run(opener)
        except asyncio.CancelledError:
            outcome.stopping = True
            raise

    try:
        asyncio.run(main())
    except asyncio.CancelledError:
        pass
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        where = f"udp {args.address}" if args.udp else args.address
        print(f"liveprof: {where}: {exc.strerror or exc}", file=sys.stderr)
        return USAGE
    return BAD_DATA if outcome.bad else OK
