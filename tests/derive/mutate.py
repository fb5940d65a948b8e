"""Mutated real eventlogs for the derive pipeline, and a runner that tells a
clean end from a fault.

The decoder is fuzzed on its own (tests/protocol/test_fuzz.py); these mutations
aim past it: they keep the records parseable and change what is in them, so
that the derivers see what a decoder legitimately returns from odd input --
short (older) layouts, fields it could not read (``None``), huge times and
huge integers.  ``Log`` knows where each record is (from the header's
declarations), so a mutation can rewrite a time or a payload in place.

Run by hand for a longer campaign (prints inputs tried, failures, peak RSS):

    python -m tests.derive.mutate [--inputs N] [--seed S] [--log NAME ...]
"""

from __future__ import annotations

import argparse
import logging
import random
import resource
import signal
import struct
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from ingest.derive.base import DeriveSettings
from ingest.derive.order import OrderSettings
from ingest.derive.pipeline import Identity, Pipeline
from protocol import DecodeError, Decoder

_H = struct.Struct(">H")
_I = struct.Struct(">I")
_Q = struct.Struct(">Q")
BLOCK_MARKER = 18
SECOND = 1_000_000_000


@dataclass(frozen=True)
class Record:
    pos: int        # offset of the record (its type id)
    type: int
    payload: int    # offset of the payload
    size: int       # payload bytes
    variable: bool  # a u16 length precedes the payload


