"""A big valid eventlog made from a small real one: its header once, then its
event records over and over, each copy's timestamps (and block markers' end
times) shifted past the previous copy's, and one end marker.  Streamed in
pieces, never built whole."""

from __future__ import annotations

import struct

from protocol import Decoder

BLOCK_MARKER = 18
GAP_NS = 11_000_000_000   # between copies: longer than the live merge's max lag
_Q = struct.Struct(">Q")


class RepeatedLog:
    def __init__(self, log: bytes):
        dec = Decoder(only=set())
        dec.feed(log)
        sizes = {et.id: et.size for et in dec.header.event_types}
        start = log.index(b"hdredatb") + 8
        self.header = log[:start]
        pos, segs, times, last = start, [], [], 0
        cut = start
        while True:
            (ty,) = struct.unpack_from(">H", log, pos)
            if ty == 0xFFFF:
                break
            segs.append(log[cut:pos + 2])
            (t,) = _Q.unpack_from(log, pos + 2)
            times.append(t)
            last = max(last, t)
            pos += 10
            size = sizes[ty]
            if size is None:
                (size,) = struct.unpack_from(">H", log, pos)
                pos += 2
            cut = pos - 2 if sizes[ty] is None else pos
            if ty == BLOCK_MARKER:          # u32 size, u64 end time, u16 cap
                segs.append(log[cut:pos + 4])
                (end,) = _Q.unpack_from(log, pos + 4)
                times.append(end)
                last = max(last, end)
                cut = pos + 12
            pos += size
        segs.append(log[cut:pos])
        self.segs = segs
        self.times = times
        self.span = last + GAP_NS
        self.copy_bytes = sum(map(len, segs)) + 8 * len(times)

    def copy(self, k: int) -> bytes:
        shift = k * self.span
        parts = [self.segs[0]]
        pack = _Q.pack
        for t, seg in zip(self.times, self.segs[1:]):
            parts.append(pack(t + shift))
            parts.append(seg)
        return b"".join(parts)

    def copies_for(self, total: int) -> int:
        return max(1, (total - len(self.header)) // self.copy_bytes)

    def pieces(self, copies: int):
        yield self.header
        for k in range(copies):
            yield self.copy(k)
        yield b"\xff\xff"

    def size(self, copies: int) -> int:
        return len(self.header) + copies * self.copy_bytes + 2
