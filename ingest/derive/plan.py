"""A release plan: what a pre-scan of a whole file lets the time-order merge
release before the end, so that it stays exactly a stable sort by time while
holding only a few blocks' worth of events.

The RTS writes each capability's events in blocks, each starting with a block
marker whose time is when the block was begun: an event in a capability's
block is not older than it, but for the start and end of a GC, posted with
the time taken when the GC started or ended (the buffer may fill in between:
1 to 3 ms older on a 500 MB log), whose times the pre-scan reads (the block's
*low*: its start, or the oldest of those).  So once the k-th block marker has
arrived, every event still to come is at least the smallest low of blocks k,
k+1, ... (the *bound* of block k), and every held event older than that can go.

The global buffer (capability ``None``) is the exception: GHC < 9.2 writes it
at exit, one block starting near time 0 that spans the whole run (counted by
its start it would hold everything), and its events need not be younger than
its start (an Eden ``CreateMachine`` is not).  So the pre-scan decodes the
global blocks themselves (if small, ``KNOWN_BYTES``) and the merge takes
their events as *known*: they are released with the held events, after them
on equal times (they arrive later), and when the block itself arrives, the
copies of those already released are dropped.  The bounds leave the global
blocks out.

A plan is made only when it is sure: a complete file whose data section is
blocks end to end (each marker where the previous block ends, the end marker
where the last ends: no event outside a block), checked on the bytes, and
global blocks within the limit.  Otherwise there is no plan and the merge
holds everything to the end (or to its memory bound), as without a pre-scan.

The merge's held events under a plan are ``planned.PlannedHold`` (``Merge.follow``).
"""

from __future__ import annotations

import struct
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import BinaryIO

from protocol import DecodeError, Decoder, Event, EventType

BLOCK_MARKER = int(EventType.BLOCK_MARKER)
KNOWN_BYTES = 2 << 20  # global blocks decoded ahead, at most (GHC's buffer is 2 MiB)
_MARKER = struct.Struct(">HQIQH")  # a block marker's record: type id, time, size, end time, cap
_DATA_BEGIN = b"hdredatb"  # the header's last bytes, just before the first event
_POS_INF = 1 << 80  # above any 64-bit time


@dataclass(frozen=True)
class Block:
    """A block of the file: where it is, and when it began."""

    offset: int
    size: int  # bytes from its marker on (up to the end marker, for the last)
    start: int  # its marker's time
    glob: bool  # the global buffer's (capability None)
    low: int  # its start, or the time of an event in it posted with an older time


@dataclass(frozen=True)
class ReleasePlan:
    """The blocks of the file at ``path`` (``header``: the bytes before the
    first; ``tail``: the offset of the end marker, read last with what follows
    it), the ``order`` in which they are read (file indexes), and after the
    j-th marker read the least time of any event to come, ``bounds[j]``
    (known blocks left out); ``known``: each global block's file index and
    its events in file order.

    Blocks are read in the order they began (then the known ones), not as
    they were written (the RTS writes a block when it is full): when one is
    read, every block begun before it is in, so what is held is only what
    overlaps it.  The merge orders equal times by file position all the same."""

    path: str
    header: int
    blocks: tuple[Block, ...]
    tail: int
    order: tuple[int, ...]
    bounds: tuple[int, ...]
    known: tuple[tuple[int, tuple[Event, ...]], ...]

    @classmethod
    def of(cls, path: str, header: int, blocks: Sequence[Block], tail: int,
           known: Sequence[tuple[int, Sequence[Event]]]) -> ReleasePlan:
        skip = {k for k, _ in known}
        order = sorted((k for k in range(len(blocks)) if k not in skip),
                       key=lambda k: blocks[k].low) + sorted(skip)
        return cls(path, header, tuple(blocks), tail, (), (),
                   tuple((k, tuple(evs)) for k, evs in known)).reading(order)

    def reading(self, order: Iterable[int]) -> ReleasePlan:
        """The plan for reading the blocks in ``order`` (file indexes)."""
        order = tuple(order)
        skip = {k for k, _ in self.known}
        bounds = [0] * len(order)
        low = _POS_INF
        for j in range(len(order) - 1, -1, -1):
            k = order[j]
            if k not in skip and self.blocks[k].low < low:
                low = self.blocks[k].low
            bounds[j] = low
        return replace(self, order=order, bounds=tuple(bounds))

    def only(self, wants: Collection[int], dropped: Iterable[tuple] = ()) -> ReleasePlan:
        """The plan as a pipeline sees the stream: known events of the types it
        decodes (block markers left out), less the first copy of each
        ``(type, time, cap)`` in ``dropped`` (the pre-scan's start-up events,
        which the pipeline merges first and drops from the stream: the first
        event of its type in the file, so in file order, the copy)."""
        seen = set(dropped)
        known = []
        for k, evs in self.known:
            keep = []
            for ev in evs:
                if ev.type not in wants or ev.type == BLOCK_MARKER:
                    continue
                key = (ev.type, ev.time, ev.cap)
                if key in seen:
                    seen.discard(key)
                    continue
                keep.append(ev)
            known.append((k, tuple(keep)))
        return replace(self, known=tuple(known))

    def in_file_order(self) -> ReleasePlan:
        """The plan for reading the file as it is (a plain sequential read)."""
        return self.reading(range(len(self.blocks)))

    @property
    def known_events(self) -> int:
        return sum(len(evs) for _, evs in self.known)

    def chunks(self, size: int = 1 << 18) -> Iterator[bytes]:
        """The file's bytes in the plan's order, at most ``size`` at a time:
        the header, the blocks, the end marker and whatever follows it (so as
        many bytes as the file has)."""
        with open(self.path, "rb") as f:
            yield from _pieces(f, 0, self.header, size)
            for k in self.order:
                b = self.blocks[k]
                yield from _pieces(f, b.offset, b.size, size)
            f.seek(self.tail)
            while data := f.read(size):
                yield data


