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
  the bytes held pass ``max_bytes`` (oldest first);
* a repeated header of a block already known is ignored (``repeated``).

No IO and no clock: the session hands in ``now``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ._messages import BlockHeader

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
    late_events: int = 0        # parts of a block already given out (counted missing there)
    repeated: int = 0           # headers of blocks already known


class _Block:
    __slots__ = ("header", "records", "size", "seen")

    def __init__(self, header: BlockHeader | None, seen: float):
        self.header = header
        self.records: list[bytes] = []
        self.size = 0
        self.seen = seen


class Blocks:
    def __init__(self, *, wait: float = 2.0, max_bytes: int = 16 << 20, max_done: int = 4096):
        self.wait = wait
        self.max_bytes = max_bytes
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

    def part(self, block_id: int, record: bytes, now: float, out: list[bytes]) -> None:
        """One event of block ``block_id`` (already checked against the header)."""
        if block_id in self._done:
            self.stats.late_events += 1       # its block went out without it: counted missing
            return
        block = self._open.get(block_id)
        if block is None:
            block = self._open[block_id] = _Block(None, now)
        block.records.append(record)
        block.size += len(record)
        self.held += len(record)
        h = block.header
        if h is not None and len(block.records) >= min(h.size, MAX_BLOCK_EVENTS):
            self._complete(block_id, out)
        elif self.held > self.max_bytes:
            self._give_oldest(out)

    def expire(self, now: float, out: list[bytes]) -> None:
        """Give out blocks older than ``wait`` with what they have."""
        for block_id, block in list(self._open.items()):
            if now - block.seen > self.wait:
                self._give(block_id, out)

    def close(self) -> int:
        """Drop what is held; returns the events dropped."""
        dropped = sum(len(b.records) for b in self._open.values())
        self._open.clear()
        self.held = 0
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

    def _give_oldest(self, out: list[bytes]) -> None:
        while self.held > self.max_bytes and self._open:
            self._give(next(iter(self._open)), out)

    def _give(self, block_id: int, out: list[bytes]) -> None:
        block = self._open.pop(block_id)
        self.held -= block.size
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
