"""The per-type table both record loops (Python and C) dispatch on: for each
declared type id, what to do with its records and how."""

from __future__ import annotations

import re
import struct
from typing import Any

from ._catalogue import CATALOGUE, Native, select_layout
from ._enums import STOP_STATUS_BY_CODE, lookup
from ._events import UNKNOWN, Header
from ._ids import END_OF_DATA, EventType
from ._readers import Fields

# what the record loops do with a record of each declared type (numbered as in _speedups.c)
K_STRUCT, K_VSTRUCT, K_EMPTY, K_READ, K_BLOCK, K_SKIP, K_UNKNOWN = range(7)

# One entry of the table the record loops dispatch on, by type id:
# (size or None, kind, struct or reader, post or wanted, name, B/H/I/Q codes, native).
# The third and fourth items change type with the kind, hence Any.
Entry = tuple[int | None, int, Any, Any, str | None, bytes | None, Native]


def _codes(st: struct.Struct) -> bytes:
    """'>7QH' -> b'QQQQQQQH': one letter per field, for the C loop."""
    out: list[str] = []
    for count, code in re.findall(r"(\d*)([BHIQ])", st.format.lstrip(">")):
        out.append(code * int(count or 1))
    return "".join(out).encode()


def _stop_782(f: Fields) -> Fields:
    # GHC 7.8.2 numbered BlockedOnMVarRead 8 and shifted the later codes up by one
    code = f[1]
    if code == 8:
        code = 20
    elif 9 <= code <= 20:
        code -= 1
    return (f[0], lookup(STOP_STATUS_BY_CODE, code), f[2])


def build_table(header: Header, only: frozenset[int] | None) -> list[Entry | None]:
    """The entry of each declared type id; ``only``: the ids to decode (None: all)."""
    declared = header.declared()
    table: list[Entry | None] = [None] * 0x10000
    # GHC 7.8.2: user markers but not yet the declaration that marks the fixed codes
    old_stop_codes = EventType.USER_MARKER in declared and EventType.HACK_BUG_T9003 not in declared
    for type_id, et in declared.items():
        if type_id == END_OF_DATA:
            continue
        size = et.size
        spec = CATALOGUE.get(type_id)
        wanted = only is None or type_id in only
        layout = select_layout(spec, size) if spec is not None else None
        if type_id == EventType.BLOCK_MARKER and spec is not None and layout is not None \
                and layout.struct is not None:
            table[type_id] = (size, K_BLOCK, layout.struct, wanted, spec.name,
                              _codes(layout.struct), None)
            continue
        if not wanted:
            table[type_id] = (size, K_SKIP, None, None, None, None, None)
        elif spec is None or layout is None:
            table[type_id] = (size, K_UNKNOWN, None, None, UNKNOWN, None, None)
        elif layout.read is not None:
            table[type_id] = (size, K_READ, layout.read, None, spec.name, None, layout.native)
        elif layout.size == 0 or layout.struct is None:
            table[type_id] = (size, K_EMPTY, None, None, spec.name, None, None)
        else:
            post, native = layout.post, layout.native
            if type_id == EventType.STOP_THREAD and old_stop_codes and layout.size == 10:
                post, native = _stop_782, None
            kind = K_VSTRUCT if size is None else K_STRUCT
            table[type_id] = (size, kind, layout.struct, post, spec.name,
                              _codes(layout.struct), native)
    return table
