"""Typed ``ProfileMsg`` values and their CBOR codec (spec section 4).

Every message body is one CBOR item built by the generic ``Serialise``
instances of binary-serialise-cbor: ``[constructor, field, ...]`` arrays.
``decode_message`` checks every shape and type strictly, so a peer can never
make it return anything but one of the types below (or raise
``MessageError``).
"""

from __future__ import annotations

from typing import Any, NamedTuple, TypeVar

import cbor2

from .._errors import ProtocolError
from . import _cbor

_T = TypeVar("_T")


class MessageError(ProtocolError, ValueError):
    """A frame or datagram body that is not a valid ``ProfileMsg``."""

    # set by ``Session.receive_all``: the bytes the messages before the failing
    # one made, and the failing message's position
    data: bytes = b""
    index: int = 0
    # set by ``decode_datagram``: the byte offset of the item that failed
    at: int = 0


# -- payloads that may be split (EventMsgPartial) ------------------------------------------

class Full(NamedTuple):
    """``EventMsgFull``: the whole payload in one message."""
    data: bytes


class SplitHeader(NamedTuple):
    """``EventMsgPartial``: message ``msg_id`` follows in ``parts`` parts."""
    msg_id: int
    parts: int


class Part(NamedTuple):
    """``EventMsgPart``: part ``part_no`` (0-based) of message ``msg_id``."""
    msg_id: int
    part_no: int
    data: bytes


Payload = Full | SplitHeader | Part


# -- top-level messages ----------------------------------------------------------------------

class ServicePause(NamedTuple):
    """``ProfileService (ServicePause b)``: defined upstream, never sent."""
    pause: bool


class HeaderLength(NamedTuple):
    """``ProfileHeader (HeaderLength n)``: ``n`` event-type records follow."""
    count: int  # type: ignore[assignment]  # the spec's name; it shadows tuple.count here


class HeaderType(NamedTuple):
    """``ProfileHeader (HeaderType record)``: one event-type record (spec 5.1)."""
    record: bytes


class EventMessage(NamedTuple):
    """``ProfileEvent (EventMsg payload)``: one re-encoded event (spec 5.2)."""
    payload: Payload


class StateMessage(NamedTuple):
    """``ProfileState payload``: a CBOR ``EventlogState`` snapshot (spec 6)."""
    payload: Payload


class BlockHeader(NamedTuple):
    """``ProfileEvent (EventBlockMsg (EventBlockMsgHeader ...))``; ``cap`` is
    ``None`` for the global block (0 on the wire), else the capability."""
    block_id: int
    begin: int
    end: int
    cap: int | None
    size: int


class BlockPart(NamedTuple):
    """``ProfileEvent (EventBlockMsg (EventBlockMsgPart id payload))``."""
    block_id: int
    payload: Payload


Message = (ServicePause | HeaderLength | HeaderType | EventMessage | StateMessage
           | BlockHeader | BlockPart)

U64 = (1 << 64) - 1
U32 = (1 << 32) - 1


# -- decoding ------------------------------------------------------------------------------

# CBOR items in the largest message (a block header: 12); state snapshots travel as a
# byte string inside their message and are decoded on their own
MAX_ITEMS = 64

_EVENT_FULL = b"\x82\x02\x82\x01\x82\x00"  # [2, [1, [0, <bytes>]]]: nearly every message
_EVENT_PART = b"\x82\x02\x82\x01\x84\x02"  # [2, [1, [2, id, part, <bytes>]]]
_EVENT_SPLIT = b"\x82\x02\x82\x01\x82\x01\x83\x00"  # [2, [1, [1, [0, id, parts]]]]
_BLOCK_FULL = b"\x82\x02\x82\x00\x83\x01"  # [2, [0, [1, id, [0, <bytes>]]]]: block parts


def _head(body: bytes, pos: int, major: int) -> tuple[int, int]:
    """(argument, position after) of a definite head of type ``major`` at
    ``pos``; (-1, pos) if there is none (the general decoder then decides)."""
    if pos < len(body):
        initial = body[pos]
        if initial >> 5 == major:
            info = initial & 0x1F
            if info < 24:
                return info, pos + 1
            if info <= 27:
                end = pos + 1 + (1 << (info - 24))
                if end <= len(body):
                    return int.from_bytes(body[pos + 1:end], "big"), end
    return -1, pos


def _fast(body: bytes) -> Message | None:
    """The message if ``body`` has one of the shapes split events take (the
    bulk of the traffic besides whole events), read directly; else None."""
    found = _fast_at(body, 0)
    return None if found is None else found[0]


