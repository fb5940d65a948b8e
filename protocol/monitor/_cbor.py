"""A strict decoder for the small part of CBOR the monitor protocol uses.

The 2016 monitor's serialiser writes unsigned and negative integers (at most
64 bits), byte and text strings, arrays (definite, and indefinite for
Haskell lists), maps and the booleans (spec 4.1).  Nothing else ever
appears, so nothing else is accepted: no tags (bignums would make integers
of any size, value-sharing tags 28/29 lists that repeat themselves
exponentially), no floats, no indefinite strings.  A general decoder would
accept all of those from a peer; this one refuses them with ``CborError``
naming the byte offset.

Everything is bounded by the input: a declared length or count is checked
against the bytes left before anything is allocated, nesting is limited to
``MAX_DEPTH`` levels, the items of one input to ``max_items`` (a message has
a dozen; a 16 MiB frame of tiny items would otherwise make millions of
objects), and map keys are integers or strings, unique.
"""

from __future__ import annotations

from typing import Any

from .._errors import ProtocolError

MAX_DEPTH = 24   # the deepest real message (a thread's stop status in a snapshot) is ~7

_FALSE, _TRUE, _NULL, _BREAK = 0xF4, 0xF5, 0xF6, 0xFF


class CborError(ProtocolError, ValueError):
    """Bytes that are not one item of the protocol's CBOR subset."""


class _Break:
    """The ``0xff`` that ends an indefinite array or map."""


_BREAK_ITEM = _Break()


def loads(data: bytes, max_items: int = 1 << 20) -> object:
    """The first CBOR item of ``data`` (bytes after it are ignored, as the
    reference receiver does), made of at most ``max_items`` items."""
    return loads_prefix(data, max_items)[0]


def loads_prefix(data: bytes, max_items: int = 1 << 20) -> tuple[object, int]:
    """The first CBOR item of ``data`` and the offset just after it (the
    next item of a CBOR sequence starts there)."""
    if not data:
        raise CborError("empty input")
    budget = [max_items]
    value, end = _item(memoryview(data), 0, 0, budget)
    if value is _BREAK_ITEM:
        raise CborError("unexpected break byte 0xff at offset 0")
    return value, end


def _head(buf: memoryview, pos: int) -> tuple[int, int, int, int]:
    """(major type, additional info, argument, position after the head)."""
    n = len(buf)
    if pos >= n:
        raise CborError(f"input ends at offset {pos}, inside an item")
    initial = buf[pos]
    major, info = initial >> 5, initial & 0x1F
    pos += 1
    if info < 24:
        return major, info, info, pos
    if info <= 27:
        width = 1 << (info - 24)
        if pos + width > n:
            raise CborError(f"input ends at offset {n}, inside the head of the item at "
                            f"offset {pos - 1}")
        return major, info, int.from_bytes(buf[pos:pos + width], "big"), pos + width
    if info == 31:
        return major, info, -1, pos
    raise CborError(f"reserved additional information {info} at offset {pos - 1}")


def _item(buf: memoryview, pos: int, depth: int, budget: list[int]) -> tuple[Any, int]:
    start = pos
    budget[0] -= 1
    if budget[0] < 0:
        raise CborError(f"more items than the bound at offset {start}")
    major, info, arg, pos = _head(buf, pos)
    if major == 0:
        if arg < 0:
            raise CborError(f"indefinite integer at offset {start}")
        return arg, pos
    if major == 1:
        if arg < 0:
            raise CborError(f"indefinite integer at offset {start}")
        return -1 - arg, pos
    if major in (2, 3):
        if arg < 0:
            raise CborError(f"indefinite-length string at offset {start}: not used by the "
                            f"protocol")
        if arg > len(buf) - pos:
            raise CborError(f"string of {arg} bytes at offset {start} runs past the end of "
                            f"the {len(buf)}-byte input")
        raw = bytes(buf[pos:pos + arg])
        if major == 2:
            return raw, pos + arg
        try:
            return raw.decode("utf-8"), pos + arg
        except UnicodeDecodeError:
            raise CborError(f"text string at offset {start} is not UTF-8") from None
    if major in (4, 5):
        if depth >= MAX_DEPTH:
            raise CborError(f"nesting deeper than {MAX_DEPTH} levels at offset {start}")
        if major == 4:
            return _array(buf, pos, depth + 1, arg, start, budget)
        return _map(buf, pos, depth + 1, arg, start, budget)
    if major == 6:
        raise CborError(f"CBOR tag {arg} at offset {start}: tags are not used by the protocol")
    # major 7: simple values and floats
    if info == 31:
        return _BREAK_ITEM, pos
    if start < len(buf) and buf[start] in (_FALSE, _TRUE):
        return buf[start] == _TRUE, pos
    if info >= 25 and info <= 27:
        raise CborError(f"floating-point number at offset {start}: not used by the protocol")
    raise CborError(f"simple value {arg} at offset {start}: not used by the protocol")


def _array(buf: memoryview, pos: int, depth: int, count: int, start: int,
           budget: list[int]) -> tuple[list[Any], int]:
    out: list[Any] = []
    if count >= 0:
        if count > len(buf) - pos:     # every item takes at least one byte
            raise CborError(f"array of {count} items at offset {start} cannot fit in the "
                            f"{len(buf)}-byte input")
        for _ in range(count):
            value, pos = _item(buf, pos, depth, budget)
            if value is _BREAK_ITEM:
                raise CborError(f"unexpected break byte in the array at offset {start}")
            out.append(value)
        return out, pos
    while True:
        value, pos = _item(buf, pos, depth, budget)
        if value is _BREAK_ITEM:
            return out, pos
        out.append(value)


def _map(buf: memoryview, pos: int, depth: int, count: int, start: int,
         budget: list[int]) -> tuple[dict[Any, Any], int]:
    out: dict[Any, Any] = {}
    if count >= 0 and 2 * count > len(buf) - pos:
        raise CborError(f"map of {count} entries at offset {start} cannot fit in the "
                        f"{len(buf)}-byte input")
    taken = 0
    while count < 0 or taken < count:
        key_at = pos
        key, pos = _item(buf, pos, depth, budget)
        if key is _BREAK_ITEM:
            if count < 0:
                return out, pos
            raise CborError(f"unexpected break byte in the map at offset {start}")
        if type(key) not in (int, str, bytes):
            raise CborError(f"map key at offset {key_at} is not an integer or a string")
        if key in out:
            raise CborError(f"map at offset {start} repeats a key (at offset {key_at})")
        value, pos = _item(buf, pos, depth, budget)
        if value is _BREAK_ITEM:
            raise CborError(f"map at offset {start}: a key without a value")
        out[key] = value
        taken += 1
    return out, pos
