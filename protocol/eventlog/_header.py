"""The one reader of the header's event-type declarations (spec 2.2).

``etb\\0 id:u16 size:u16 desc_len:u32 desc extra_len:u32 extra ete\\0``

The decoder (incrementally, with its header bounds), the splitter (to tell a
real header from payload bytes that look like one, ``scan_header``) and the
monitor session (one record per message) all read declarations here.
"""

from __future__ import annotations

import struct

from .._errors import ProtocolError
from ._events import Declaration

HDRB = b"hdrb"
HETB = b"hetb"
ETB = b"etb\0"
ETE = b"ete\0"
HETE = b"hete"
HDRE = b"hdre"
DATB = b"datb"
MAGIC = HDRB + HETB  # how every eventlog begins
VARIABLE = 0xFFFF  # declared size of a variable-size type

# A description or extra info longer than this is taken as corruption, not waited for.
MAX_DECLARATION = 1 << 16

_DECL = struct.Struct(">HHI")
_U32 = struct.Struct(">I")


class DeclarationError(ProtocolError, ValueError):
    """A malformed declaration: ``offset`` is the position in the buffer,
    ``type_id`` the declared id when it was read.  Callers turn it into
    their own error (``DecodeError``, ``SessionError``) or a verdict."""

    def __init__(self, message: str, offset: int, type_id: int | None = None):
        super().__init__(message)
        self.message = message
        self.offset = offset
        self.type_id = type_id


class HeaderFull(DeclarationError):
    """The declaration would take more than the ``room`` left in the header."""


def parse_declaration(buf: bytes | bytearray | memoryview, pos: int = 0,
                      room: int | None = None) -> tuple[Declaration | None, int]:
    """Read the declaration that starts at ``buf[pos]`` (its ``etb``).

    Returns ``(declaration, end)`` with ``end`` just past its ``ete``, or
    ``(None, need)`` when ``buf`` ends inside it: ``buf`` must hold ``need``
    bytes before the next try is worth it.  ``room``: the most bytes the whole
    declaration may take; larger declared lengths fail at once, before their
    bytes are waited for (``HeaderFull``).  Raises ``DeclarationError``.
    """
    n = len(buf)
    if pos + 4 > n:
        return None, pos + 4
    if buf[pos:pos + 4] != ETB:
        raise DeclarationError(f"expected 'etb', got {bytes(buf[pos:pos + 4])!r}", pos)
    at = pos + 4
    if at + 8 > n:
        return None, at + 8
    type_id, size, desc_len = _DECL.unpack_from(buf, at)
    if desc_len > MAX_DECLARATION:
        raise DeclarationError(f"event type {type_id}: description length {desc_len} is too large",
                               at + 4, type_id)
    _check_room(pos, at + 8 + desc_len + 8, room, type_id)
    at += 8
    if at + desc_len + 4 > n:
        return None, at + desc_len + 4
    description = bytes(buf[at:at + desc_len]).decode("utf-8", "replace")
    at += desc_len
    (extra_len,) = _U32.unpack_from(buf, at)
    if extra_len > MAX_DECLARATION:
        raise DeclarationError(f"event type {type_id}: extra info length {extra_len} is too large",
                               at, type_id)
    _check_room(pos, at + 4 + extra_len + 4, room, type_id)
    at += 4 + extra_len
    if at + 4 > n:
        return None, at + 4
    if buf[at:at + 4] != ETE:
        raise DeclarationError(f"event type {type_id}: declaration end marker 'ete' not found",
                               at, type_id)
    return Declaration(type_id, None if size == VARIABLE else size, description), at + 4


def _check_room(start: int, end: int, room: int | None, type_id: int) -> None:
    if room is not None and end - start > room:
        raise HeaderFull(f"event type {type_id}: the declaration takes more than the {room} "
                         f"bytes left", start, type_id)


NEED, BAD, DONE = range(3)


def scan_header(buf: bytes | bytearray, pos: int = 0) -> tuple[int, int]:
    """Check the eventlog header that starts at ``buf[0]``, resuming at
    ``pos`` (0, or a position this returned with ``NEED``).

    Returns ``(DONE, end)`` with the offset just past ``datb``, ``(NEED, pos)``
    when ``buf`` ends inside it, ``(BAD, pos)`` when it is not a header.  A
    header holding another ``hdrbhetb`` is not one: a header cut off in a
    declaration reads the next header's bytes as that declaration's text and
    may then parse on through it, but no real header contains the magic."""
    n = len(buf)
    if pos == 0:
        if n < len(MAGIC):
            return (NEED, 0) if MAGIC.startswith(bytes(buf)) else (BAD, 0)
        if buf[:len(MAGIC)] != MAGIC:
            return BAD, 0
        pos = len(MAGIC)
    while True:
        if pos + 4 > n:
            return NEED, pos
        marker = buf[pos:pos + 4]
        if marker == HETE:
            if pos + 12 > n:
                return NEED, pos
            if buf[pos + 4:pos + 12] != HDRE + DATB:
                return BAD, pos
            end = pos + 12
            return (BAD, pos) if buf.find(MAGIC, 1, end) >= 0 else (DONE, end)
        if marker != ETB:
            return BAD, pos
        try:
            decl, at = parse_declaration(buf, pos)
        except DeclarationError:
            return BAD, pos
        if decl is None:
            return NEED, pos
        pos = at
