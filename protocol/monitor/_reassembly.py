"""Reassembly of split payloads (spec 7.2 and 3.3), in bounded memory.

Parts and split headers are accepted in any order and de-duplicated by
``(msg_id, part_no)``; a message id that already completed is remembered (a
bounded number of them) so late duplicates are ignored.  Incomplete messages
are dropped when older than ``timeout`` seconds (``expire(now)``), or, oldest
first, when the bytes or the number of messages held exceed the bounds of
this reassembler or of a ``Budget`` shared by several.  Everything dropped is
counted in ``stats``.  Time is passed in by the caller (sans-IO).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from ._messages import Full, Part, Payload, SplitHeader

_Key = tuple[str, int]  # (channel, message id)

ENTRY_COST = 64  # bytes charged per held message and per held part, beyond its data


@dataclass
class ReassemblyStats:
    completed: int = 0       # split messages rebuilt
    duplicates: int = 0      # parts or split headers seen before, or for an id already done with
    expired: int = 0         # incomplete messages dropped after the timeout
    evicted: int = 0         # incomplete messages dropped to stay within the memory bounds
    invalid: int = 0         # parts that contradict their split header (number out of range...)


class Budget:
    """A byte budget shared by the reassemblers of many peers."""

    def __init__(self, limit: int):
        self.limit = limit
        self.used = 0


class _Entry:
    __slots__ = ("first_seen", "parts", "chunks", "cost")

    def __init__(self, now: float):
        self.first_seen = now
        self.parts: int | None = None
        self.chunks: dict[int, bytes] = {}
        self.cost = ENTRY_COST


class Reassembler:
    def __init__(self, *, timeout: float = 360.0, max_bytes: int = 16 << 20,
                 max_messages: int = 1024, remember: int = 4096, budget: Budget | None = None):
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.max_messages = max_messages
        self.remember = remember
        self.budget = budget
        self.stats = ReassemblyStats()
        self.held_bytes = 0
        self._entries: OrderedDict[_Key, _Entry] = OrderedDict()
        self._done: OrderedDict[_Key, None] = OrderedDict()

    @property
    def pending(self) -> int:
        """Incomplete messages held."""
        return len(self._entries)

    def add(self, channel: str, payload: Payload, now: float) -> bytes | None:
        """Take one payload of ``channel`` (e.g. ``"event"``, ``"state"``);
        return the whole payload when it is (or just became) complete."""
        if isinstance(payload, Full):
            return payload.data
        key = (channel, payload.msg_id)
        if key in self._done:
            self.stats.duplicates += 1
            return None
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry(now)
            self._charge(ENTRY_COST)
        if isinstance(payload, SplitHeader):
            if entry.parts is not None:
                if entry.parts != payload.parts:
                    self.stats.invalid += 1
                else:
                    self.stats.duplicates += 1
                return None
            if payload.parts == 0 or any(n >= payload.parts for n in entry.chunks):
                self.stats.invalid += 1
                self._drop(key)
                return None
            entry.parts = payload.parts
        else:
            assert isinstance(payload, Part)
            if payload.part_no in entry.chunks:
                self.stats.duplicates += 1
                return None
            if entry.parts is not None and payload.part_no >= entry.parts:
                self.stats.invalid += 1
                return None
            cost = ENTRY_COST + len(payload.data)
            entry.chunks[payload.part_no] = payload.data
            entry.cost += cost
            self._charge(cost)
        if entry.parts is not None and len(entry.chunks) == entry.parts:
            self._drop(key)
            self._finish(key)
            self.stats.completed += 1
            return b"".join(entry.chunks[n] for n in range(entry.parts))
        self._enforce_bounds()
        return None

    def expire(self, now: float) -> int:
        """Drop incomplete messages first seen more than ``timeout`` ago."""
        old = [k for k, e in self._entries.items() if now - e.first_seen > self.timeout]
        for key in old:
            self._drop(key)
            self._finish(key)
        self.stats.expired += len(old)
        return len(old)

    def clear(self) -> int:
        """Drop everything held (the peer is gone); returns the messages lost."""
        lost = len(self._entries)
        for key in list(self._entries):
            self._drop(key)
        return lost

    # -- bookkeeping --------------------------------------------------------------------

    def _charge(self, cost: int) -> None:
        self.held_bytes += cost
        if self.budget is not None:
            self.budget.used += cost

    def _drop(self, key: _Key) -> None:
        entry = self._entries.pop(key)
        self.held_bytes -= entry.cost
        if self.budget is not None:
            self.budget.used -= entry.cost

    def _finish(self, key: _Key) -> None:
        self._done[key] = None
        if len(self._done) > self.remember:
            self._done.popitem(last=False)

    def _over(self) -> bool:
        return (self.held_bytes > self.max_bytes or len(self._entries) > self.max_messages
                or (self.budget is not None and self.budget.used > self.budget.limit))

    def _enforce_bounds(self) -> None:
        while self._entries and self._over():
            key = next(iter(self._entries))
            self._drop(key)
            self._finish(key)
            self.stats.evicted += 1
