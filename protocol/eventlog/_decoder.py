"""The incremental eventlog decoder: bytes in, events out, no I/O.

``Decoder.feed(data)`` returns the events that ``data`` completed and keeps
only the bytes of the one record (or header declaration) it is in the middle
of.  ``Decoder.close()`` says how the stream ended.  Malformed input raises
``DecodeError``, after which the decoder refuses more input.

Memory is bounded whatever the input: the header by ``MAX_DECLARATIONS`` and
``MAX_HEADER`` (a real GHC declares ~200 types in a few KB), the bytes kept
after the end marker by ``max_trailing``.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable

from .._errors import ProtocolError
from ._events import UNKNOWN, Declaration, EndOfStream, Event, Header
from ._header import DATB, ETB, HDRB, HDRE, HETB, HETE, DeclarationError, HeaderFull, parse_declaration
from ._ids import END_OF_DATA
from ._table import K_BLOCK, K_EMPTY, K_READ, K_SKIP, K_STRUCT, K_VSTRUCT, Entry, build_table

_RECORD = struct.Struct(">HQ")
_LEN = struct.Struct(">H")

# decoder states
S_MAGIC, S_DECLS, S_HEADER_END, S_DATA, S_ENDED = range(5)

# Bounds of the whole header: declarations, and their bytes (etb to ete) together.
MAX_DECLARATIONS = 4096
MAX_HEADER = 1 << 18
# Bytes after the end-of-data marker kept in ``Decoder.trailing`` (the rest are counted).
MAX_TRAILING = 1 << 20

try:  # the C record loop, unless disabled or not compiled
    if os.environ.get("LIVEPROF_PURE_PYTHON"):
        raise ImportError
    from . import _speedups
except ImportError:
    _speedups = None  # type: ignore[assignment]  # the module, or None when not built or disabled

# status codes of _speedups.records
_MORE, _ENDED, _UNDECLARED, _SHORT_BLOCK = range(4)


class DecodeError(ProtocolError):
    """The stream is malformed.  ``offset`` is the byte offset in the stream,
    ``event_id`` the event type concerned (if any), ``events`` the complete
    events the failing ``feed`` call decoded before the error."""

    def __init__(self, message: str, offset: int, event_id: int | None = None):
        self.message = message
        self.offset = offset
        self.event_id = event_id
        self.events: list[Event] = []
        where = f"at byte offset {offset}"
        if event_id is not None:
            where += f", event type {event_id}"
        super().__init__(f"{message} ({where})")


class _NeedMore(Exception):
    def __init__(self, upto: int):
        self.upto = upto


class Decoder:
    """Sans-IO decoder of one eventlog stream.

    ``only``: if given, the event type ids to return; every other record is
    skipped without decoding its payload (block markers still attribute
    capabilities).  Block markers themselves are returned as ``EventBlock``
    events (``EventType.BLOCK_MARKER``) unless ``only`` leaves them out.
    """

    native = _speedups is not None  # use the C record loop

    def __init__(self, only: Iterable[int] | None = None, max_trailing: int = MAX_TRAILING):
        self._only = None if only is None else frozenset(only)
        self.max_trailing = max_trailing
        self._pending = bytearray()
        self._base = 0  # stream offset of _pending[0]
        self._need = 0  # bytes _pending must hold before parsing is worth trying
        self._state = S_MAGIC
        self._decls: list[Declaration] = []
        self._table: list[Entry | None] | None = None
        self._block_end = 0
        self._block_cap: int | None = None
        self._partial_id: int | None = None
        self._failed: DecodeError | None = None
        self._decl_bytes = 0  # bytes of the declarations read so far
        self.header: Header | None = None
        # after the end-of-data marker: the stream offset just past it, the first
        # ``max_trailing`` bytes that followed it, and how many more were dropped
        self.end_offset: int | None = None
        self.trailing = bytearray()
        self.trailing_dropped = 0
        self.skipped = 0  # records of types left out by ``only``, not decoded

    # -- public API ------------------------------------------------------------

    @property
    def offset(self) -> int:
        """Stream offset of the first byte not yet consumed."""
        return self._base

    @property
    def ended(self) -> bool:
        """True once the end-of-data marker has been read."""
        return self._state == S_ENDED

    def feed(self, data: bytes | bytearray | memoryview) -> list[Event]:
        if self._failed is not None:
            raise DecodeError("decoder has already failed: " + self._failed.message,
                              self._failed.offset, self._failed.event_id)
        if self._state == S_ENDED:
            self._keep_trailing(data)
            return []
        pend = self._pending
        pend += data
        if len(pend) < self._need:
            return []
        events: list[Event] = []
        pos = 0
        try:
            if self._state != S_DATA:
                pos = self._header(pend)
            if self._state == S_DATA:
                pos = self._records(pend, pos, events)
        except _NeedMore as more:
            pos = more.upto
        except DecodeError as err:
            self._failed = err
            err.events = events
            raise
        if self._state == S_ENDED:
            self.end_offset = self._base + pos
            self._keep_trailing(pend, pos)
            pend.clear()
            self._base, self._need = self.end_offset, 0
            return events
        del pend[:pos]
        self._base += pos
        self._need -= pos
        return events

    def _keep_trailing(self, data: bytes | bytearray | memoryview, start: int = 0) -> None:
        room = max(0, self.max_trailing - len(self.trailing))
        self.trailing += data[start:start + room]
        self.trailing_dropped += max(0, len(data) - start - room)

    def close(self) -> EndOfStream:
        """End of input.  Returns whether the stream was complete and, if not,
        where it was cut.  No events are lost: every complete one was already
        returned by ``feed``."""
        pending = len(self._pending)
        if self._state == S_ENDED:
            assert self.end_offset is not None
            return EndOfStream(True, self.end_offset, "complete")
        if self._state != S_DATA:
            return EndOfStream(False, self._base, "header", None, pending)
        if pending:
            return EndOfStream(False, self._base, "event", self._partial_id, pending)
        return EndOfStream(False, self._base, "no end marker")

    # -- header ----------------------------------------------------------------

    def _header(self, buf: bytearray) -> int:
        """Parse as much of the header as ``buf`` holds; returns the position
        after it.  Raises _NeedMore(position of the last complete part)."""
        pos = 0
        if self._state == S_MAGIC:
            self._require(buf, pos, 8, pos)
            if buf[0:4] != HDRB:
                raise DecodeError("not an eventlog: header begin marker 'hdrb' not found",
                                  self._base)
            if buf[4:8] != HETB:
                raise DecodeError("event type list begin marker 'hetb' not found",
                                  self._base + 4)
            pos = 8
            self._state = S_DECLS
        while self._state == S_DECLS:
            self._require(buf, pos, 4, pos)
            marker = bytes(buf[pos:pos + 4])
            if marker == HETE:
                pos += 4
                self._state = S_HEADER_END
                break
            if marker != ETB:
                raise DecodeError(f"malformed header: expected 'etb' or 'hete', got {marker!r}",
                                  self._base + pos)
            pos = self._declaration(buf, pos)
        if self._state == S_HEADER_END:
            self._require(buf, pos, 8, pos)
            if buf[pos:pos + 4] != HDRE:
                raise DecodeError("header end marker 'hdre' not found", self._base + pos)
            if buf[pos + 4:pos + 8] != DATB:
                raise DecodeError("data begin marker 'datb' not found", self._base + pos + 4)
            pos += 8
            self.header = Header(tuple(self._decls))
            self._table = build_table(self.header, self._only)
            self._state = S_DATA
        return pos

    def _require(self, buf: bytearray, pos: int, count: int, resume: int) -> None:
        if pos + count > len(buf):
            self._need = pos + count
            raise _NeedMore(resume)

    def _declaration(self, buf: bytearray, start: int) -> int:
        if len(self._decls) >= MAX_DECLARATIONS:
            raise DecodeError(f"header declares more than {MAX_DECLARATIONS} event types",
                              self._base + start)
        try:
            decl, end = parse_declaration(buf, start, MAX_HEADER - self._decl_bytes)
        except HeaderFull as exc:
            raise DecodeError(f"event type {exc.type_id}: the header's declarations exceed "
                              f"{MAX_HEADER} bytes", self._base + start, exc.type_id) from None
        except DeclarationError as exc:
            raise DecodeError(exc.message, self._base + exc.offset, exc.type_id) from None
        if decl is None:
            self._need = end
            raise _NeedMore(start)
        self._decls.append(decl)
        self._decl_bytes += end - start
        return end

    # -- records (the hot loop) -----------------------------------------------

    def _records(self, buf: bytearray, pos: int, events: list[Event]) -> int:
        if not self.native:
            return self._records_py(buf, pos, events)
        base = self._base
        table = self._table
        assert table is not None  # built with the header
        pos, block_end, self._block_cap, status, need, partial, skipped = _speedups.records(
            buf, pos, table, self._block_end - base, self._block_cap, events, Event, UNKNOWN)
        self.skipped += skipped
        self._block_end = block_end + base
        self._partial_id = None if partial < 0 else partial
        if status == _MORE:
            self._need = need
        elif status == _ENDED:
            self._state = S_ENDED
        elif status == _UNDECLARED:
            raise DecodeError(f"event type {partial} is not declared in the header",
                              base + pos, partial)
        else:
            raise self._short_block(buf, pos, partial)
        return pos

    def _short_block(self, buf: bytearray, pos: int, tid: int) -> DecodeError:
        """The one error both record loops raise for a block marker whose
        payload is shorter than its layout (``pos``: where the record starts)."""
        entry = self._table[tid] if self._table is not None else None
        size = entry[0] if entry is not None else None
        if size is None:
            size = buf[pos + 10] << 8 | buf[pos + 11]
        return DecodeError(f"block marker payload of {size} bytes is too short",
                           self._base + pos, tid)

    def _records_py(self, buf: bytearray, pos: int, events: list[Event]) -> int:
        n = len(buf)
        table = self._table
        assert table is not None  # built with the header
        record = _RECORD.unpack_from
        length = _LEN.unpack_from
        append = events.append
        new = tuple.__new__
        E = Event
        base = self._base
        block_end = self._block_end - base
        block_cap = self._block_cap
        skipped = 0
        self._partial_id = None
        try:
            while True:
                if pos + 10 > n:
                    if pos + 2 > n:
                        self._need = pos + 2  # the end marker needs only two bytes
                        return pos
                    tid = buf[pos] << 8 | buf[pos + 1]
                    if tid == END_OF_DATA:
                        self._state = S_ENDED
                        return pos + 2
                    self._partial_id = tid
                    self._need = pos + 10
                    return pos
                tid, t = record(buf, pos)
                entry = table[tid]
                if entry is None:
                    if tid == END_OF_DATA:
                        self._state = S_ENDED
                        return pos + 2
                    raise DecodeError(f"event type {tid} is not declared in the header",
                                      base + pos, tid)
                size, kind, st, post, name, _, _ = entry
                if size is None:
                    if pos + 12 > n:
                        self._need = pos + 12
                        self._partial_id = tid
                        return pos
                    start = pos + 12
                    end = start + length(buf, pos + 10)[0]
                else:
                    start = pos + 10
                    end = start + size
                if end > n:
                    self._need = end
                    self._partial_id = tid
                    return pos
                if kind == K_STRUCT:
                    f = st.unpack_from(buf, start)
                    if post is not None:
                        f = post(f)
                elif kind == K_EMPTY:
                    f = ()
                elif kind == K_READ:
                    f = st(buf, start, end)
                elif kind == K_SKIP:
                    pos = end
                    skipped += 1
                    continue
                elif kind == K_BLOCK:
                    if end - start < st.size:
                        raise self._short_block(buf, pos, tid)
                    f = st.unpack_from(buf, start)
                    block_end = pos + f[0]
                    block_cap = None if f[2] == 0xFFFF else f[2]
                    if post:  # the block marker is wanted
                        append(new(E, (tid, name, t, block_cap, f)))
                    pos = end
                    continue
                elif kind == K_VSTRUCT:
                    if end - start >= st.size:
                        f = st.unpack_from(buf, start)
                        if post is not None:
                            f = post(f)
                    else:
                        name, f = UNKNOWN, ()
                else:  # K_UNKNOWN
                    f = ()
                append(new(E, (tid, name, t, block_cap if pos < block_end else None, f)))
                pos = end
        finally:
            self._block_end = block_end + base
            self._block_cap = block_cap
            self.skipped += skipped
