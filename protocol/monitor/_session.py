"""One monitor session: messages in, eventlog bytes out.

The session rebuilds the eventlog stream the monitor parsed (spec 5.3):
``hdrb hetb <records> hete hdre datb`` once the header is complete, then
every event record.  Those bytes are the input of the same eventlog
``Decoder`` as a file, so the events are the same; written out with the
``0xffff`` end marker they are a standard ``.eventlog``.  Plain events have
``cap`` None (the 2016 protocol loses it); events sent in blocks (section
7.4, ``liveprof agent``) come out inside a block marker again (``_blocks``),
so they keep their capability; ``blocks.seen`` says whether a session had any.

Each event record is checked against the header before it is passed on
(declared type, exact size), so one bad record is rejected on its own and
never poisons the decoder downstream.  In datagram mode (spec 3.3) an event record
identical to one of the last ``dedupe`` records is dropped as a duplicate.

What a peer can make a session hold is bounded: the header (``max_records``
records, ``max_header_bytes`` bytes: a real GHC declares ~200 small types),
the events held before it (``hold_events``/``hold_bytes``, and a ``Budget``
shared by many sessions), the duplicate window (``dedupe`` fingerprints, not
records), the split messages (the ``Reassembler``'s bounds) and the state
snapshots decoded (``max_state`` bytes; a bigger one is skipped and counted).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from .._errors import ProtocolError
from ..eventlog._header import DeclarationError, parse_declaration
from ..eventlog._ids import END_OF_DATA as EVENTLOG_END
from ..eventlog._ids import EventType
from ._blocks import Blocks
from ._messages import (
    BlockHeader,
    BlockPart,
    EventMessage,
    HeaderLength,
    HeaderType,
    Message,
    MessageError,
    ServicePause,
    StateMessage,
)
from ._reassembly import Budget, Reassembler
from ._state import EventlogState, decode_state

HEADER_OPEN = b"hdrbhetb"
HEADER_CLOSE = b"hetehdredatb"
END_OF_DATA = b"\xff\xff"
BLOCK_MARKER = int(EventType.BLOCK_MARKER)
END_OF_DATA_ID = EVENTLOG_END  # the record type id that ends the data, never declared


class SessionError(MessageError):
    """A message the session cannot use (bad header record, event record that
    does not match the header, or an event the decoder rejects)."""


class HeaderChanged(ProtocolError):
    """A header that differs from the one this session has: the peer started
    a new stream.  The caller ends this session and gives the message to a
    new one."""

    data: bytes = b""   # as MessageError's (set by ``Session.receive_all``)
    index: int = 0


@dataclass
class SessionStats:
    messages: int = 0
    events: int = 0                 # event records passed on
    states: int = 0                 # snapshots received
    states_skipped: int = 0         # snapshots over max_state bytes, not decoded
    duplicate_events: int = 0       # datagram mode: identical record seen recently
    dropped_before_header: int = 0  # events beyond the hold bound before the header
    block_headers: int = 0          # block headers received (section 7.4)
    block_markers: int = 0          # block-marker event records dropped
    service: int = 0                # ServicePause messages (ignored)
    repeated_headers: int = 0       # header messages that agreed with the one held
    bad_held_events: int = 0        # events held before the header that did not fit it
    after_end: int = 0              # messages after the end record, ignored


def parse_type_record(record: bytes) -> tuple[int, int | None]:
    """Check an event-type record (spec 5.1); return (type id, size or None)."""
    if len(record) < 20 or record[:4] != b"etb\0" or record[-4:] != b"ete\0":
        raise SessionError(f"header record of {len(record)} bytes is not an event-type "
                           f"record (etb ... ete)")
    if (record[4] << 8 | record[5]) == END_OF_DATA_ID:
        raise SessionError("header record declares event type 65535 (0xffff), the "
                           "end-of-data marker")
    try:
        decl, end = parse_declaration(record)
    except DeclarationError as exc:
        raise SessionError(f"header record: {exc.message}") from None
    if decl is None or end != len(record):
        type_id = record[4] << 8 | record[5]
        raise SessionError(f"header record for type {type_id}: lengths do not add up to "
                           f"{len(record)} bytes")
    return decl.id, decl.size


class Session:
    def __init__(self, *, datagram: bool = False, hold_events: int = 10_000,
                 hold_bytes: int = 4 << 20, dedupe: int = 4096,
                 reassembler: Reassembler | None = None, hold_budget: Budget | None = None,
                 max_records: int = 1024, max_header_bytes: int = 64 << 10,
                 max_state: int = 4 << 20, blocks: Blocks | None = None):
        self.datagram = datagram
        self.hold_events = hold_events
        self.hold_bytes = hold_bytes
        self.hold_budget = hold_budget
        self.max_records = max_records
        self.max_header_bytes = max_header_bytes
        self.max_state = max_state
        self._header_bytes = 0
        self.reassembler = reassembler or Reassembler()
        self.stats = SessionStats()
        self.state: EventlogState | None = None
        self.header_done = False
        self.ended = False          # the sender's end-of-data record came (section 7.4)
        self._expected: int | None = None
        self._records: dict[int, bytes] = {}
        self._sizes: dict[int, int | None] = {}
        self._held: list[tuple[bytes, int | None]] = []   # (record, block id)
        self._held_bytes = 0
        self._recent: deque[int] = deque()        # fingerprints of recent records
        self._recent_set: set[int] = set()
        self._dedupe = dedupe if datagram else 0
        self.blocks = blocks or Blocks()

    @property
    def header_records(self) -> list[bytes]:
        return list(self._records.values())

    @property
    def held(self) -> int:
        """Events waiting for the header."""
        return len(self._held)

    def receive(self, msg: Message, now: float = 0.0) -> bytes:
        return self.receive_all((msg,), now)

    def receive_all(self, messages: Iterable[Message], now: float = 0.0) -> bytes:
        """Take messages in arrival order; return the eventlog bytes they add
        (the header once complete, then event records).

        The first unusable message raises ``SessionError`` / ``StateError``,
        or ``HeaderChanged`` when a different header starts; the bytes the
        messages before it made are kept: the exception carries them as
        ``data`` and the failing message's position as ``index``."""
        out: list[bytes] = []
        index = 0
        try:
            for index, msg in enumerate(messages):  # noqa: B007 (read in the except clause)
                self.stats.messages += 1
                self._take(msg, now, out)
        except (MessageError, HeaderChanged) as exc:
            exc.data = b"".join(out)
            exc.index = index
            raise
        return b"".join(out)

    def expire(self, now: float) -> int:
        """Drop split messages older than the reassembly timeout."""
        return self.reassembler.expire(now)

    def flush(self, now: float) -> bytes:
        """The bytes of blocks that waited longer than their bound for missing
        events (given out with the events they have; section 7.4)."""
        out: list[bytes] = []
        if self.header_done:
            self.blocks.expire(now, out)
        return b"".join(out)

    def close(self) -> int:
        """The session is over: let go of what it holds (and of its share of a
        shared budget).  Returns the events that were still waiting for the
        header."""
        held = len(self._held) + self.blocks.close()
        self._release_held()
        return held

    # -- internals ----------------------------------------------------------------------

    def _take(self, msg: Message, now: float, out: list[bytes]) -> None:
        if self.ended:
            self.stats.after_end += 1
            return
        if isinstance(msg, EventMessage):
            record = self.reassembler.add("event", msg.payload, now)
            if record == END_OF_DATA:
                self._end(out)
            elif record is not None:
                self._event(record, out)
        elif isinstance(msg, BlockPart):
            record = self.reassembler.add("event", msg.payload, now)
            if record is not None:
                self._event(record, out, msg.block_id, now)
        elif isinstance(msg, HeaderType):
            self._header_type(msg.record, out)
        elif isinstance(msg, HeaderLength):
            self._header_length(msg.count, out)
        elif isinstance(msg, StateMessage):
            payload = self.reassembler.add("state", msg.payload, now)
            if payload is not None and len(payload) > self.max_state:
                self.stats.states_skipped += 1     # optional: not worth unbounded work
            elif payload is not None:
                self.state = decode_state(payload)
                self.stats.states += 1
        elif isinstance(msg, BlockHeader):
            self.stats.block_headers += 1
            self.blocks.header(msg, now, out)
        elif isinstance(msg, ServicePause):
            self.stats.service += 1

    def _end(self, out: list[bytes]) -> None:
        """The run is over (liveprof's end record, docs/monitor-protocol.md 7.4):
        blocks still waiting go out as they are, then the end-of-data marker.
        Before the header it means nothing and is dropped."""
        if not self.header_done:
            return
        self.blocks.expire(float("inf"), out)
        out.append(END_OF_DATA)
        self.ended = True

    def _header_length(self, count: int, out: list[bytes]) -> None:
        if self._expected is not None and count != self._expected:
            raise HeaderChanged(f"header length {count} differs from {self._expected}")
        if self.header_done:
            self.stats.repeated_headers += 1
            return
        if count < len(self._records):
            raise SessionError(f"header length {count} but {len(self._records)} records "
                               f"already received")
        if count > self.max_records:
            raise SessionError(f"header length {count} is over the bound of "
                               f"{self.max_records} event types")
        self._expected = count
        self._maybe_complete(out)

    def _header_type(self, record: bytes, out: list[bytes]) -> None:
        type_id, size = parse_type_record(record)
        known = self._records.get(type_id)
        if known is not None:
            if known != record:
                raise HeaderChanged(f"event type {type_id} declared differently")
            self.stats.repeated_headers += 1
            return
        if self.header_done or (self._expected is not None
                                and len(self._records) >= self._expected):
            raise HeaderChanged(f"event type {type_id} not in the header held")
        if len(self._records) >= self.max_records:
            raise SessionError(f"header record for type {type_id} is over the bound of "
                               f"{self.max_records} event types")
        if self._header_bytes + len(record) > self.max_header_bytes:
            raise SessionError(f"header record for type {type_id} ({len(record)} bytes) is "
                               f"over the bound of {self.max_header_bytes} header bytes")
        self._header_bytes += len(record)
        self._records[type_id] = record
        self._sizes[type_id] = size
        self._maybe_complete(out)

    def _maybe_complete(self, out: list[bytes]) -> None:
        if self._expected is None or len(self._records) != self._expected:
            return
        self.header_done = True
        self.blocks.marker_declared(self._sizes.get(BLOCK_MARKER, -1) == 14)
        out.append(HEADER_OPEN + b"".join(self._records.values()) + HEADER_CLOSE)
        held = self._held
        self._release_held()
        for record, block in held:
            try:
                self._event(record, out, block)
            except SessionError:
                # a bad event that came before the header is its own fault, not the
                # header's: the header and the other held events go through
                self.stats.bad_held_events += 1

    def _release_held(self) -> None:
        if self.hold_budget is not None:
            self.hold_budget.used -= self._held_bytes
        self._held, self._held_bytes = [], 0

    def _event(self, record: bytes, out: list[bytes], block: int | None = None,
               now: float = 0.0) -> None:
        if len(record) < 10:
            raise SessionError(f"event record of {len(record)} bytes is shorter than an "
                               f"event header")
        if not self.header_done:
            budget = self.hold_budget
            if (len(self._held) < self.hold_events
                    and self._held_bytes + len(record) <= self.hold_bytes
                    and (budget is None or budget.used + len(record) <= budget.limit)):
                self._held.append((record, block))
                self._held_bytes += len(record)
                if budget is not None:
                    budget.used += len(record)
            else:
                self.stats.dropped_before_header += 1
            return
        type_id = (record[0] << 8) | record[1]
        if type_id not in self._sizes:
            raise SessionError(f"event of type {type_id}, which the header does not declare")
        size = self._sizes[type_id]
        if size is None:
            want = 12 + ((record[10] << 8) | record[11]) if len(record) >= 12 else 12
        else:
            want = 10 + size
        if len(record) != want:
            raise SessionError(f"event of type {type_id} is {len(record)} bytes, the header "
                               f"says {want}")
        if type_id == BLOCK_MARKER:
            self.stats.block_markers += 1
            return
        if block is not None:
            # block parts are told apart within their block (_blocks.py), whatever the
            # reordering; a part after its block went out is dropped there too
            if self.blocks.part(block, record, now, out, dedupe=self._dedupe > 0):
                self.stats.events += 1
            else:
                self.stats.duplicate_events += 1
            return
        if self._dedupe:
            # a fingerprint, not the record: the window costs the same whatever the
            # sizes (a clash, 1 in 2**64 per pair, would only drop this sender's own event)
            mark = hash(record)
            if mark in self._recent_set:
                self.stats.duplicate_events += 1
                return
            self._recent.append(mark)
            self._recent_set.add(mark)
            if len(self._recent) > self._dedupe:
                self._recent_set.discard(self._recent.popleft())
        self.stats.events += 1
        out.append(record)
