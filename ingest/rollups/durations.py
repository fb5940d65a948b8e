"""InfluxQL durations: parsed to ns, written in their largest whole unit, and
read back from what ``SHOW RETENTION POLICIES`` shows (Go's notation)."""

from __future__ import annotations

import re

_UNITS = {"ns": 1, "u": 1_000, "µ": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9,
          "h": 3600 * 10**9, "d": 86400 * 10**9, "w": 7 * 86400 * 10**9}
_PART = re.compile(r"(\d+)(ns|u|µ|ms|s|m|h|d|w)")
_FORMAT_ORDER = ("w", "d", "h", "m", "s", "ms", "u", "ns")


def parse_duration(text: str) -> int:
    """An InfluxQL duration (``90d``, ``1h30m``; ``INF`` for ever) in ns; INF is 0,
    as InfluxDB shows it."""
    text = text.strip()
    if text.upper() == "INF":
        return 0
    pos, total = 0, 0
    for m in _PART.finditer(text):
        if m.start() != pos:
            break
        total += int(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise ValueError(f"not a duration: {text!r} (e.g. 30s, 1m, 1h, 7d, 52w, INF)")
    return total


def format_duration(ns: int) -> str:
    """The InfluxQL literal of ``ns`` (0: INF), in its largest whole unit."""
    if ns == 0:
        return "INF"
    for unit in _FORMAT_ORDER:
        if ns % _UNITS[unit] == 0:
            return f"{ns // _UNITS[unit]}{unit}"
    raise AssertionError("unreachable")


def parse_go_duration(text: str) -> int:
    """A duration as ``SHOW RETENTION POLICIES`` gives it (``168h0m0s``, ``0s``) in ns."""
    units = {"h": 3600 * 10**9, "m": 60 * 10**9, "s": 10**9, "ms": 10**6, "us": 10**3,
             "µs": 10**3, "ns": 1}
    total = 0.0
    for number, unit in re.findall(r"([\d.]+)(h|ms|us|µs|ns|m|s)", text):
        total += float(number) * units[unit]
    return round(total)