class Log:
    """A real log's bytes, its header's declarations and the position of every
    event record."""

    def __init__(self, data: bytes):
        self.data = data
        dec = Decoder(only=set())
        dec.feed(data)
        self.sizes = {et.id: et.size for et in dec.header.event_types}
        self.decls = self._declarations()
        self.records = self._records()

    def _declarations(self) -> dict[int, int]:
        """type id -> offset of its declared size (i16) in the header."""
        out = {}
        data = self.data
        pos = data.index(b"hetb") + 4
        while data[pos:pos + 4] == b"etb\0":
            (ty,) = _H.unpack_from(data, pos + 4)
            out[ty] = pos + 6
            (dlen,) = _I.unpack_from(data, pos + 8)
            pos += 12 + dlen
            (elen,) = _I.unpack_from(data, pos)
            pos += 4 + elen + 4  # extra info, then "ete\0"
        return out

    def _records(self) -> list[Record]:
        data = self.data
        pos = data.index(b"datb") + 4
        out = []
        while pos + 2 <= len(data):
            (ty,) = _H.unpack_from(data, pos)
            if ty == 0xFFFF:
                break
            size = self.sizes[ty]
            variable = size is None
            start = pos + 10
            if variable:
                (size,) = _H.unpack_from(data, start)
                start += 2
            out.append(Record(pos, ty, start, size, variable))
            pos = start + size
        return out

    def shift(self, after: int, by_ns: int) -> bytes:
        """The log with every event at or after ``after`` (a time) moved ``by_ns``
        later (block markers' end times too), clamped to 64 bits."""
        buf = bytearray(self.data)
        top = (1 << 64) - 1
        for r in self.records:
            (t,) = _Q.unpack_from(buf, r.pos + 2)
            if t >= after:
                _Q.pack_into(buf, r.pos + 2, min(top, t + by_ns))
            if r.type == BLOCK_MARKER and r.size >= 12:
                (end,) = _Q.unpack_from(buf, r.payload + 4)
                if end >= after:
                    _Q.pack_into(buf, r.payload + 4, min(top, end + by_ns))
        return bytes(buf)

    def median_time(self) -> int:
        times = sorted(_Q.unpack_from(self.data, r.pos + 2)[0] for r in self.records
                       if r.type != BLOCK_MARKER)
        return times[len(times) // 2]


# --- mutations ------------------------------------------------------------------

def _events(log: Log, rng: random.Random) -> list[Record]:
    return [r for r in log.records if r.type != BLOCK_MARKER] or log.records


def m_flip(log: Log, buf: bytearray, rng: random.Random) -> str:
    i = rng.randrange(len(buf))
    buf[i] ^= 1 << rng.randrange(8)
    return f"flip {i}"


def m_time(log: Log, buf: bytearray, rng: random.Random) -> str:
    r = rng.choice(_events(log, rng))
    t = rng.choice([(1 << 64) - 1, 1 << 63, rng.getrandbits(64), 10**10 * SECOND,
                    _Q.unpack_from(buf, r.pos + 2)[0] + 10**5 * SECOND, 0])
    _Q.pack_into(buf, r.pos + 2, t)
    return f"time {r.pos}={t}"


def m_int(log: Log, buf: bytearray, rng: random.Random) -> str:
    r = rng.choice([r for r in _events(log, rng) if r.size] or log.records)
    if r.size == 0:
        return "int none"
    width = min(r.size, rng.choice([1, 2, 4, 8]))
    at = r.payload + rng.randrange(r.size - width + 1)
    buf[at:at + width] = rng.choice([b"\xff" * width, b"\x00" * width,
                                     rng.getrandbits(8 * width).to_bytes(width, "big")])
    return f"int {at}:{width}"


def m_short_decl(log: Log, buf: bytearray, rng: random.Random) -> bytes:
    """A fixed-size type declared shorter, each of its records cut to match
    (the decoder then takes a shorter layout or none): a new byte string."""
    fixed = [ty for ty, s in log.sizes.items() if s and ty in log.decls and ty != BLOCK_MARKER
             and any(r.type == ty for r in log.records)]
    if not fixed:
        return bytes(buf)
    ty = rng.choice(fixed)
    return redeclare(log, buf, ty, rng.randrange(log.sizes[ty]))


def redeclare(log: Log, buf: bytearray, ty: int, new: int) -> bytes:
    """``buf`` (the bytes of ``log``) with type ``ty`` declared ``new`` bytes
    long and each of its records cut to match."""
    _H.pack_into(buf, log.decls[ty], new)
    parts, last = [], 0
    for r in log.records:
        if r.type == ty:
            parts.append(buf[last:r.payload + new])
            last = r.payload + r.size
    parts.append(buf[last:])
    return b"".join(parts)


def m_short_var(log: Log, buf: bytearray, rng: random.Random) -> bytes:
    """A variable-size record's payload cut short (its length field too)."""
    var = [r for r in log.records if r.variable and r.size]
    if not var:
        return bytes(buf)
    r = rng.choice(var)
    new = rng.randrange(r.size)
    _H.pack_into(buf, r.payload - 2, new)
    return bytes(buf[:r.payload + new] + buf[r.payload + r.size:])


def m_truncate(log: Log, buf: bytearray, rng: random.Random) -> bytes:
    return bytes(buf[:rng.randrange(len(buf))])


IN_PLACE = (m_flip, m_time, m_int)
RESHAPE = (m_short_decl, m_short_var, m_truncate)


def mutate(log: Log, rng: random.Random, n: int | None = None) -> tuple[bytes, list[str]]:
    """Up to ``n`` in-place mutations, sometimes then one that reshapes."""
    buf = bytearray(log.data)
    what = []
    for _ in range(n if n is not None else rng.randint(1, 4)):
        what.append(rng.choice(IN_PLACE)(log, buf, rng))
    if rng.random() < 0.5:
        m = rng.choice(RESHAPE)
        what.append(m.__name__)
        return m(log, buf, rng), what
    return bytes(buf), what


# --- running --------------------------------------------------------------------

def derive(data: bytes, decoder_cls=Decoder, chunk: int = 65536, live: bool = False,
           settings: DeriveSettings | None = None) -> tuple[list, Pipeline, str | None]:
    """The whole pipeline over ``data``, as ``liveprof derive`` runs it: points
    (rendered as line protocol), the pipeline, and the DecodeError text if the
    decoder stopped (or where the stream was cut).  Anything else raised is a
    bug and propagates."""
    pipe = Pipeline(settings or DeriveSettings(), Identity(host="fuzz", session="s"),
                    order=OrderSettings(live=live))
    dec = decoder_cls(only=pipe.wants)
    points, error = [], None
    try:
        for i in range(0, len(data), chunk):
            points.extend(pipe.feed(dec.feed(data[i:i + chunk])))
        end = dec.close()
        if end.truncated:
            error = f"cut: {end.reason} at byte {end.offset}"
    except DecodeError as exc:
        points.extend(pipe.feed(exc.events))
        error = str(exc)
    points.extend(pipe.close())
    lines = [p.to_line() for p in points]
    return lines, pipe, error


class Hang(Exception):
    pass


def _hang(signum, frame):
    raise Hang("over 10 s")


def campaign(names: list[str], inputs: int, seed: int) -> int:
    from tests.conftest import PythonDecoder
    from tests.corpus import all_logs
    logs = all_logs()
    seeds = [Log(logs[n].read_bytes()) for n in names]
    rng = random.Random(seed)
    # a runaway input raises (MemoryError, Hang) instead of taking the machine down
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, resource.RLIM_INFINITY))
    signal.signal(signal.SIGALRM, _hang)
    logging.getLogger("liveprof.derive").setLevel(logging.ERROR)  # (stream faults are expected)
    failures: dict[str, list] = {}
    faults = 0
    slowest = (0.0, -1)
    t0 = time.monotonic()
    for i in range(inputs):
        log = rng.choice(seeds)
        data, what = mutate(log, rng)
        cls = rng.choice([Decoder, PythonDecoder])
        live = rng.random() < 0.3
        signal.alarm(10)
        t1 = time.monotonic()
        try:
            _, pipe, _ = derive(data, cls, rng.choice([1 << 20, 4096, 333]), live)
            faults += getattr(pipe, "stream_fault", None) is not None
            unexpected = list(getattr(pipe, "deriver_faults", {}).values())
            if unexpected:
                raise AssertionError(unexpected[0])
        except Exception as exc:
            tb = traceback.extract_tb(exc.__traceback__)
            exc.__traceback__ = None  # (frees what the failed run held)
            where = next((f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(tb)
                          if "ingest" in f.filename), "?")
            key = f"{type(exc).__name__} at {where}"
            msg = "" if isinstance(exc, MemoryError) else str(exc)[:200]
            if key not in failures:
                print(f"new: {key}: input {i} {what}: {msg}", flush=True)
            failures.setdefault(key, []).append((i, what, msg))
        finally:
            signal.alarm(0)
            slowest = max(slowest, (time.monotonic() - t1, i))
        if (i + 1) % 200 == 0:
            print(f"{i + 1} inputs, {len(failures)} distinct failures, "
                  f"{time.monotonic() - t0:.0f} s", file=sys.stderr)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"inputs tried: {inputs}; stream faults (time jumps): {faults}; "
          f"distinct failures: {len(failures)}; peak RSS: {rss:.0f} MiB; "
          f"{time.monotonic() - t0:.0f} s (slowest input: {slowest[1]}, {slowest[0]:.2f} s)")
    for key, cases in sorted(failures.items()):
        print(f"  {len(cases):5d} x {key}: first: input {cases[0][0]} {cases[0][1]}: {cases[0][2]}")
    return 1 if failures else 0


DEFAULT_LOGS = ["threads-mvar.nonthreaded.l", "hello-ghc-8.6.5", "ghc-9.2-events", "sleep.hd",
                "nonmoving-gc-census", "heapprof.prof.nonthreaded.hb", "sleep.hC", "parallelTest"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--inputs", type=int, default=2000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--log", action="append", help="log names (tests/data or the corpus)")
    a = p.parse_args()
    return campaign(a.log or DEFAULT_LOGS, a.inputs, a.seed)


if __name__ == "__main__":
    sys.exit(main())
