"""The sending side of the monitor protocol, sans-IO: eventlog bytes in,
message bodies out (``liveprof agent``'s core; the socket loops are its own).

``Encoder`` reads one eventlog run (a standard eventlog byte stream, as a
GHC program writes it: header, then blocks of event records) and turns it
into monitor messages (spec section 4), each a CBOR body:

* the header: ``HeaderLength n`` and ``n`` ``HeaderType`` records, the
  event-type records exactly as the program declared them (``header``);
* each block of events (the block-marker event and the records after it, up
  to its size) as one *unit*: an ``EventBlockMsgHeader`` (block id, begin and
  end time, capability, number of events), then one ``EventBlockMsgPart``
  per event (spec 7.3, made to work: docs/monitor-protocol.md section 7.4).
  A receiver that ignores block messages still gets every event; one that
  follows them restores each event's capability.  An event outside any
  block goes as a plain ``EventMsg``.  With ``blocks=False`` every event
  goes as a plain ``EventMsg`` and block markers are dropped (the 2016
  monitor's behaviour);
* the state snapshot (spec 6), folded from every event (``snapshot()``).

A block goes out only once all of its bytes are in (GHC writes a block in
one piece, so this costs no delay), so a receiver that joins between units
always starts at a block boundary.  Payloads longer than ``max_size``
(``None``: no limit, TCP) are split (spec 7.1) with message ids from one
counter shared by events and snapshots.  ``frames`` (TCP) and
``datagrams`` (with the HMAC tag when there is a key) put bodies on a wire.

Speed: a block's records go through a C loop (``_speedups.block``) that
makes their bodies and hands the fold only the events whose effect outlasts
the block (a thread's run, then its stop: only the stop changes the
snapshot); packing and TCP frames are C too.  ``LIVEPROF_PURE_PYTHON=1``
runs the Python loops below, the reference (the same bytes, the same
snapshot: tests/agent/test_native_encoder.py); odd blocks (a record to
split, a folded event too short for its fields) always take them.

Bounds: the header (``MAX_HEADER`` bytes), a block (``max_block`` bytes:
a bigger declared size is an ``EncodeError``), the bytes held while a record
or block is incomplete (one block at most).
"""

from __future__ import annotations

import os
import struct
from array import array
from collections.abc import Iterable

from .._errors import ProtocolError
from ..eventlog._header import DATB, ETB, HDRE, HETE, MAGIC, DeclarationError, parse_declaration
from ._auth import sign_datagram
from ._fold import StateFold, plan_table
from ._messages import (
    BlockPart,
    EventMessage,
    HeaderLength,
    HeaderType,
    Payload,
    StateMessage,
    encode_message,
    split_payload,
)
from ._state import CapsetState, EventlogState, encode_state

MAX_HEADER = 1 << 20
MAX_BLOCK = 16 << 20          # GHC's buffers are 2 MiB by default
BLOCK_MARKER = 18
END_OF_DATA = 0xFFFF
MARKER_SIZE = 24              # type, time, size, end time, capability
_MARKER = struct.Struct(">HQIQH")
_U32 = struct.Struct(">I")
_EVENT_PREFIX = b"\x82\x02\x82\x01\x82\x00"         # [2, [1, [0, <bytes>]]]

try:  # the C loops (_speedups.c), unless disabled or not compiled
    if os.environ.get("LIVEPROF_PURE_PYTHON"):
        raise ImportError
    from . import _speedups
except ImportError:
    _speedups = None  # type: ignore[assignment]  # the module, or None when not built or disabled

_PLAN = plan_table()


class EncodeError(ProtocolError, ValueError):
    """The bytes are not an eventlog the encoder can read (``offset``: where)."""

    def __init__(self, message: str, offset: int):
        super().__init__(f"{message} (stream offset {offset})")
        self.offset = offset


def _uint(n: int) -> bytes:
    """CBOR head of an unsigned integer (major type 0), shortest form."""
    if n < 24:
        return bytes((n,))
    for info, width in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if n < 1 << (8 * width):
            return bytes((info,)) + n.to_bytes(width, "big")
    raise ValueError(f"{n} does not fit in 64 bits")


