"""Event blocks on the receiving side (docs/monitor-protocol.md section 7.4).

A sender that keeps blocks sends, for each block of the eventlog, a block
header (id, begin and end time, capability, number of events) and then each
event of the block as a block part carrying the block's id.  ``Blocks``
gathers the parts of each block and, once it holds as many events as the
header says, gives the block back as eventlog bytes: a block-marker event
record (time = begin, size = the bytes of the marker and the records, end
time, capability; ``0xffff`` for the global buffer), then the records in
the order they came.  Those are the bytes the program wrote, so the
decoder gives each event its capability again.

Datagrams may be lost or reordered:

* parts that come before their block's header wait for it (``orphans``);
  if it never comes within ``wait`` seconds they are dropped and counted
  (``orphan_events``): with no header there is no capability to give;
* a block whose events do not all come is given out with the events it has
  (its missing ones counted in ``missing_events``) when a later block is
  complete (senders send blocks in order), after ``wait`` seconds, or when
  the bytes held pass ``max_bytes`` or a ``Budget`` shared with other
  sessions (oldest first);
* a repeated header of a block already known is ignored (``repeated``).

No IO and no clock: the session hands in ``now``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ._messages import BlockHeader
from ._reassembly import Budget

_MARKER = struct.Struct(">HQIQH")
MARKER_SIZE = 24
BLOCK_MARKER = 18
MAX_BLOCK_EVENTS = 1 << 22


@dataclass
class BlockStats:
    blocks: int = 0             # blocks given out whole
    incomplete: int = 0         # blocks given out with events missing
    missing_events: int = 0     # events of those blocks that never came
    orphan_events: int = 0      # parts whose block header never came
    late_events: int = 0        # parts of a block already given out: a duplicate, or an
                                # event counted missing there (so counted in neither)
    repeated: int = 0           # headers of blocks already known


class _Block:
    __slots__ = ("header", "records", "size", "seen", "marks")

    def __init__(self, header: BlockHeader | None, seen: float):
        self.header = header
        self.records: list[bytes] = []
        self.size = 0
        self.seen = seen
        self.marks: set[int] = set()      # fingerprints of its records (datagram mode)


class Blocks:
    def __init__(self, *, wait: float = 2.0, max_bytes: int = 16 << 20, max_done: int = 4096,
                 budget: Budget | None = None):
        self.wait = wait
        self.max_bytes = max_bytes
        self.budget = budget
        self.max_done = max_done
        self.stats = BlockStats()
        self.seen = False               # a block header came: events carry capabilities
        self.held = 0                   # bytes of records held
        self._open: dict[int, _Block] = {}      # block id -> block (in arrival order)
        self._done: dict[int, None] = {}        # ids given out (bounded; oldest dropped)
        self._marker_known = True

    def header(self, h: BlockHeader, now: float, out: list[bytes]) -> None:
        self.seen = True
        if h.block_id in self._done:
            self.stats.repeated += 1
            return
        block = self._open.get(h.block_id)
        if block is None:
            block = self._open[h.block_id] = _Block(h, now)
        elif block.header is None:
            block.header = h
        else:
            self.stats.repeated += 1
            return
        if len(block.records) >= min(h.size, MAX_BLOCK_EVENTS):
            self._complete(h.block_id, out)

    def part(self, block_id: int, record: bytes, now: float, out: list[bytes],
             dedupe: bool = False) -> bool:
        """One event of block ``block_id`` (already checked against the header);
        False if it is a duplicate (``dedupe``: a record identical to one the
        block has, to the byte, is one; two such events of one block, same
        type, nanosecond and fields, are taken as one) or comes after its
        block was given out."""
        if block_id in self._done:
            self.stats.late_events += 1
            return False
        block = self._open.get(block_id)
        if block is None:
            block = self._open[block_id] = _Block(None, now)
        if dedupe:
            mark = hash(record)
            if mark in block.marks:
                return False
            block.marks.add(mark)
        block.records.append(record)
        block.size += len(record)
        self._charge(len(record))
        h = block.header
        if h is not None and len(block.records) >= min(h.size, MAX_BLOCK_EVENTS):
            self._complete(block_id, out)
        elif self._over():
            self._give_oldest(out)
        return True

    def expire(self, now: float, out: list[bytes]) -> None:
        """Give out blocks older than ``wait`` with what they have."""
        for block_id, block in list(self._open.items()):
            if now - block.seen > self.wait:
                self._give(block_id, out)

    def close(self) -> int:
        """Drop what is held; returns the events dropped."""
        dropped = sum(len(b.records) for b in self._open.values())
        self._open.clear()
        self._charge(-self.held)
        return dropped

    # -- internals -----------------------------------------------------------------------

    def _complete(self, block_id: int, out: list[bytes]) -> None:
        # senders send blocks in order: those opened before this one that are
        # still incomplete have lost events; they go out first, as they are
        for earlier in list(self._open):
            if earlier == block_id:
                break
            self._give(earlier, out)
        self._give(block_id, out)

    def _charge(self, cost: int) -> None:
        self.held += cost
        if self.budget is not None:
            self.budget.used += cost

    def _over(self) -> bool:
        b = self.budget
        return self.held > self.max_bytes or (b is not None and b.used > b.limit)

    def _give_oldest(self, out: list[bytes]) -> None:
        while self._open and self._over():
            self._give(next(iter(self._open)), out)

    def _give(self, block_id: int, out: list[bytes]) -> None:
        block = self._open.pop(block_id)
        self._charge(-block.size)
        self._done[block_id] = None
        if len(self._done) > self.max_done:
            del self._done[next(iter(self._done))]
        h = block.header
        if h is None:
            self.stats.orphan_events += len(block.records)
            return
        got = len(block.records)
        if got < h.size:
            self.stats.incomplete += 1
            self.stats.missing_events += h.size - got
        else:
            self.stats.blocks += 1
        if self._marker_known:     # (an empty block too: the program wrote it)
            cap = 0xFFFF if h.cap is None else h.cap
            out.append(_MARKER.pack(BLOCK_MARKER, h.begin, MARKER_SIZE + block.size,
                                    h.end, cap))
        out.extend(block.records)

    def marker_declared(self, declared: bool) -> None:
        """Whether the header declares the block-marker type: without it, the
        records go out with no marker (and no capability)."""
        self._marker_known = declared
