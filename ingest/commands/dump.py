"""``liveprof dump FILE|-``: decoded events as JSON lines, or totals per type."""

from __future__ import annotations

import json
import sys
from collections import Counter

from protocol import DecodeError, Decoder, EventType, event_json

from ..chunks import read_chunks
from ..errors import SourceError
from .outcome import BAD_DATA, OK, USAGE, InputError, check_input, describe_end

BLOCK_MARKER = int(EventType.BLOCK_MARKER)


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
    decoder = Decoder()
    out = sys.stdout
    counts: Counter = Counter()
    status = OK
    try:
        for chunk in read_chunks(args.path):
            events = decoder.feed(chunk)
            if args.summary:
                counts.update(ev.name for ev in events if ev.type != BLOCK_MARKER)
            else:
                out.write("".join([event_json(ev) + "\n" for ev in events
                                   if ev.type != BLOCK_MARKER]))
    except SourceError as exc:
        print(f"liveprof: {exc}", file=sys.stderr)
        return USAGE
    except DecodeError as exc:
        if not args.summary:
            out.write("".join(event_json(ev) + "\n" for ev in exc.events
                              if ev.type != BLOCK_MARKER))
        counts.update(ev.name for ev in exc.events if ev.type != BLOCK_MARKER)
        print(f"liveprof: {args.path}: {exc}", file=sys.stderr)
        status = BAD_DATA
        end = None
    else:
        end = decoder.close()
        problem = describe_end(args.path, end)
        if problem:
            print(f"liveprof: {problem}", file=sys.stderr)
            status = BAD_DATA
    if args.summary:
        summary = {"event_count": sum(counts.values()), "counts": dict(sorted(counts.items())),
                   "complete": bool(end and end.complete),
                   "end": None if end is None else end.reason}
        out.write(json.dumps(summary) + "\n")
    out.flush()
    return status