def _fast_at(body: bytes, at: int) -> tuple[Message, int] | None:
    """``_fast`` for the item at ``at``: (message, offset after it) or None."""
    if body[at:at + 6] == _EVENT_PART:
        msg_id, pos = _head(body, at + 6, 0)
        part_no, pos = _head(body, pos, 0)
        size, pos = _head(body, pos, 2)
        if msg_id >= 0 and part_no >= 0 and size >= 0 and pos + size <= len(body):
            return EventMessage(Part(msg_id, part_no, body[pos:pos + size])), pos + size
    elif body[at:at + 6] == _BLOCK_FULL:
        block_id, pos = _head(body, at + 6, 0)
        if block_id >= 0 and body[pos:pos + 2] == b"\x82\x00":
            size, pos = _head(body, pos + 2, 2)
            if size >= 0 and pos + size <= len(body):
                return BlockPart(block_id, Full(body[pos:pos + size])), pos + size
    elif body[at:at + 8] == _EVENT_SPLIT:
        msg_id, pos = _head(body, at + 8, 0)
        parts, pos = _head(body, pos, 0)
        if msg_id >= 0 and parts >= 0:
            return EventMessage(SplitHeader(msg_id, parts)), pos
    return None


def decode_message(body: bytes) -> Message:
    """Decode one frame body (or datagram).  Bytes after the first complete
    CBOR item are ignored, as the reference receiver does."""
    if body[:6] == _EVENT_FULL and len(body) > 6:
        # the common shape, read directly: a definite byte string after the prefix
        head = body[6]
        if 0x40 <= head <= 0x57:
            start, size = 7, head - 0x40
        elif head == 0x58 and len(body) > 7:
            start, size = 8, body[7]
        elif head == 0x59 and len(body) > 8:
            start, size = 9, (body[7] << 8) | body[8]
        else:
            start = size = -1
        if start > 0 and len(body) >= start + size:
            return EventMessage(Full(body[start:start + size]))
    fast = _fast(body)
    if fast is not None:
        return fast
    try:
        item = _cbor.loads(body, MAX_ITEMS)
    except _cbor.CborError as exc:
        raise MessageError(f"not valid CBOR: {exc}") from None
    return _profile_msg(item)


def decode_datagram(body: bytes) -> tuple[list[Message], MessageError | None]:
    """The messages of a datagram (docs/monitor-protocol.md 3.3): one CBOR
    ``ProfileMsg``, or several one after another (a packed datagram).
    Returns the messages decoded and, if an item is not a valid message, the
    error: decoding stops there, the messages before it stand (the error's
    ``index`` is the failing item's position)."""
    if not body:
        return [], MessageError("an empty datagram carries no message")
    out: list[Message] = []
    pos, n = 0, len(body)
    try:
        while pos < n:
            msg, pos = _message_at(body, pos)
            out.append(msg)
    except MessageError as exc:
        exc.index, exc.at = len(out), pos
        return out, exc
    return out, None


def _message_at(body: bytes, at: int) -> tuple[Message, int]:
    """The message whose CBOR item starts at ``at``, and the offset after it."""
    if body[at:at + 6] == _EVENT_FULL and len(body) > at + 6:
        head = body[at + 6]
        if 0x40 <= head <= 0x57:
            start, size = at + 7, head - 0x40
        elif head == 0x58 and len(body) > at + 7:
            start, size = at + 8, body[at + 7]
        elif head == 0x59 and len(body) > at + 8:
            start, size = at + 9, (body[at + 7] << 8) | body[at + 8]
        else:
            start = size = -1
        if start > 0 and len(body) >= start + size:
            return EventMessage(Full(body[start:start + size])), start + size
    fast = _fast_at(body, at)
    if fast is not None:
        return fast
    rest = body[at:] if at else body
    try:
        item, used = _cbor.loads_prefix(rest, MAX_ITEMS)
    except _cbor.CborError as exc:
        raise MessageError(f"not valid CBOR: {exc}") from None
    return _profile_msg(item), at + used


def _uint(value: Any, what: str, limit: int = U64) -> int:
    if type(value) is not int or not 0 <= value <= limit:
        raise MessageError(f"{what}: expected an unsigned integer, got {_show(value)}")
    return value


def _exact(value: object, kind: type[_T], what: str, expected: str) -> _T:
    """``value`` if its type is exactly ``kind`` (a bool is no int here)."""
    if type(value) is not kind:
        raise MessageError(f"{what}: expected {expected}, got {_show(value)}")
    return value


def _bytes(value: object, what: str) -> bytes:
    return _exact(value, bytes, what, "a byte string")


def _cons(value: Any, what: str, arities: dict[int, int]) -> tuple[int, list[Any]]:
    """Check a generic constructor array ``[tag, fields...]``; return (tag, fields)."""
    if type(value) is not list or not value:
        raise MessageError(f"{what}: expected a constructor array, got {_show(value)}")
    tag = value[0]
    if type(tag) is not int or tag not in arities:
        raise MessageError(f"{what}: unknown constructor {_show(tag)}")
    if len(value) != arities[tag] + 1:
        raise MessageError(f"{what}: constructor {tag} takes {arities[tag]} fields, "
                           f"got {len(value) - 1}")
    return tag, value[1:]


