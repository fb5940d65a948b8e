"""The ``liveprof`` command line.  Each subcommand lives in ``ingest.commands``
and registers itself with ``add_parser(subparsers)``; this module only
dispatches."""

from __future__ import annotations

import argparse
import atexit
import os
import sys
from typing import NoReturn

from .commands import MODULES, load
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


class _Version(argparse.Action):
    """``--version``: the version is looked up when asked for (the package
    metadata costs a few ms that every other run saves)."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="show the version and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"liveprof {version()}")
        parser.exit()


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with ``only`` (a command's name), that command
    alone: what ``main`` parses once it knows the command."""
    parser = Parser(
        prog="liveprof", description="Live profiling and monitoring of GHC eventlogs.",
        epilog="Exit status of dump, derive, import, upload and monitor: 0 success, 1 bad "
               "data (malformed, cut or empty log), 2 usage or environment error.")
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=Parser)
    for name in (only,) if only else MODULES:
        load(name).add_parser(sub)
    return parser


def command_of(argv: list[str]) -> str | None:
    """The command named in ``argv``, when it is the first word that is not
    an option (``--help``, ``--version`` and a mistyped command need the whole parser)."""
    for word in argv:
        if not word.startswith("-"):
            return word if word in MODULES else None
    return None


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    args = resolve(build_parser(command_of(argv)).parse_args(argv))   # (flags not given: settings' defaults)
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


def entry() -> NoReturn:
    """The ``liveprof`` program: ``main``, then out without tearing down the
    interpreter's modules and objects one by one (a tenth of a second and
    more after a big import), once the exit handlers ran and the output is
    flushed.  ``main`` itself returns, for callers in the same process."""
    code = main()
    atexit._run_exitfuncs()     # (logging's handlers are flushed and closed here)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):   # closed, or the reader went away
            pass
    os._exit(code)


if __name__ == "__main__":
    entry()
