"""``liveprof agent``: serve a program's eventlog in the monitor protocol.

    liveprof agent --fifo PATH [--listen [HOST:]PORT] [--send HOST:PORT ...]

Runs next to a GHC program, reads its eventlog (``--fifo``, ``--socket``,
``--follow``, ``--file`` or ``--stdin``, with the reading rules of ``serve``)
and serves it: to TCP receivers that connect (``serve --monitor``,
``monitor``), and as datagrams to collectors (``--send``; ``serve --udp``).
See ingest/agent/ and docs/monitor-protocol.md (sections 6.7, 7.4).

Exit status: 0 when stopped (SIGTERM, SIGINT) or at the end of its input,
1 when the input (``--file``/``--stdin``) held a run that was not a valid
eventlog, or no eventlog at all, 2 for a bad flag, an address it cannot listen on or a source path
that cannot work.  SIGUSR1 logs the counters.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

from ..errors import LiveprofError
from ..sources.base import parse_address
from .outcome import BAD_DATA, OK, USAGE

log = logging.getLogger("liveprof.agent")
DEFAULT_PORT = 8242


def add_parser(sub) -> None:
    p = sub.add_parser(
        "agent", help="serve a program's eventlog in the monitor protocol (TCP and datagrams)",
        description="Read a GHC program's eventlog as it is written and serve it in the "
                    "live-profile-monitor protocol: to TCP receivers that connect (liveprof "
                    "serve --monitor HOST:PORT) and as datagrams to collectors (--send; "
                    "liveprof serve --udp).  Events travel in blocks, so receivers keep their "
                    "capability.  SIGUSR1 logs the counters.")
    src = p.add_argument_group("eventlog source (one)").add_mutually_exclusive_group(required=True)
    src.add_argument("--fifo", metavar="PATH",
                     help="a named pipe the program writes (+RTS -l -ol<PATH>); created if missing")
    src.add_argument("--socket", metavar="PATH|HOST:PORT",
                     help="dial a program serving its eventlog on a socket (eventlog-socket)")
    src.add_argument("--follow", metavar="PATH", help="follow a growing eventlog file")
    src.add_argument("--file", metavar="PATH", help="send an eventlog file once, then exit")
    src.add_argument("--stdin", action="store_true", help="read the eventlog on stdin")
    p.add_argument("--listen", metavar="[HOST:]PORT", default=str(DEFAULT_PORT),
                   help=f"TCP address receivers connect to (default all interfaces, port "
                        f"{DEFAULT_PORT})")
    p.add_argument("--no-listen", action="store_true", help="no TCP server (datagrams only)")
    p.add_argument("--send", action="append", metavar="HOST:PORT", default=[],
                   help="send datagrams to a collector (repeatable)")
    p.add_argument("--redundancy", type=int, default=1, metavar="K",
                   help="send each datagram K times, for lossy networks (default 1)")
    p.add_argument("--repeat", type=float, default=2.0, metavar="SECONDS",
                   help="datagrams: send the snapshot and header again this often, so a "
                        "collector that starts late joins (default 2)")
    p.add_argument("--secret-file", metavar="FILE",
                   help="datagrams: tag each with the HMAC of the secret in FILE "
                        "(docs/monitor-protocol.md 3.4; or LIVEPROF_AGENT_SECRET)")
    p.add_argument("--no-pack", action="store_true",
                   help="datagrams: one message each, for collectors older than packed datagrams "
                        "(default: as many whole messages as fit under 1400 bytes)")
    p.add_argument("--rate", type=float, default=50_000.0, metavar="N",
                   help="datagrams: at most N datagrams a second per collector, before "
                        "redundancy (default 50000; beyond, a bounded queue, then drops)")
    p.add_argument("--max-size", type=int, default=1200, metavar="BYTES",
                   help="datagrams: split payloads longer than this (default 1200)")
    p.add_argument("--queue-bytes", type=int, default=8 << 20, metavar="BYTES",
                   help="a TCP receiver that lets more than this wait is disconnected "
                        "(default 8 MiB; the receivers share what is queued)")
    p.add_argument("--max-receivers", type=int, default=16, metavar="N",
                   help="TCP receivers at once; more are refused (default 16)")
    p.add_argument("--app", help="app name sent with the stream (default: the program's name)")
    p.add_argument("--host", help="host name sent with the stream (default: this machine's)")
    p.add_argument("--tee", metavar="FILE", help="also write the bytes read to FILE")
    p.add_argument("--no-blocks", action="store_true",
                   help="send events without blocks, as the 2016 monitor (capabilities lost)")
    p.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")
    p.set_defaults(run=run)


def _source(args):
    from ..sources.fifo import FifoConfig, FifoSource
    from ..sources.file import FileConfig, FileSource
    from ..sources.socket import SocketConfig, SocketSource
    from ..sources.stdin import StdinSource

    if args.fifo:
        return FifoSource(FifoConfig(path=args.fifo))
    if args.socket:
        return SocketSource(SocketConfig(address=args.socket))
    if args.follow or args.file:
        return FileSource(FileConfig(path=args.follow or args.file, follow=bool(args.follow)))
    return StdinSource()


def _secret(args) -> bytes | None:
    from protocol.monitor import datagram_key

    secret = os.environ.get("LIVEPROF_AGENT_SECRET") or None
    if args.secret_file:
        with open(args.secret_file, encoding="utf-8") as f:
            secret = f.read().strip()
    return datagram_key(secret) if secret else None


def run(args) -> int:
    from importlib.metadata import PackageNotFoundError, version

    from ..agent import Agent, TcpOut, UdpOut
    from ..errors import PermanentSourceError

    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="liveprof agent: %(message)s", stream=sys.stderr)
    try:
        source = _source(args)
        check = getattr(source, "check", None)
        if check is not None and not args.socket:
            check()
        key = _secret(args)
        targets = [parse_address(t, DEFAULT_PORT) for t in args.send]
        listen = None if args.no_listen else parse_address(args.listen, DEFAULT_PORT,
                                                           default_host="")
        if not 1 <= args.redundancy <= 16 or args.repeat <= 0 or args.max_size < 64 \
                or args.rate < 100:
            raise ValueError("--redundancy is 1..16, --repeat > 0, --max-size >= 64, "
                             "--rate >= 100")
        if listen is None and not targets:
            raise ValueError("nowhere to send: --no-listen and no --send")
    except (ValueError, OSError, LiveprofError) as exc:
        print(f"liveprof agent: {exc}", file=sys.stderr)
        return USAGE
    try:
        ver = version("liveprof")
    except PackageNotFoundError:
        ver = ""
    tee = open(args.tee, "wb") if args.tee else None

    async def main() -> int:
        agent = Agent([], app=args.app, host=args.host, blocks=not args.no_blocks,
                      max_size=args.max_size if targets else None, tee=tee, version=ver)
        outputs: list = []
        if listen is not None:
            tcp = TcpOut(listen[0] or None, listen[1], agent.counters, args.queue_bytes,
                         args.max_receivers)
            await tcp.start()
            outputs.append(tcp)
        if targets:
            udp = UdpOut(targets, agent.counters, key=key, redundancy=args.redundancy,
                         repeat=args.repeat, rate=args.rate, pack=not args.no_pack)
            await udp.start()
            outputs.append(udp)
        agent.outputs = outputs
        loop = asyncio.get_running_loop()
        task = asyncio.create_task(source.run(agent), name=f"source:{source.kind}")
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        loop.add_signal_handler(signal.SIGUSR1,
                                lambda: log.info("counters: %s", agent.counters.line()))
        try:
            await task
        except asyncio.CancelledError:
            pass
        finally:
            for out in outputs:
                await out.close()
            log.info("stopped: %s", agent.counters.line())
        c = agent.counters
        return BAD_DATA if (args.file or args.stdin) and (c.bad_runs or not c.runs) else OK

    try:
        return asyncio.run(main())
    except PermanentSourceError as exc:
        print(f"liveprof agent: {exc}", file=sys.stderr)
        return USAGE
    except OSError as exc:       # an address it cannot listen on
        print(f"liveprof agent: {exc.strerror or exc}", file=sys.stderr)
        return USAGE
    finally:
        if tee is not None:
            tee.close()
