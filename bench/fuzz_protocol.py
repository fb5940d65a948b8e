"""A longer fuzz campaign of the protocol layer, by hand (docs/fuzzing.md).

    python bench/fuzz_protocol.py [--seconds S] [--seed N] [--save DIR] [--only PART]

    (or LIVEPROF_FUZZ_SECONDS=S; default 60)

Runs the checks of tests/fuzz for as long as asked, the time shared by three
parts: the eventlog decoder (mutated real logs, both record loops, random
splits), the monitor message layer (random and mutated CBOR through a
session) and datagrams at a running UDP listener on loopback (hostile
senders on 127.0.0.2-9 while a good one streams a real log, round after
round).  Prints the inputs tried, the failures found (each saved to DIR when
given, to replay) and the peak RSS of this process.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import resource
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("LIVEPROF_CORPUS", str(Path(__file__).resolve().parent.parent.parent
                                             / "shared" / "corpus"))

from tests.fuzz import test_datagram_fuzz as dg
from tests.fuzz import test_decoder_fuzz as dec
from tests.fuzz import test_monitor_fuzz as mon

SHARES = {"decoder": 0.4, "monitor": 0.3, "datagram": 0.3}


class Campaign:
    def __init__(self, seed: int, save: Path | None):
        self.rng = random.Random(seed)
        self.save = save
        self.tried: Counter[str] = Counter()
        self.failures: Counter[tuple[str, str]] = Counter()

    def failed(self, part: str, exc: BaseException, data: bytes | None) -> None:
        where = traceback.extract_tb(exc.__traceback__)[-1]
        key = (part, f"{type(exc).__name__} at {Path(where.filename).name}:{where.lineno}: "
                     f"{str(exc)[:160]}")
        self.failures[key] += 1
        if self.save and data is not None and self.failures[key] == 1:
            self.save.mkdir(parents=True, exist_ok=True)
            (self.save / f"{part}-{len(self.failures)}.bin").write_bytes(data)

    def decoder(self, until: float) -> None:
        logs = dec.seeds()
        while time.monotonic() < until:
            data = dec.mutate(self.rng.choice(logs), self.rng, logs)
            try:
                dec.check(data, self.rng)
            except Exception as exc:
                self.failed("decoder", exc, data)
            self.tried["decoder"] += 1

    def monitor(self, until: float) -> None:
        bodies = mon.real_bodies()
        receiver = mon.Receiver()
        while time.monotonic() < until:
            r = self.rng.random()
            if r < 0.4:
                body = mon.cbor_noise(self.rng)
            elif r < 0.5:
                body = self.rng.randbytes(self.rng.randint(0, 1400))
            else:
                start = self.rng.randrange(len(bodies) - 50)
                for b in bodies[start:start + 50]:          # some context for the session
                    mon.check_bodies([b], receiver)
                body = mon.mutate(self.rng.choice(bodies), self.rng)
            try:
                mon.check_bodies([body], receiver)
            except Exception as exc:
                self.failed("monitor", exc, body)
                receiver = mon.Receiver()
            self.tried["monitor"] += 1

    def datagram(self, until: float) -> None:
        async def rounds() -> None:
            bodies = mon.real_bodies()
            while time.monotonic() < until:
                rng = random.Random(self.rng.randrange(1 << 30))
                drops = dg.kernel_udp_drops()
                try:
                    async with dg.Listener(idle_timeout=1.0) as listener:
                        good = asyncio.create_task(
                            listener.send(dg.SMALL, duplicate=1.0, interval=0.005))
                        self.tried["datagram"] += await dg.blast(listener.address, rng, bodies,
                                                                 2500)
                        await good
                        drops = dg.kernel_udp_drops() - drops
                        dg.check_bounds(listener.source)
                        await listener.got.wait(
                            lambda g: any(s.ended and s.info.peer.startswith("127.0.0.1:")
                                          for s in g.streams), 60)
                        assert not listener.task.done(), "the listener stopped"
                    (stream,) = [s for s in listener.got.streams
                                 if s.info.peer.startswith("127.0.0.1:")]
                    if drops:      # the machine stalled the listener: not liveprof's loss
                        self.tried["datagram rounds with kernel drops"] += 1
                    dg.assert_complete_unless_dropped(stream.lines, dg.SMALL, drops,
                                                      dg.assert_same_events)
                except Exception as exc:
                    self.failed("datagram", exc, None)
                self.tried["datagram rounds"] += 1
        asyncio.run(rounds())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float,
                    default=float(os.environ.get("LIVEPROF_FUZZ_SECONDS", 60)))
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--save", type=Path, help="write each new failure's input here")
    ap.add_argument("--only", choices=sorted(SHARES), help="run one part for the whole time")
    args = ap.parse_args()
    # the listener logs every bad datagram it drops: expected here, and slow to print
    logging.getLogger("liveprof").setLevel(logging.CRITICAL)
    campaign = Campaign(args.seed, args.save)
    parts = {args.only: 1.0} if args.only else SHARES
    start = time.monotonic()
    for part, share in parts.items():
        until = time.monotonic() + share * args.seconds
        getattr(campaign, part)(until)
    elapsed = time.monotonic() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"fuzz campaign: seed {args.seed}, {elapsed:.0f} s")
    for part, n in campaign.tried.items():
        print(f"  {part}: {n} {'listener runs' if part.endswith('rounds') else 'inputs tried'}")
    print(f"  failures: {sum(campaign.failures.values())} "
          f"({len(campaign.failures)} distinct)")
    for (part, what), n in campaign.failures.most_common():
        print(f"    {part}: {n} x {what}")
    print(f"  peak RSS: {peak:.1f} MiB")
    sys.exit(1 if campaign.failures else 0)


if __name__ == "__main__":
    main()
