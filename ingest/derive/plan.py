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

``PlannedHold`` is the merge's held events under a plan (``Merge.follow``).
"""

from __future__ import annotations

import struct
from bisect import bisect_right
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from itertools import chain
from operator import itemgetter
from typing import BinaryIO

from protocol import DecodeError, Decoder, Event, EventType

BLOCK_MARKER = int(EventType.BLOCK_MARKER)
KNOWN_BYTES = 2 << 20  # global blocks decoded ahead, at most (GHC's buffer is 2 MiB)
_MARKER = struct.Struct(">HQIQH")  # a block marker's record: type id, time, size, end time, cap
_DATA_BEGIN = b"hdredatb"  # the header's last bytes, just before the first event
_TYPE = itemgetter(0)  # Event.type
_TIME = itemgetter(2)  # Event.time (and a late item's sort key, order._Late)
_NEG_INF = -(1 << 63)
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


class PlannedHold:
    """The whole-file merge's held events under a plan (``Merge.follow``):
    ``push(events)`` returns what can go, in order (late ones wrapped, as
    ``Merge`` makes them), ``flush()`` the rest.  The stream must come in the
    plan's order (``ReleasePlan.chunks``).

    Held: the arrivals of the block being read, in order, and earlier blocks'
    in sorted runs, one per block (each sorted once, cut from the front at
    each release), so a release costs about what it releases; equal times go
    by the blocks' places in the file, then by arrival.  The frontier:
    everything at or before it, held or known, is out; a later arrival older
    than it is late (only if the RTS broke the block rule), wrapped and
    released at the next release right after what it missed.  The memory
    bound is ``Merge``'s: at a check (every ``check_every`` arrivals) more than
    ``max_held`` held releases the oldest until half remain, known ones with
    them."""

    def __init__(self, plan: ReleasePlan, max_held: int, check_every: int, late: type):
        self._order = plan.order
        self._bounds = plan.bounds
        # known block -> its events neither released nor arrived, sorted by time
        self._pool: dict[int, list] = {k: sorted(evs, key=_TIME) for k, evs in plan.known}
        self._known = frozenset(self._pool)
        self._arrived: list = []
        self._runs: list[tuple[int, list]] = []  # (file index of the block, its events held)
        self._count = 0  # held: arrivals and runs
        self.frontier = _NEG_INF
        self._read = -1  # markers read, less one
        self._block = -1  # the file index of the block being read (-1: before the first)
        self._in_known = False
        self.max_held = max_held
        self.check_every = check_every
        self._countdown = check_every
        self._late = late
        self.late_events = 0
        self.evicted = 0

    @property
    def held(self) -> int:
        return self._count

    def reorder(self, plan: ReleasePlan) -> None:
        """Read the blocks in ``plan``'s order instead (the same file's plan;
        before any block marker)."""
        if self._read >= 0:
            raise ValueError("the blocks' order is set once a block marker has arrived")
        self._order, self._bounds = plan.order, plan.bounds

    def push(self, events: list, types: Collection[int] | None) -> list:
        out: list = []
        if BLOCK_MARKER in (types if types is not None else map(_TYPE, events)):
            ids = list(map(_TYPE, events))
            at = 0
            while True:
                try:
                    i = ids.index(BLOCK_MARKER, at)
                except ValueError:
                    break
                if i > at:
                    self._arrive(events[at:i], out)
                self._marker(out)
                at = i + 1
            if at < len(events):
                self._arrive(events[at:], out)
        elif events:
            self._arrive(events, out)
        return out

    def flush(self) -> list:
        """End of stream: everything held, and known events whose block never
        came (the file was read short of what the pre-scan saw)."""
        out: list = []
        self._release(_POS_INF, out)
        return out

    # -- internals -----------------------------------------------------------------

    def _marker(self, out: list) -> None:
        self._sorted_arrivals()
        self._read = j = self._read + 1
        if j < len(self._order):
            self._block = k = self._order[j]
            f = self._bounds[j] - 1
            if f > self.frontier:
                self._release(f, out)
        else:  # (more blocks than the pre-scan saw: no more releases, the rest at the end)
            self._block = k = len(self._order) + j
        self._in_known = k in self._known
        if self._in_known:  # its events come now: the rest are arrivals
            del self._pool[k]

    def _arrive(self, events: list, out: list) -> None:
        """Events arrive (their lateness is looked at when they are sorted,
        ``_sorted_arrivals``: the frontier stays as they found it until then)."""
        if self._in_known:  # the copies of those released already (at or before the frontier)
            frontier = self.frontier
            events = [ev for ev in events if ev[2] > frontier]
        n = len(events)
        if not n:
            return
        every = self.check_every
        if self._count + n <= self.max_held:  # no memory check on the way can find too many
            self._arrived.extend(events)
            self._count += n
            c = self._countdown - n  # the checks passed on the way, then reset
            self._countdown = c if c > 0 else every - (-c) % every
            return
        pos = 0
        while pos < n:
            k = min(self._countdown, n - pos)
            self._arrived.extend(events[pos:pos + k])
            self._count += k
            pos += k
            self._countdown -= k
            if self._countdown <= 0:
                self._countdown = every
                if self._count > self.max_held:
                    self._evict(out)

    def _sorted_arrivals(self) -> None:
        """The arrivals so far of the block being read join its sorted run.  An
        arrival older than the frontier (only if the RTS broke the block rule)
        is late: wrapped, with the frontier as its sort key (right after what
        it missed)."""
        arrived = self._arrived
        if not arrived:
            return
        self._arrived = []
        run = sorted(arrived, key=_TIME)
        frontier = self.frontier
        if _TIME(run[0]) < frontier:
            late = self._late
            run = [late((-1, None, frontier, ev)) if ev[2] < frontier else ev for ev in arrived]
            self.late_events += sum(1 for ev in arrived if ev[2] < frontier)
            run.sort(key=_TIME)
        runs = self._runs
        if runs and runs[-1][0] == self._block:  # (its earlier arrivals, after an eviction)
            run = _merge([runs.pop()[1], run])
        runs.append((self._block, run))

    def _evict(self, out: list) -> None:
        """As ``Merge._evict``: the events held at or before the frontier (late
        ones) go; of the others, if more than ``max_held``, the oldest go until
        half remain (all of equal time together), and the frontier rises to
        them."""
        self._sorted_arrivals()
        frontier = self.frontier
        times = sorted(chain.from_iterable(map(_TIME, r) for _, r in self._runs))
        cut = bisect_right(times, frontier)
        if len(times) - cut > self.max_held:
            excess = len(times) - cut - self.max_held // 2
            cut_time = times[cut + excess - 1]
            if cut_time > frontier:
                self.evicted += bisect_right(times, cut_time) - cut
                frontier = cut_time
        if cut or frontier > self.frontier:
            self._release(frontier, out)

    def _release(self, frontier: int, out: list) -> None:
        """Everything held or known at or before ``frontier`` goes, in order:
        by time, then by the blocks' places in the file (and the first
        arrivals, before any block: the pipeline's start-up events, first),
        then by arrival."""
        self._sorted_arrivals()
        self.frontier = frontier
        parts = []
        released = 0
        for k, r in self._runs:
            if _TIME(r[0]) <= frontier:
                cut = bisect_right(r, frontier, key=_TIME)
                released += cut
                parts.append((k, r[:cut]))
                del r[:cut]  # (in place: what stays is not touched again)
        for k, r in self._pool.items():
            if r and _TIME(r[0]) <= frontier:
                cut = bisect_right(r, frontier, key=_TIME)
                parts.append((k, r[:cut]))
                del r[:cut]
        if released:
            self._count -= released
            self._runs = [kr for kr in self._runs if kr[1]]
        if len(parts) == 1:
            out.extend(parts[0][1])
        elif parts:
            parts.sort(key=_FIRST)
            out.extend(_merge([r for _, r in parts]))


_FIRST = itemgetter(0)


def _merge(runs: list[list]) -> list:
    """Sorted runs as one: by time, equal times in the order of the runs."""
    one = list(chain.from_iterable(runs))
    one.sort(key=_TIME)
    return one