def _pieces(f: BinaryIO, offset: int, length: int, size: int) -> Iterator[bytes]:
    f.seek(offset)
    while length > 0:
        data = f.read(min(size, length))
        if not data:
            return
        length -= len(data)
        yield data


def read_plan(path: str, markers: Sequence[Event], end_offset: int | None,
              lows: Sequence[int] | None = None,
              known_bytes: int = KNOWN_BYTES) -> ReleasePlan | None:
    """The plan of the complete file at ``path``, given its block markers in
    order, the offset just past its end marker and, per block, the least of
    its start and the times of the events in it the RTS may post with an
    older time (from a pre-scan); None when it cannot be sure (see the
    module doc)."""
    if end_offset is None or not markers:
        return None
    sizes = [m.fields[0] if len(m.fields) >= 3 else 0 for m in markers]
    if min(sizes) < _MARKER.size:
        return None
    tail = end_offset - 2
    blocks: list[Block] = []
    with open(path, "rb") as f:
        # the last block ends at the end marker, or just after it (GHC 9.2 counts it in)
        for start in (tail - sum(sizes), end_offset - sum(sizes)):
            if start >= len(_DATA_BEGIN):
                f.seek(start - len(_DATA_BEGIN))
                if f.read(len(_DATA_BEGIN)) == _DATA_BEGIN:
                    break
        else:
            return None
        off = start
        for m, size in zip(markers, sizes):
            f.seek(off)
            raw = f.read(_MARKER.size)
            if len(raw) < _MARKER.size:
                return None
            tid, t, n, end, cap = _MARKER.unpack(raw)
            if tid != BLOCK_MARKER or t != m.time or n != size or end != m.fields[1]:
                return None
            low = t if lows is None else min(t, lows[len(blocks)])
            blocks.append(Block(off, min(size, tail - off), t, m.cap is None, low))
            off += size
        glob = [(k, b) for k, b in enumerate(blocks) if b.glob]
        if sum(b.size for _, b in glob) > known_bytes:
            return None
        known = []
        if glob:
            f.seek(0)
            header = f.read(start)
            dec = Decoder()
            try:
                dec.feed(header)
                for k, b in glob:
                    f.seek(b.offset)
                    evs = dec.feed(f.read(b.size))
                    if not evs or evs[0].type != BLOCK_MARKER:
                        return None
                    known.append((k, evs[1:]))
                dec.feed(b"\xff\xff")
            except DecodeError:
                return None
            if not dec.close().complete:
                return None
    return ReleasePlan.of(path, start, blocks, tail, known)