def block_header(block_id: int, begin: int, end: int, cap: int | None, count: int) -> bytes:
    """``encode_message(BlockHeader(...))``, written out (one a block)."""
    return (b"\x82\x02\x82\x00\x82\x00\x86\x00" + _uint(block_id) + _uint(begin) + _uint(end)
            + _uint(0 if cap is None else cap + 1) + _uint(count))


_BHEADS: dict[int, bytes] = {}


def _bhead(n: int) -> bytes:
    """CBOR head of a byte string of ``n`` bytes (cached: few distinct sizes)."""
    head = _BHEADS.get(n)
    if head is None:
        head = bytes((0x40 | _uint(n)[0],)) + _uint(n)[1:]
        if len(_BHEADS) < 65536:
            _BHEADS[n] = head
    return head


class Encoder:
    """One eventlog run -> monitor message bodies (module docstring)."""

    def __init__(self, *, max_size: int | None = None, blocks: bool = True,
                 max_block: int = MAX_BLOCK, first_id: int = 0):
        if max_size is not None and max_size < 1:
            raise ValueError("max_size must be at least 1")
        self.max_size = max_size
        self.blocks = blocks
        self.max_block = max_block
        self.fold = StateFold()
        self.header: list[bytes] | None = None     # header bodies, once complete
        self.ended = False                           # the end-of-data marker was read
        self.events = 0
        self.block_count = 0
        self.offset = 0                              # stream offset of self._buf[0]
        self._next_id = first_id                     # split message ids
        self._next_block = 0
        self._buf = b""
        self._sizes: dict[int, int | None] = {}
        self._size_table = b""                       # _sizes for the C loop (int32 x 65536)
        self._folded = self.fold.folded

    # -- public ----------------------------------------------------------------------------

    def feed(self, data: bytes) -> list[list[bytes]]:
        """More bytes of the run; returns the units now complete (each a list
        of bodies to send together, in order).  ``EncodeError`` on bytes that
        are not an eventlog (the units before them are on ``exc.units``)."""
        if self.ended:
            return []
        buf = self._buf + data if self._buf else bytes(data)
        units: list[list[bytes]] = []
        try:
            pos = 0
            if self.header is None:
                pos = self._header(buf)
                if self.header is None:
                    self._buf = buf          # the header is not whole yet
                    return []
            pos = self._records(buf, pos, units, closing=False)
        except EncodeError as exc:
            exc.units = units    # type: ignore[attr-defined]  # (the good part, for the caller)
            self._buf = b""
            self.ended = True
            raise
        self.offset += pos
        self._buf = buf[pos:]
        return units

    def close(self) -> list[list[bytes]]:
        """End of the run's bytes: a block cut short goes out with the events
        it has; an incomplete record is dropped (``pending`` says how much)."""
        if self.ended or self.header is None:
            return []
        units: list[list[bytes]] = []
        self.ended = True
        try:
            pos = self._records(self._buf, 0, units, closing=True)
        except EncodeError as exc:
            exc.units = units    # type: ignore[attr-defined]  # (the good part, for the caller)
            self._buf = b""
            raise
        self._buf = self._buf[pos:]
        return units

    @property
    def pending(self) -> int:
        return len(self._buf)

    def snapshot(self, extra: Iterable[CapsetState] = ()) -> list[bytes]:
        """The state snapshot's bodies (split if need be), with ``extra``
        capsets added (the agent's identity, section 6.7)."""
        state = self.fold.state
        extra = list(extra)
        if extra:
            capsets = dict(state.capsets)
            capsets.update((c.capset, c) for c in extra)
            state = EventlogState(state.threads, capsets, state.caps, state.tasks,
                                  state.gc_since, state.last_update)
        return [encode_message(StateMessage(p)) for p in self._split(encode_state(state))]

    # -- internals -------------------------------------------------------------------------

    def _split(self, payload: bytes) -> list[Payload]:
        parts = split_payload(payload, self.max_size, self._next_id)
        if len(parts) > 1:
            self._next_id += 1
        return parts

    def _header(self, buf: bytes) -> int:
        if len(buf) < 8:
            if MAGIC[:len(buf)] != buf[:8]:
                raise EncodeError("not an eventlog: no 'hdrb' 'hetb' at the start", self.offset)
            return 0
        if buf[:8] != MAGIC:
            raise EncodeError("not an eventlog: no 'hdrb' 'hetb' at the start", self.offset)
        pos, records = 8, []
        while True:
            if pos > MAX_HEADER:
                raise EncodeError(f"header longer than {MAX_HEADER} bytes", self.offset + pos)
            if len(buf) < pos + 4:
                return 0
            if buf[pos:pos + 4] == HETE:
                break
            if buf[pos:pos + 4] != ETB:
                raise EncodeError(f"malformed header at {bytes(buf[pos:pos + 4])!r}",
                                  self.offset + pos)
            try:
                decl, end = parse_declaration(buf, pos, MAX_HEADER - pos)
            except DeclarationError as exc:
                raise EncodeError(exc.message, self.offset + exc.offset) from None
            if decl is None:
                return 0
            if decl.id == END_OF_DATA:
                raise EncodeError("header declares event type 65535", self.offset + pos)
            records.append(bytes(buf[pos:end]))
            self._sizes[decl.id] = decl.size
            pos = end
        if len(buf) < pos + 12:
            return 0
        if buf[pos + 4:pos + 8] != HDRE or buf[pos + 8:pos + 12] != DATB:
            raise EncodeError("header end 'hdre' 'datb' not found", self.offset + pos + 4)
        table = array("i", [-2]) * 65536             # -2 undeclared, -1 variable
        for tid, size in self._sizes.items():
            table[tid] = -1 if size is None else size
        self._size_table = table.tobytes()
        self.header = [encode_message(HeaderLength(len(records)))]
        self.header += [encode_message(HeaderType(r)) for r in records]
        return pos + 12

    def _records(self, buf: bytes, pos: int, units: list[list[bytes]], *, closing: bool) -> int:
        """Cut records from ``buf[pos:]``; plain events of this call share one
        unit, each block is its own.  Returns where the unread bytes start."""
        n = len(buf)
        sizes = self._sizes
        plain: list[bytes] = []
        while True:
            if n - pos < 2:
                break
            tid = buf[pos] << 8 | buf[pos + 1]
            if tid == END_OF_DATA:
                self.ended = True
                pos += 2
                break
            if n - pos < 10:
                break
            if tid not in sizes:
                raise EncodeError(f"event type {tid} is not declared in the header",
                                  self.offset + pos)
            size = sizes[tid]
            if size is None:
                if n - pos < 12:
                    break
                end = pos + 12 + (buf[pos + 10] << 8 | buf[pos + 11])
            else:
                end = pos + 10 + size
            if end > n:
                break
            if tid != BLOCK_MARKER:
                self._plain(buf, pos, end, tid, plain)
                pos = end
                continue
            if end - pos < MARKER_SIZE:
                raise EncodeError("block marker too short", self.offset + pos)
            _, begin, bsize, bend, cap = _MARKER.unpack_from(buf, pos)
            if bsize > self.max_block:
                raise EncodeError(f"block of {bsize} bytes is over the bound of "
                                  f"{self.max_block}", self.offset + pos)
            stop = pos + max(bsize, MARKER_SIZE)
            if stop > n and not closing:
                break                        # wait for the whole block
            if plain:
                units.append(plain)
                plain = []
            if not self.blocks:
                pos = end
                continue
            pos, unit = self._block(buf, end, min(stop, n), begin, bend,
                                    None if cap == 0xFFFF else cap)
            units.append(unit)
        if plain:
            units.append(plain)
        return pos

    def _plain(self, buf: bytes, pos: int, end: int, tid: int, out: list[bytes]) -> None:
        record = buf[pos:end]
        self.events += 1
        if tid in self._folded:
            start = pos + (10 if self._sizes[tid] is not None else 12)
            self.fold.apply(tid, int.from_bytes(buf[pos + 2:pos + 10], "big"), buf[start:end])
        if self.max_size is None or len(record) <= self.max_size:
            out.append(_EVENT_PREFIX + _bhead(len(record)) + record)
        else:
            out += [encode_message(EventMessage(p)) for p in self._split(record)]

    def _block(self, buf: bytes, pos: int, stop: int, begin: int, end_time: int,
               cap: int | None) -> tuple[int, list[bytes]]:
        """The records of one block, ``buf[pos:stop]``, as a unit."""
        block_id = self._next_block
        self._next_block += 1
        self.block_count += 1
        prefix = b"\x82\x02\x82\x00\x83\x01" + _uint(block_id) + b"\x82\x00"
        if _speedups is not None:
            fast = _speedups.block(buf, pos, stop, self._size_table, _PLAN, prefix,
                                   -1 if self.max_size is None else self.max_size)
            if fast is not None:           # (None: a block the Python loop below must read)
                pos, count, parts, folds, last = fast
                apply = self.fold.apply
                for tid, t, p in folds:
                    apply(tid, t, p)
                if last is not None:
                    self.fold.state.last_update = last
                self.events += count
                return pos, [block_header(block_id, begin, end_time, cap, count), *parts]
        sizes, folded, fold, limit = self._sizes, self._folded, self.fold, self.max_size
        bodies: list[bytes] = []
        count = 0
        while stop - pos >= 10:
            tid = buf[pos] << 8 | buf[pos + 1]
            if tid not in sizes:
                raise EncodeError(f"event type {tid} is not declared in the header",
                                  self.offset + pos)
            size = sizes[tid]
            if size is None:
                if stop - pos < 12:
                    break
                start = pos + 12
                end = start + (buf[pos + 10] << 8 | buf[pos + 11])
            else:
                start = pos + 10
                end = start + size
            if end > stop:
                break
            record = buf[pos:end]
            if tid in folded:
                fold.apply(tid, int.from_bytes(buf[pos + 2:pos + 10], "big"), buf[start:end])
            if limit is None or len(record) <= limit:
                bodies.append(prefix + _bhead(len(record)) + record)
            else:
                bodies += [encode_message(BlockPart(block_id, p)) for p in self._split(record)]
            count += 1
            pos = end
        self.events += count
        return pos, [block_header(block_id, begin, end_time, cap, count), *bodies]