def _show(value: Any) -> str:
    """A short description of a decoded value for an error message.  Never
    ``repr`` of the whole value: it came from a peer, and its text may be huge
    (an integer's digits, a deeply shared list) or may not be made at all."""
    kind = type(value).__name__
    if type(value) is int:
        if value.bit_length() > 64:
            return f"int of {value.bit_length()} bits"
        return f"int {value}"
    if type(value) in (bool, float) or value is None:
        return f"{kind} {value!r}"
    if type(value) in (str, bytes):
        head = repr(value[:32])
        return f"{kind} {head}{'...' if len(value) > 32 else ''} ({len(value)} long)"
    if type(value) in (list, tuple, dict):
        return f"{kind} of {len(value)} items"
    return kind


def _profile_msg(item: Any) -> Message:
    tag, (field,) = _cons(item, "ProfileMsg", {0: 1, 1: 1, 2: 1, 3: 1})
    if tag == 0:
        _, (flag,) = _cons(field, "ServiceMsg", {0: 1})
        return ServicePause(_exact(flag, bool, "ServicePause", "a boolean"))
    if tag == 1:
        htag, (value,) = _cons(field, "HeaderMsg", {0: 1, 1: 1})
        if htag == 0:
            return HeaderLength(_uint(value, "HeaderLength"))
        return HeaderType(_bytes(value, "HeaderType"))
    if tag == 3:
        return StateMessage(_payload(field, "ProfileState"))
    etag, (value,) = _cons(field, "EventMsg", {0: 1, 1: 1})
    if etag == 1:
        return EventMessage(_payload(value, "EventMsg"))
    btag, fields = _cons(value, "EventBlockMsg", {0: 1, 1: 2})
    if btag == 0:
        _, (bid, begin, end, cap, size) = _cons(fields[0], "EventBlockMsgData", {0: 5})
        cap = _uint(cap, "block capability", U32)
        return BlockHeader(_uint(bid, "block id"), _uint(begin, "block begin"),
                           _uint(end, "block end"), None if cap == 0 else cap - 1,
                           _uint(size, "block size", U32))
    return BlockPart(_uint(fields[0], "block id"), _payload(fields[1], "EventBlockMsgPart"))


def _payload(item: Any, what: str) -> Payload:
    tag, fields = _cons(item, f"{what} payload", {0: 1, 1: 1, 2: 3})
    if tag == 0:
        return Full(_bytes(fields[0], f"{what} payload"))
    if tag == 1:
        _, (msg_id, parts) = _cons(fields[0], "EventPartialData", {0: 2})
        return SplitHeader(_uint(msg_id, "split message id"), _uint(parts, "split part count"))
    msg_id, part_no, data = fields
    return Part(_uint(msg_id, "part message id"), _uint(part_no, "part number"),
                _bytes(data, "part bytes"))


# -- encoding ------------------------------------------------------------------------------

def encode_message(msg: Message) -> bytes:
    """The CBOR body of ``msg``, byte-identical to the 2016 monitor's."""
    return cbor2.dumps(_msg_item(msg))


def _payload_item(p: Payload) -> list[Any]:
    if isinstance(p, Full):
        return [0, p.data]
    if isinstance(p, SplitHeader):
        return [1, [0, p.msg_id, p.parts]]
    return [2, p.msg_id, p.part_no, p.data]


def _msg_item(msg: Message) -> list[Any]:
    if isinstance(msg, ServicePause):
        return [0, [0, msg.pause]]
    if isinstance(msg, HeaderLength):
        return [1, [0, msg.count]]
    if isinstance(msg, HeaderType):
        return [1, [1, msg.record]]
    if isinstance(msg, EventMessage):
        return [2, [1, _payload_item(msg.payload)]]
    if isinstance(msg, StateMessage):
        return [3, _payload_item(msg.payload)]
    if isinstance(msg, BlockHeader):
        cap = 0 if msg.cap is None else msg.cap + 1
        return [2, [0, [0, [0, msg.block_id, msg.begin, msg.end, cap, msg.size]]]]
    if isinstance(msg, BlockPart):
        return [2, [0, [1, msg.block_id, _payload_item(msg.payload)]]]
    raise TypeError(f"not a monitor message: {msg!r}")


def split_payload(data: bytes, max_size: int | None, msg_id: int) -> list[Payload]:
    """Spec 7.1: ``[Full(data)]`` when it fits in ``max_size`` (``None`` = no
    limit), else a split header and the parts, using message id ``msg_id``."""
    if max_size is None or len(data) <= max_size:
        return [Full(data)]
    if max_size < 1:
        raise ValueError("max_size must be at least 1")
    chunks = [data[i:i + max_size] for i in range(0, len(data), max_size)]
    out: list[Payload] = [SplitHeader(msg_id, len(chunks))]
    out += [Part(msg_id, n, c) for n, c in enumerate(chunks)]
    return out
