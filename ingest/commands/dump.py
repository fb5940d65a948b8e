"""``liveprof dump FILE|-``: decoded events as JSON lines, or totals per type."""

from __future__ import annotations

import json
import sys
from collections import Counter

from protocol import event_json

from ..counts import BLOCK_MARKER
from ..errors import SourceError
from ..session import LogReader
from .outcome import BAD_DATA, OK, USAGE, InputError, check_input


def add_parser(sub) -> None:
    p = sub.add_parser("dump", help="print decoded events as JSON lines",
                       description="Decode an eventlog (a file, a named pipe, or - for stdin) "
                                   "and print one JSON object per event, in file order.")
    p.add_argument("path", metavar="FILE|-")
    p.add_argument("--summary", action="store_true",
                   help="print totals per event type (one JSON object) instead of the events")
    p.set_defaults(run=run)


def run(args) -> int:
    try:
        check_input(args.path)
    except InputError as exc:
        print(f"liveprof: {exc}", file=sys.stderr)
        return USAGE
    reader = LogReader()
    out = sys.stdout
    counts: Counter = Counter()
    status = OK
    try:
        for events in reader.read(args.path):
            if args.summary:
                counts.update(ev.name for ev in events if ev.type != BLOCK_MARKER)
            else:
                out.write("".join([event_json(ev) + "\n" for ev in events
                                   if ev.type != BLOCK_MARKER]))
    except SourceError as exc:
        print(f"liveprof: {exc}", file=sys.stderr)
        return USAGE
    end = reader.close()
    problem = end.describe(args.path)
    if problem:
        print(f"liveprof: {problem}", file=sys.stderr)
        status = BAD_DATA
    if args.summary:
        summary = {"event_count": sum(counts.values()), "counts": dict(sorted(counts.items())),
                   "complete": end.complete, "end": None if reader.failed else end.reason}
        out.write(json.dumps(summary) + "\n")
    out.flush()
    return status