def frames(bodies: list[bytes]) -> bytes:
    """TCP frames (spec 3.1) for ``bodies``, as one piece of bytes."""
    if _speedups is not None:
        return _speedups.frames(bodies)
    pack = _U32.pack
    return b"".join([pack(len(b)) + b for b in bodies])


def pack_datagrams(pending: list[bytes], size: int, bodies: list[bytes],
                   room: int) -> tuple[list[bytes], list[bytes], int]:
    """Whole message bodies into datagrams of at most ``room`` bytes (a packed
    datagram, docs/monitor-protocol.md 3.3 rule 1b): ``pending`` (``size``
    bytes) is the datagram being filled; returns (the datagrams filled up, the
    new pending list, its size).  A body never spans two; one over ``room`` is
    a datagram of its own.  ``pending`` is not changed."""
    if _speedups is not None:
        return _speedups.pack(pending, size, bodies, room)
    full: list[bytes] = []
    pending = list(pending)
    for body in bodies:
        n = len(body)
        if size + n > room and pending:
            full.append(b"".join(pending))
            pending, size = [], 0
        pending.append(body)
        size += n
    return full, pending, size


def datagrams(bodies: list[bytes], key: bytes | None = None) -> list[bytes]:
    """Datagrams (spec 3.3) for ``bodies``, tagged when there is a ``key`` (3.4)."""
    if key is None:
        return bodies
    return [sign_datagram(b, key) for b in bodies]
