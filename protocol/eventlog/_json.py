"""Events as JSON lines, in the exact shape of the reference dumps (RefDump over
ghc-events): ``{"t":..,"cap":..,"type":"..","fields":{..}}``, no spaces, text as
raw UTF-8 with ``"``, ``\\`` and control characters escaped."""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum

from ._catalogue import BY_ID
from ._enums import ghc_events_status_name
from ._events import UNKNOWN, Event
from ._ids import EventType as E

_ESCAPES = {i: f"\\u{i:04x}" for i in range(0x20)}
_ESCAPES.update({0x7F: "\\u007f", ord('"'): '\\"', ord("\\"): "\\\\",
                 ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})


def json_string(s: str) -> str:
    return '"' + s.translate(_ESCAPES) + '"'


def json_value(v: object) -> str:
    if v is None:
        return "null"
    if isinstance(v, str):
        return json_string(v)
    if isinstance(v, IntEnum):
        return json_string(v.name)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, (bytes, bytearray)):
        return json_string(v.hex())
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(json_value(x) for x in v) + "]"
    raise TypeError(f"cannot render {type(v).__name__}")


def _pairs(names: Iterable[str], values: Iterable[object]) -> str:
    return ",".join(f'"{k}":{json_value(v)}' for k, v in zip(names, values))


def _default(ev: Event) -> str:
    return _pairs(BY_ID[ev.type].fields, ev.fields)


def _stop_thread(ev: Event) -> str:
    f = ev.fields
    status = int(f[1])
    if status == 8 and len(f) > 2:
        return f'"thread":{f[0]:d},"status":"BlockedOnBlackHoleOwnedBy","blocked_on":{f[2]:d}'
    name = "BlockedOnBlackHole" if status == 8 else ghc_events_status_name(status)
    return f'"thread":{f[0]:d},"status":"{name}"'


def _capset_create(ev: Event) -> str:
    capset, kind = ev.fields
    name = kind.name if isinstance(kind, IntEnum) else "CapsetUnknown"
    return f'"capset":{capset:d},"capsetType":"{name}"'


def _binary(ev: Event) -> str:
    return f'"payload_hex":"{ev.fields[0].hex()}"'


def _ticky_def(ev: Event) -> str:
    names = BY_ID[E.TICKY_COUNTER_DEF].fields
    f = ev.fields
    # the optional trailing fields only when the payload has them
    keep = 4 + (f[4] is not None) + (f[5] is not None)
    return _pairs(names[:keep], f[:keep])


def _show_value(v: object) -> str:
    # the extension events carry only numbers and message tags
    return v.name if isinstance(v, IntEnum) else str(v)


def show_text(ev: Event) -> str:
    """Haskell's ``show`` of the ghc-events constructor (record syntax)."""
    if not ev.fields:
        return ev.name
    names = BY_ID[ev.type].fields
    body = ", ".join(f"{k} = {_show_value(v)}" for k, v in zip(names, ev.fields))
    return f"{ev.name} {{{body}}}"


def _show(ev: Event) -> str:
    return '"show":' + json_string(show_text(ev))


# keyed by plain ints, like BY_ID (looked up per event)
_RENDER = {int(E.STOP_THREAD): _stop_thread, int(E.CAPSET_CREATE): _capset_create,
           int(E.USER_BINARY_MSG): _binary, int(E.TICKY_COUNTER_DEF): _ticky_def}
for _id, _spec in BY_ID.items():
    if _spec.show:
        _RENDER[_id] = _show


def event_json(ev: Event) -> str:
    """One event as one JSON line (without the newline)."""
    if ev.name == UNKNOWN:
        body = f'"ref":{ev.type:d}'
    else:
        body = _RENDER.get(ev.type, _default)(ev)
    cap = "null" if ev.cap is None else str(ev.cap)
    return f'{{"t":{ev.time:d},"cap":{cap},"type":"{ev.name}","fields":{{{body}}}}}'
