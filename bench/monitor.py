"""Receive-side throughput of the monitor protocol, sans-IO: frames -> CBOR
messages -> session -> eventlog bytes -> decoded events.

    python bench/monitor.py FILE [--max-size N] [--datagram]

The messages are made from FILE by the test monitor (tests/monitor), then
received as one TCP byte stream (or as datagrams: one message each, with the
duplicate check on).  Prints MB of frames per second, messages and events per
second, and peak RSS."""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from protocol import Decoder
from protocol.monitor import FrameReader, Session, decode_message
from tests.monitor import fake_monitor as fm


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("path")
    ap.add_argument("--max-size", type=int, default=None)
    ap.add_argument("--datagram", action="store_true")
    args = ap.parse_args()
    log = fm.load_eventlog(Path(args.path).read_bytes())
    if args.datagram:
        bodies = fm.datagram_bodies(log, max_size=args.max_size or 1200)
    else:
        bodies = fm.stream_bodies(log, max_size=args.max_size)
    stream = b"".join(fm.frame(b) for b in bodies)
    best = None
    for _ in range(3):
        t0 = time.perf_counter()
        session, decoder, events = Session(datagram=args.datagram), Decoder(), 0
        if args.datagram:
            for body in bodies:
                events += len(decoder.feed(session.receive(decode_message(body))))
        else:
            frames = FrameReader()
            for i in range(0, len(stream), 1 << 16):
                msgs = [decode_message(b) for _, b in frames.feed(stream[i:i + (1 << 16)])]
                events += len(decoder.feed(session.receive_all(msgs)))
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{args.path}: {len(stream) / 1e6:.1f} MB of frames, {len(bodies)} messages, "
          f"{events} events; best of 3: {best:.2f} s, {len(stream) / best / 1e6:.1f} MB/s, "
          f"{len(bodies) / best / 1e3:.0f}k messages/s, {events / best / 1e3:.0f}k events/s; "
          f"peak RSS {rss:.0f} MB ({'datagrams' if args.datagram else 'TCP stream'})")


if __name__ == "__main__":
    main()
