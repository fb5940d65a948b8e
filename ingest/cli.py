"""The ``liveprof`` command line.  Each subcommand lives in ``ingest.commands``
and registers itself with ``add_parser(subparsers)``; this module only
dispatches."""

from __future__ import annotations

import argparse
import sys

from .commands import COMMANDS
from .commands.defaults import Parser, resolve
from .errors import LiveprofError


def version() -> str:
    """The installed package's version (its metadata, so one number, in pyproject.toml)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as of

    try:
        return of("liveprof")
    except PackageNotFoundError:     # run from a checkout that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="liveprof", description="Live profiling and monitoring of GHC eventlogs.",
        epilog="Exit status of dump, derive, import, upload and monitor: 0 success, 1 bad "
               "data (malformed, cut or empty log), 2 usage or environment error.")
    parser.add_argument("--version", action="version", version=f"liveprof {version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=Parser)
    for module in COMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = resolve(build_parser().parse_args(argv))   # (flags not given: settings' defaults)
    try:
        return args.run(args) or 0
    except KeyboardInterrupt:
        return 130
    except LiveprofError as exc:     # ours, with a message: no traceback
        print(f"liveprof {args.command}: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # the reader went away (e.g. `liveprof dump x | head`): not an error
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
