"""A point of a time series and its InfluxDB line-protocol encoding."""

from __future__ import annotations

from dataclasses import dataclass, field

_MEASUREMENT_ESC = str.maketrans({",": "\\,", " ": "\\ ", "\n": "\\n"})
_TAG_ESC = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ ", "\n": "\\n"})
_STR_ESC = str.maketrans({'"': '\\"', "\\": "\\\\", "\n": "\\n"})


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
        as ``123i``, floats as decimals, strings quoted, booleans as true/false;
        empty tag values are left out (InfluxDB refuses them)."""
        parts = [self.measurement.translate(_MEASUREMENT_ESC)]
        for key in sorted(self.tags):
            value = self.tags[key]
            if value != "" and value is not None:
                parts.append(f"{key.translate(_TAG_ESC)}={str(value).translate(_TAG_ESC)}")
        fields = []
        for key, value in self.fields.items():
            if value is None:
                continue
            fields.append(f"{key.translate(_TAG_ESC)}={_field_value(value)}")
        return f"{','.join(parts)} {','.join(fields)} {self.time}"


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
