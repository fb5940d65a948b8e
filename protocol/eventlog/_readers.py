"""Payload readers of the variable-size event types and the post-processing of
fixed layouts: ``(buf, start, end) -> fields`` and ``fields -> fields``.

Readers never fail on a short payload: a missing field is ``None`` (ghc-events
reads the same way), text is decoded with replacement.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from ._enums import (
    BREAKDOWN_BY_CODE,
    CAPSET_TYPE_BY_CODE,
    MSG_TAG_BY_CODE,
    STOP_STATUS_BY_CODE,
    lookup,
)

Buf = bytes | bytearray
Fields = tuple[Any, ...]  # an event's field values
Reader = Callable[[Buf, int, int], Fields]
Post = Callable[[Fields], Fields]
Unpack = Callable[[Buf, int], tuple[int]]

# --- payload readers -------------------------------------------------------------

_U8 = struct.Struct(">B").unpack_from
_U16 = struct.Struct(">H").unpack_from
_U32 = struct.Struct(">I").unpack_from
_U64 = struct.Struct(">Q").unpack_from


def text(raw: Buf) -> str:
    return bytes(raw).decode("utf-8", "replace")


def _cstr(buf: Buf, pos: int, end: int) -> tuple[str | None, int]:
    """A NUL-terminated string at ``pos``; (None, end) when nothing is left,
    and the rest of the payload when the terminator is missing."""
    if pos >= end:
        return None, end
    nul = buf.find(b"\0", pos, end)
    if nul < 0:
        return text(buf[pos:end]), end
    return text(buf[pos:nul]), nul + 1


def _cstrs(buf: Buf, pos: int, end: int, count: int) -> tuple[list[str | None], int]:
    out: list[str | None] = []
    for _ in range(count):
        s, pos = _cstr(buf, pos, end)
        out.append(s)
    return out, pos


def _int(unpack: Unpack, size: int, buf: Buf, pos: int, end: int) -> tuple[int | None, int]:
    if pos + size > end:
        return None, end
    return unpack(buf, pos)[0], pos + size


def read_text(buf: Buf, start: int, end: int) -> Fields:
    return (text(buf[start:end]),)


def read_capset_text(buf: Buf, start: int, end: int) -> Fields:
    capset, pos = _int(_U32, 4, buf, start, end)
    return (capset, text(buf[pos:end]))


def read_capset_list(buf: Buf, start: int, end: int) -> Fields:
    capset, pos = _int(_U32, 4, buf, start, end)
    raw = bytes(buf[pos:end])
    if raw.endswith(b"\0"):
        raw = raw[:-1]
    return (capset, [text(part) for part in raw.split(b"\0")])


def read_thread_text(buf: Buf, start: int, end: int) -> Fields:
    thread, pos = _int(_U32, 4, buf, start, end)
    return (thread, text(buf[pos:end]))


def read_intern_string(buf: Buf, start: int, end: int) -> Fields:
    split = max(start, end - 4)
    sid = _U32(buf, split)[0] if end - start >= 4 else None
    return (text(buf[start:split]), sid)


def read_perf_name(buf: Buf, start: int, end: int) -> Fields:
    num, pos = _int(_U32, 4, buf, start, end)
    return (num, text(buf[pos:end]))


def read_heap_prof_begin(buf: Buf, start: int, end: int) -> Fields:
    pid, pos = _int(_U8, 1, buf, start, end)
    period, pos = _int(_U64, 8, buf, pos, end)
    breakdown, pos = _int(_U32, 4, buf, pos, end)
    if breakdown is not None:
        breakdown = lookup(BREAKDOWN_BY_CODE, breakdown)
    filters, pos = _cstrs(buf, pos, end, 7)
    return (pid, period, breakdown, *filters)


def read_cost_centre(buf: Buf, start: int, end: int) -> Fields:
    cc, pos = _int(_U32, 4, buf, start, end)
    strs, pos = _cstrs(buf, pos, end, 3)
    flags, pos = _int(_U8, 1, buf, pos, end)
    return (cc, *strs, flags)


def _stack(buf: Buf, pos: int, end: int, depth: int | None) -> list[int] | None:
    if depth is None:
        return None
    count = min(depth, max(0, (end - pos) // 4))
    return list(struct.unpack_from(f">{count}I", buf, pos))


def read_sample_cost_centre(buf: Buf, start: int, end: int) -> Fields:
    pid, pos = _int(_U8, 1, buf, start, end)
    residency, pos = _int(_U64, 8, buf, pos, end)
    depth, pos = _int(_U8, 1, buf, pos, end)
    return (pid, residency, depth, _stack(buf, pos, end, depth))


def read_sample_string(buf: Buf, start: int, end: int) -> Fields:
    pid, pos = _int(_U8, 1, buf, start, end)
    residency, pos = _int(_U64, 8, buf, pos, end)
    label, pos = _cstr(buf, pos, end)
    return (pid, residency, label)


def read_prof_sample(buf: Buf, start: int, end: int) -> Fields:
    cap, pos = _int(_U32, 4, buf, start, end)
    ticks, pos = _int(_U64, 8, buf, pos, end)
    depth, pos = _int(_U8, 1, buf, pos, end)
    return (cap, ticks, depth, _stack(buf, pos, end, depth))


def read_ipe(buf: Buf, start: int, end: int) -> Fields:
    info, pos = _int(_U64, 8, buf, start, end)
    raw, pos = _cstrs(buf, pos, end, 6)
    strs: list[str | int | None] = list(raw)
    desc = strs[1]
    if isinstance(desc, str):
        digits = desc.strip()
        strs[1] = int(digits) if digits.isdigit() else desc
    return (info, *strs)


def read_binary(buf: Buf, start: int, end: int) -> Fields:
    return (bytes(buf[start:end]),)


def read_ticky_def(buf: Buf, start: int, end: int) -> Fields:
    cid, pos = _int(_U64, 8, buf, start, end)
    arity, pos = _int(_U16, 2, buf, pos, end)
    (kinds, name), pos = _cstrs(buf, pos, end, 2)
    info_table, pos = _int(_U64, 8, buf, pos, end)
    json_desc, pos = _cstr(buf, pos, end)
    return (cid, arity, kinds, name, info_table, json_desc)


# --- post-processing of fixed layouts ---------------------------------------------


def stop10(f: Fields) -> Fields:
    return (f[0], lookup(STOP_STATUS_BY_CODE, f[1]), f[2])


def stop6(f: Fields) -> Fields:
    return (f[0], lookup(STOP_STATUS_BY_CODE, f[1]))


def capset_create(f: Fields) -> Fields:
    return (f[0], lookup(CAPSET_TYPE_BY_CODE, f[1]))


# wire order: created, dud, overflowed, converted, gc'd, fizzled, remaining;
# the event's: fizzled before gc'd (the C loop reorders by this, _catalogue.py)
SPARK_COUNTERS_ORDER = bytes((0, 1, 2, 3, 5, 4, 6))


def spark_counters(f: Fields) -> Fields:
    return (f[0], f[1], f[2], f[3], f[5], f[4], f[6])


def gc_stats50(f: Fields) -> Fields:
    return f + (None,)


def eden_tag(f: Fields) -> Fields:
    return (lookup(MSG_TAG_BY_CODE, f[0] - 0x50),) + f[1:]


def drop_all(f: Fields) -> Fields:
    return ()


def last_only(f: Fields) -> Fields:
    return f[-1:]
