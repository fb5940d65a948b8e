"""A point of a time series and its InfluxDB line-protocol encoding.

The escaping follows what InfluxDB 1.x parses (checked against 1.6.7, see
tests/sinks/test_line_protocol.py and docs/influxdb-sink.md):

- measurement: ``,`` and space are escaped; tag keys, tag values and field
  keys: ``,`` ``=`` and space.  A backslash there is literal (1.x keeps
  ``\\\\`` as two), so it is written as it is, except
- a backslash at the *end* of a name, key or value would escape the separator
  after it, and 1.x has no way to write one: each trailing backslash becomes
  ``\uff3c`` (FULLWIDTH REVERSE SOLIDUS), so the line stays valid; in
  measurements and field keys so does a backslash right before ``,`` ``=``
  space or ``"`` (1.x unescapes those pairs there, and has no spelling for a
  backslash before them);
- a newline would end the line and 1.x has no escape for it: it is written as
  the two characters ``\\n``; a measurement starting with ``#`` (a comment
  line) gets a backslash in front;
- string field values: ``"`` and ``\\`` are escaped, everything else (newline
  included) is written as it is, and comes back equal.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from . import _native

_MEASUREMENT_ESC = str.maketrans({",": "\\,", " ": "\\ ", "\n": "\\n"})
_TAG_ESC = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ ", "\n": "\\n"})
_STR_ESC = str.maketrans({'"': '\\"', "\\": "\\\\"})
_TRAILING_BACKSLASH = "\uff3c"  # stands in for a backslash 1.x cannot write at the end
# 1.x unescapes \, \= \space and \" in measurements and field keys (and scans
# field keys in escape pairs): a backslash right before one of those has no spelling
_NAME_BACKSLASHES = re.compile(r'\\+(?=[,= "]|\Z)')

# Rendering caches: the escaped "measurement,tag=value,..." head of a line by
# (measurement, tag items), and escaped field keys.  Points of one stream repeat
# a few heads (the identity tags are the same on all), so most lines cost one
# lookup for the head; the caches are emptied when they grow past a bound.
_HEADS: dict[tuple, str] = {}
_KEYS: dict[str, str] = {}
_CACHE_MAX = 4096
_I64_MAX, _I64_MIN = (1 << 63) - 1, -(1 << 63)  # InfluxDB's integers


@dataclass(frozen=True, slots=True)
class Retraction:
    """A point a live stream wrote that a correction moved to another time or
    series (docs/live.md, "Late events"): a store deletes it.  ``tags`` holds
    every tag key the measurement's points of this stream have had, ``""``
    where this point had none (a point without that tag: InfluxQL's
    ``"k" = ''``), so that the delete takes this point alone."""

    measurement: str
    tags: dict[str, str]
    time: int  # Unix ns
    # written again after the delete: a correction that drops a field of a point
    # (a write only adds or replaces fields: InfluxDB keeps the old field)
    then: Point | None = None


@dataclass(slots=True)
class Point:
    """``time`` is in nanoseconds: eventlog time (since RTS start) while inside
    the derivers, Unix epoch once the pipeline has anchored it."""

    measurement: str
    tags: dict[str, str]
    fields: dict[str, int | float | str | bool]
    time: int
    meta: dict = field(default_factory=dict)  # not written; e.g. hints for sinks

    def to_line(self) -> str:
        """InfluxDB line protocol, nanosecond precision.  Integers are written
        as ``123i`` (saturated to 64 bits: only a corrupt event gives more, and
        InfluxDB would refuse the whole batch), floats as decimals, strings
        quoted, booleans as true/false; empty tag values are left out (InfluxDB
        refuses them)."""
        key = (self.measurement, *self.tags.items())
        head = _HEADS.get(key)
        if head is None:
            head = _head(self.measurement, self.tags)
            if len(_HEADS) >= _CACHE_MAX:
                _HEADS.clear()
            _HEADS[key] = head
        fields: list[str] = []
        append = fields.append
        keys = _KEYS
        for k, value in self.fields.items():
            ek = keys.get(k)
            if ek is None:
                ek = _key(k)
            cls = value.__class__
            if cls is int:
                if _I64_MIN <= value <= _I64_MAX:  # type: ignore[operator]  # an int: its class was checked
                    append(f"{ek}={value}i")
                else:  # (from a corrupt event) InfluxDB would refuse the whole batch
                    append(f"{ek}={_I64_MAX if value > 0 else _I64_MIN}i")  # type: ignore[operator]  # an int
            elif cls is float:
                append(f"{ek}={value!r}")
            elif value is not None:
                append(f"{ek}={_field_value(value)}")
        return f"{head} {','.join(fields)} {self.time}"


def lines(items: Sequence[Point | str]) -> list[str]:
    """Points as ``Point.to_line`` writes them, lines (str) as they are: in
    one call of the compiled core (``_core.lines``) when it is built."""
    core = _native.core
    if core is None:
        return [item if isinstance(item, str) else item.to_line() for item in items]
    if items.__class__ is not list:
        items = list(items)
    return core.lines(items, Point, _HEADS, _KEYS, _head_for, _key, _value_text)


def _head_for(key: tuple, measurement: str, tags: dict) -> str:
    """A head not in the cache, as ``to_line`` makes and caches it."""
    head = _head(measurement, tags)
    if len(_HEADS) >= _CACHE_MAX:
        _HEADS.clear()
    _HEADS[key] = head
    return head


def _value_text(value: object) -> str:
    """A field value the compiled loop leaves (an int beyond 64 bits: saturated,
    as ``to_line`` does; bool, str, an int or float subclass)."""
    if value.__class__ is int:
        return f"{_I64_MAX if value > 0 else _I64_MIN}i"
    return _field_value(value)


def escape_measurement(name: str) -> str:
    """A measurement name as line protocol writes it."""
    out = _name_backslashes(name).translate(_MEASUREMENT_ESC)
    return "\\" + out if out.startswith("#") else out


def escape_key(text: str) -> str:
    """A tag key or tag value as line protocol writes it."""
    if text.endswith("\\"):
        kept = text.rstrip("\\")
        text = kept + _TRAILING_BACKSLASH * (len(text) - len(kept))
    return text.translate(_TAG_ESC)


def unescape_key(text: str) -> str:
    """A tag key or value read back from a line (``\\,`` ``\\=`` ``\\ `` undone;
    the lossy ``\\n`` and trailing-backslash spellings stay as written)."""
    if "\\" in text:
        return text.replace("\\,", ",").replace("\\=", "=").replace("\\ ", " ")
    return text


def escape_field_key(text: str) -> str:
    """A field key as line protocol writes it."""
    return _name_backslashes(text).translate(_TAG_ESC)


def _name_backslashes(text: str) -> str:
    if "\\" in text:
        return _NAME_BACKSLASHES.sub(lambda m: _TRAILING_BACKSLASH * len(m.group()), text)
    return text


def escape_string(text: str) -> str:
    """A string field value, quotes included."""
    return '"' + text.translate(_STR_ESC) + '"'


def _head(measurement: str, tags: dict) -> str:
    parts = [escape_measurement(measurement)]
    for key in sorted(tags):
        value = tags[key]
        if value != "" and value is not None:
            parts.append(f"{escape_key(key)}={escape_key(str(value))}")
    return ",".join(parts)


def _key(k: str) -> str:
    ek = escape_field_key(k)
    if len(_KEYS) >= _CACHE_MAX:
        _KEYS.clear()
    _KEYS[k] = ek
    return ek


def _field_value(value: object) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(value)
    return escape_string(str(value))
