"""A point of a time series and its InfluxDB line-protocol encoding."""

from __future__ import annotations

from dataclasses import dataclass, field

_MEASUREMENT_ESC = str.maketrans({",": "\\,", " ": "\\ ", "\n": "\\n"})
_TAG_ESC = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ ", "\n": "\\n"})
_STR_ESC = str.maketrans({'"': '\\"', "\\": "\\\\", "\n": "\\n"})

# Rendering caches: the escaped "measurement,tag=value,..." head of a line by
# (measurement, tag items), and escaped field keys.  Points of one stream repeat
# a few heads (the identity tags are the same on all), so most lines cost one
# lookup for the head; the caches are emptied when they grow past a bound.
_HEADS: dict[tuple, str] = {}
_KEYS: dict[str, str] = {}
_CACHE_MAX = 4096
_I64_MAX, _I64_MIN = (1 << 63) - 1, -(1 << 63)  # InfluxDB's integers


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
        fields = []
        append = fields.append
        keys = _KEYS
        for k, value in self.fields.items():
            ek = keys.get(k)
            if ek is None:
                ek = _key(k)
            cls = value.__class__
            if cls is int:
                if _I64_MIN <= value <= _I64_MAX:
                    append(f"{ek}={value}i")
                else:  # (from a corrupt event) InfluxDB would refuse the whole batch
                    append(f"{ek}={_I64_MAX if value > 0 else _I64_MIN}i")
            elif cls is float:
                append(f"{ek}={value!r}")
            elif value is not None:
                append(f"{ek}={_field_value(value)}")
        return f"{head} {','.join(fields)} {self.time}"


def _head(measurement: str, tags: dict) -> str:
    parts = [measurement.translate(_MEASUREMENT_ESC)]
    for key in sorted(tags):
        value = tags[key]
        if value != "" and value is not None:
            parts.append(f"{key.translate(_TAG_ESC)}={str(value).translate(_TAG_ESC)}")
    return ",".join(parts)


def _key(k: str) -> str:
    ek = k.translate(_TAG_ESC)
    if len(_KEYS) >= _CACHE_MAX:
        _KEYS.clear()
    _KEYS[k] = ek
    return ek


def _field_value(value) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(value)
    return '"' + str(value).translate(_STR_ESC) + '"'
