"""What ``liveprof derive`` prints for the logs in tests/data, parsed back from
line protocol the way InfluxDB 1.x reads it, and a model of what InfluxDB
stores and what each rollup should hold (computed here, independently of the
InfluxQL the scheme generates)."""

from __future__ import annotations

import functools
import math
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ingest.rollups import AGGREGATIONS, outputs

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"


def data_logs() -> list[Path]:
    logs = sorted(DATA.glob("*.eventlog"))
    assert logs, f"no eventlogs in {DATA}"
    return logs


@functools.cache
def derive_lines(log: Path, window: float = 1.0) -> tuple[str, ...]:
    """The CLI's output for ``log`` (run as a child process, as a user would)."""
    proc = subprocess.run(
        [sys.executable, "-m", "ingest.cli", "derive", str(log), "--host", "testhost",
         "--window", repr(window)],
        cwd=REPO, check=False, capture_output=True, text=True, timeout=300)
    # a cut-short log exits 1 after printing what it decoded: still points
    assert proc.returncode in (0, 1), proc.stderr
    return tuple(line for line in proc.stdout.splitlines() if line)


@dataclass(frozen=True, slots=True)
class Line:
    measurement: str
    tags: tuple[tuple[str, str], ...]   # sorted, non-empty values only
    fields: dict
    time: int


def _split_unescaped(text: str, sep: str) -> list[str]:
    out, cur, i = [], [], 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            cur.append(text[i:i + 2])
            i += 2
            continue
        if c == sep:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    out.append("".join(cur))
    return out


def _unescape(text: str, chars: str) -> str:
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in chars:
            out.append(text[i + 1])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def parse_line(line: str) -> Line:
    """One line of line protocol as InfluxDB 1.x parses it."""
    # head: up to the first unescaped space
    i = 0
    while True:
        if line[i] == "\\":
            i += 2
            continue
        if line[i] == " ":
            break
        i += 1
    head, rest = line[:i], line[i + 1:]
    parts = _split_unescaped(head, ",")
    measurement = _unescape(parts[0], ", ")
    tags = []
    for part in parts[1:]:
        k, v = _split_unescaped(part, "=")
        tags.append((_unescape(k, ",= "), _unescape(v, ",= ")))
    # fields: walk, strings may hold spaces, commas and escaped quotes
    fields: dict = {}
    j = 0
    while True:
        eq = j
        while rest[eq] != "=" or rest[eq - 1] == "\\":
            eq += 1
        key = _unescape(rest[j:eq], ",= ")
        j = eq + 1
        if rest[j] == '"':
            k = j + 1
            buf = []
            while rest[k] != '"':
                if rest[k] == "\\" and rest[k + 1] in '"\\':
                    buf.append(rest[k + 1])
                    k += 2
                else:
                    buf.append(rest[k])
                    k += 1
            fields[key] = "".join(buf)
            j = k + 1
        else:
            k = j
            while rest[k] not in ", ":
                k += 1
            raw = rest[j:k]
            if raw.endswith("i"):
                fields[key] = int(raw[:-1])
            elif raw in ("t", "T", "true", "True", "TRUE"):
                fields[key] = True
            elif raw in ("f", "F", "false", "False", "FALSE"):
                fields[key] = False
            else:
                fields[key] = float(raw)
            j = k
        if rest[j] == " ":
            break
        j += 1  # the comma
    time = int(rest[j + 1:])
    return Line(measurement, tuple(sorted(tags)), fields, time)


def parse(lines) -> list[Line]:
    return [parse_line(line) for line in lines]


def emitted_fields(lines) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for p in parse(lines):
        out.setdefault(p.measurement, set()).update(p.fields)
    return out


def shifted(points: list[Line], shift: int) -> list[Line]:
    return [Line(p.measurement, p.tags, p.fields, p.time + shift) for p in points]


def to_line(p: Line) -> str:
    def esc(s, chars):
        for c in chars:
            s = s.replace(c, "\\" + c)
        return s
    head = ",".join([esc(p.measurement, ", ")] + [f"{esc(k, ',= ')}={esc(v, ',= ')}" for k, v in p.tags])
    fields = []
    for k, v in p.fields.items():
        if isinstance(v, bool):
            val = "true" if v else "false"
        elif isinstance(v, int):
            val = f"{v}i"
        elif isinstance(v, float):
            val = repr(v)
        else:
            val = '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        fields.append(f"{esc(k, ',= ')}={val}")
    return f"{head} {','.join(fields)} {p.time}"


# -- what InfluxDB stores, and what the rollups should be ------------------------

Key = tuple[str, tuple[tuple[str, str], ...], int]  # measurement, tags, time


def stored(points: list[Line]) -> dict[Key, dict]:
    """InfluxDB keeps one point per series and timestamp: a later write with
    the same key adds its fields to (and overwrites those of) the earlier."""
    out: dict[Key, dict] = {}
    for p in points:
        out.setdefault((p.measurement, p.tags, p.time), {}).update(p.fields)
    return out


def _aggregate(fn: str, values: list):
    if fn == "sum":
        return sum(values)
    if fn == "max":
        return max(values)
    if fn == "min":
        return min(values)
    if fn == "count":
        return len(values)
    if fn == "mean":
        return math.fsum(values) / len(values)
    if fn == "last":
        return values[-1]
    raise AssertionError(fn)


def expected_rollup(store: dict[Key, dict], interval_ns: int) -> dict[Key, dict]:
    """Every rollup point of every measurement at ``interval_ns``, computed
    straight from the stored raw points (whatever level the server rolls up
    from): per interval and tag set, each output of ``outputs()``."""
    groups: dict[Key, list[tuple[int, dict]]] = {}
    for (m, tags, t), fields in store.items():
        groups.setdefault((m, tags, t - t % interval_ns), []).append((t, fields))
    out: dict[Key, dict] = {}
    for key, members in groups.items():
        members.sort(key=lambda tf: tf[0])
        row = {}
        for o in outputs(key[0]):
            values = [f[o.source] for _, f in members if o.source in f]
            if values:
                row[o.name] = _aggregate(o.function, values)
        if row:
            out[key] = row
    return out


def actual_rollup(server, database: str, policy: str) -> dict:
    out = {}
    for m in AGGREGATIONS:
        for s in server.series(f'SELECT * FROM "{database}"."{policy}"."{m}" GROUP BY *', database):
            tags = tuple(sorted((k, v) for k, v in (s.get("tags") or {}).items() if v != ""))
            for row in s["values"]:
                fields = {c: v for c, v in zip(s["columns"][1:], row[1:]) if v is not None}
                out[(m, tags, row[0])] = fields
    return out
