"""``liveprof influx setup``: create or bring up to date the database, its
retention policies and the rollup continuous queries (docs/rollups.md);
``liveprof influx backfill``: roll up a past time range now.

The server is given by ``--influx-url URL --database NAME`` (and
``--influx-user``, ``--influx-password``, ``--influx-token``) or the
``LIVEPROF_INFLUX_URL``, ``LIVEPROF_INFLUX_DATABASE``, ``LIVEPROF_INFLUX_USER``,
``LIVEPROF_INFLUX_PASSWORD``, ``LIVEPROF_INFLUX_TOKEN`` environment variables;
flags win.  Defaults: ``http://127.0.0.1:8086``, database ``liveprof``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError, LiveprofError
from .serve import INFLUX_FLAGS, add_influx_flags, influx_overrides

if TYPE_CHECKING:
    from ..influx_setup import InfluxSetupConfig
    from ..rollups import Rollup


def add_parser(sub: Any) -> None:  # argparse's private _SubParsersAction
    p = sub.add_parser("influx", help="set up InfluxDB: database, retention, rollups",
                       description="Manage the InfluxDB 1.x database liveprof writes to.")
    actions = p.add_subparsers(dest="influx_command", required=True, metavar="ACTION")

    s = actions.add_parser(
        "setup", help="create/update the database, retention policies and rollup queries",
        description="Create the database with its raw retention policy as the default, the "
                    "rollup retention policies and one continuous query per rollup and "
                    "measurement; alter what differs, keep what matches (safe to run again). "
                    "Needs an admin user when InfluxDB has authentication on.")
    _connection_flags(s)
    _scheme_flags(s)
    s.add_argument("--dry-run", action="store_true",
                   help="print the statements for an empty server and exit (no connection)")
    s.set_defaults(run=run_setup)

    b = actions.add_parser(
        "backfill", help="roll up a past time range now",
        description="Run every rollup query (finest first) over a past time range: for data "
                    "older than the continuous queries look back (an imported old log, an "
                    "outage longer than a rollup's resample window).")
    _connection_flags(b)
    _scheme_flags(b)
    b.add_argument("--start", required=True, metavar="TIME",
                   help="ISO 8601 time (UTC unless it has an offset) or Unix ns")
    b.add_argument("--end", default=None, metavar="TIME", help="default now")
    b.set_defaults(run=run_backfill)


def _connection_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="TOML settings file (also LIVEPROF_CONFIG)")
    add_influx_flags(p)


def _scheme_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("retention and rollups (default: raw 7d; 1m for 90d; 1h for 1095d)")
    g.add_argument("--raw-policy", metavar="NAME", default=None,
                   help="name of the raw (default) retention policy (default raw)")
    g.add_argument("--raw-duration", metavar="DURATION", default=None,
                   help="how long raw points are kept (default 7d; INF: for ever)")
    g.add_argument("--rollup", action="append", metavar="NAME:INTERVAL:DURATION[:RESAMPLE_FOR]",
                   help="a rollup level, finest first, repeatable (replaces the defaults), "
                        "e.g. --rollup 1m:1m:90d:10m --rollup 1h:1h:1095d:2h")


def _parse_rollup(text: str) -> Rollup:
    from ..rollups import Rollup

    parts = text.split(":")
    if len(parts) not in (3, 4) or not all(parts):
        raise ValueError(f"--rollup {text!r}: expected NAME:INTERVAL:DURATION[:RESAMPLE_FOR]")
    return Rollup(name=parts[0], interval=parts[1], duration=parts[2],
                  resample_for=parts[3] if len(parts) == 4 else None)


def build_config(args: argparse.Namespace) -> InfluxSetupConfig:
    """The ``InfluxSetupConfig`` of the command line, the environment and the
    settings file (``ingest/config.py``); ``ValueError`` names what is wrong."""
    over = influx_overrides(args)
    if args.raw_policy or args.raw_duration:
        over["rollups.raw"] = {"name": args.raw_policy or "raw",
                               "duration": args.raw_duration or "7d"}
    if args.rollup:
        over["rollups.rollups"] = [_parse_rollup(r).model_dump() for r in args.rollup]
    from ..config import load  # (heavy imports only for the command that runs)

    flags = {**INFLUX_FLAGS, "rollups.raw": "--raw-policy/--raw-duration",
             "rollups.rollups": "--rollup"}
    return load(args.config, over, flags).setup_config()


def _config_or_error(args: argparse.Namespace) -> InfluxSetupConfig | None:
    from pydantic import ValidationError

    try:
        return build_config(args)
    except ValidationError as exc:
        msgs = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'setting'}: {e['msg']}"
                         for e in exc.errors())
        print(f"liveprof influx: invalid setting: {msgs}", file=sys.stderr)
    except (ValueError, ConfigError) as exc:
        print(f"liveprof influx: {exc}", file=sys.stderr)
    return None


def run_setup(args: argparse.Namespace) -> int:
    config = _config_or_error(args)
    if config is None:
        return 2
    if args.dry_run:
        # no connection needed: the statements for an empty server
        from ..rollups import statements

        for statement in statements(config.rollups, config.database):
            print(statement + ";")
        return 0
    from ..influx_setup import setup

    try:
        report = asyncio.run(setup(config))
    except LiveprofError as exc:
        print(f"liveprof influx setup: {exc}", file=sys.stderr)
        return 1
    for line in report.lines():
        print(line)
    changed = len(report.changed)
    print(f"{config.url} database {report.database}: "
          f"{changed} change{'s' if changed != 1 else ''}, {len(report.kept)} kept")
    return 0


def parse_time(text: str) -> int:
    """ISO 8601 (UTC unless it has an offset) or an integer of Unix ns."""
    text = text.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not a time: {text!r} (ISO 8601 like 2024-05-01T12:00 or Unix ns)") \
            from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp()) * 10**9 + dt.microsecond * 1000


def run_backfill(args: argparse.Namespace) -> int:
    config = _config_or_error(args)
    if config is None:
        return 2
    try:
        start = parse_time(args.start)
        end = parse_time(args.end) if args.end else int(datetime.now(UTC).timestamp() * 1e9)
    except ValueError as exc:
        print(f"liveprof influx backfill: {exc}", file=sys.stderr)
        return 2
    if end <= start:
        print("liveprof influx backfill: --end must be after --start", file=sys.stderr)
        return 2
    from ..influx_setup import backfill

    try:
        report = asyncio.run(backfill(config, start, end))
    except LiveprofError as exc:
        print(f"liveprof influx backfill: {exc}", file=sys.stderr)
        return 1
    for key, n in report.written.items():
        if n:
            print(f"{key}: {n} points")
    for key, n in report.beyond_retention.items():
        print(f"{key}: {n} points older than the policy keeps, dropped (the rest written)")
    print(f"{sum(report.written.values())} rollup points written")
    return 0
