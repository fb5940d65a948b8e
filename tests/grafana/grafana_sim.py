"""What Grafana does with an InfluxQL dashboard before InfluxDB sees a query,
done here in Python so the tests can run every query against a real influxd.

Modelled on Grafana's InfluxDB datasource (InfluxQL mode):

- ``$timeFilter`` -> ``time >= <from>ms and time <= <to>ms``; ``$__interval``
  and ``$__interval_ms`` from the range, the panel's max data points and its
  min interval (``interval``, itself interpolated: ``$rp_interval``), rounded
  as Grafana's ``rangeutil.roundInterval`` does; ``$__from`` / ``$__to`` as
  epoch milliseconds;
- template variables: ``$name``, ``${name}``, ``[[name]]``; a multi-value
  variable becomes ``(a|b)`` with each value regex-escaped; a single value is
  escaped only inside a regex literal ``/.../``; numbers never;
- query variables are resolved in order: the variable query interpolated
  with the variables before it, run, its values read as Grafana's
  ``ResponseParser`` reads them (``value[1]`` of each row, or ``value[0]``
  when there is only one column); a multi variable with "All" selects all
  its values, a single one its first;
- ``maxDataPoints`` is fixed (Grafana uses the panel's width in pixels).
"""

from __future__ import annotations

import json
import re
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

MAX_DATA_POINTS = 1000

_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000,
             "y": 31_536_000_000}


def interval_to_ms(text: str) -> int:
    m = re.fullmatch(r"(\d+)(ms|s|m|h|d|w|y)", text.strip())
    if not m:
        raise ValueError(f"not a Grafana interval: {text!r}")
    return int(m.group(1)) * _UNITS_MS[m.group(2)]


# Grafana's rangeutil.roundInterval: (upper bound in ms, rounded interval in ms)
_ROUND = [(10, 1), (15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500),
          (1500, 1000), (3500, 2000), (7500, 5000), (12500, 10000), (17500, 15000),
          (25000, 20000), (45000, 30000), (90000, 60000), (210000, 120000), (450000, 300000),
          (750000, 600000), (1050000, 900000), (1500000, 1200000), (2700000, 1800000),
          (5400000, 3600000), (9000000, 7200000), (16200000, 10800000), (32400000, 21600000),
          (86400000, 43200000), (604800000, 86400000), (1814400000, 604800000),
          (3628800000, 2592000000)]


def round_interval(ms: float) -> int:
    for bound, value in _ROUND:
        if ms <= bound:
            return value
    return 31_536_000_000


def ms_to_text(ms: int) -> str:
    """Grafana's secondsToHms: the largest whole unit."""
    for unit in ("y", "w", "d", "h", "m", "s"):
        if ms >= _UNITS_MS[unit] and ms % _UNITS_MS[unit] == 0:
            return f"{ms // _UNITS_MS[unit]}{unit}"
    return f"{ms}ms"


def grafana_interval(from_ms: int, to_ms: int, min_interval: str = "",
                     max_points: int = MAX_DATA_POINTS) -> tuple[int, str]:
    ms = round_interval((to_ms - from_ms) / max_points)
    if min_interval:
        ms = max(ms, interval_to_ms(min_interval))
    return ms, ms_to_text(ms)


_REGEX_SPECIALS = re.compile(r"[\\^$*+?.()|\[\]{}/]")


def escape_regex(value: str) -> str:
    return _REGEX_SPECIALS.sub(lambda m: "\\" + m.group(0), value)


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


@dataclass
class Variable:
    name: str
    values: list[str]
    multi: bool

    def format(self, query: str) -> str:
        if len(self.values) == 1 and _is_number(self.values[0]):
            return self.values[0]
        if self.multi:
            if len(self.values) == 1:
                return escape_regex(self.values[0])
            return "(" + "|".join(escape_regex(v) for v in self.values) + ")"
        value = self.values[0] if self.values else ""
        if re.search(r"/[^/\n]*\$\{?" + re.escape(self.name) + r"\b[^/\n]*/", query):
            return escape_regex(value)
        return value


_VAR = re.compile(r"\$(\w+)|\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]")


def substitute(query: str, variables: dict[str, Variable], builtins: dict[str, str]) -> str:
    """Template variables and built-ins replaced; unknown names left as they are."""
    def repl(m: re.Match) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        if name in builtins:
            return builtins[name]
        if name in variables:
            return variables[name].format(query)
        return m.group(0)
    return _VAR.sub(repl, query)


@dataclass
class TimeRange:
    from_ms: int
    to_ms: int

    @property
    def time_filter(self) -> str:
        return f"time >= {self.from_ms}ms and time <= {self.to_ms}ms"


@dataclass
class Influx:
    """The datasource as Grafana's provisioning gives it: url and database."""

    url: str
    database: str
    user: str = ""
    password: str = ""

    def query(self, q: str) -> dict:
        params = {"db": self.database, "q": q, "epoch": "ms"}
        if self.user:
            params.update(u=self.user, p=self.password)
        data = urllib.parse.urlencode(params).encode()
        with urllib.request.urlopen(f"{self.url}/query", data=data, timeout=30) as resp:
            body = json.loads(resp.read())
        for result in body.get("results", []):
            if "error" in result:
                raise AssertionError(f"InfluxDB refused {q!r}: {result['error']}")
        if "error" in body:
            raise AssertionError(f"InfluxDB refused {q!r}: {body['error']}")
        return body

    def series(self, q: str) -> list[dict]:
        results = self.query(q).get("results", [])
        return results[0].get("series", []) if results else []


def metric_find_values(series: list[dict]) -> list[str]:
    """Grafana's InfluxDB ResponseParser for variable queries (SHOW TAG VALUES
    and SELECT alike): value[1] when a row has two or more columns."""
    out: dict[str, None] = {}
    for s in series:
        for row in s.get("values", []):
            value = row[1] if len(row) > 1 else row[0]
            out[str(value)] = None
    return list(out)


@dataclass
class Resolved:
    variables: dict[str, Variable] = field(default_factory=dict)
    queries: dict[str, str] = field(default_factory=dict)  # variable name -> query sent


def builtins(tr: TimeRange, interval_ms: int | None = None, interval: str | None = None) -> dict[str, str]:
    out = {"timeFilter": tr.time_filter, "__from": str(tr.from_ms), "__to": str(tr.to_ms)}
    if interval_ms is not None:
        out.update(__interval=interval, __interval_ms=str(interval_ms), interval=interval)
    return out


def resolve_variables(dashboard: dict, influx: Influx, tr: TimeRange) -> Resolved:
    res = Resolved()
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") != "query":
            raise AssertionError(f"variable {var.get('name')}: only query variables are modelled")
        q = substitute(var["query"], res.variables, builtins(tr))
        res.queries[var["name"]] = q
        values = metric_find_values(influx.series(q))
        if var.get("sort") in (1, 2):
            values = sorted(values, reverse=var["sort"] == 2)
        if var.get("multi") and var.get("includeAll"):
            chosen = values
        else:
            chosen = values[:1]
        res.variables[var["name"]] = Variable(var["name"], chosen, bool(var.get("multi")))
    return res


def panel_builtins(panel: dict, resolved: Resolved, tr: TimeRange) -> dict[str, str]:
    min_interval = substitute(panel.get("interval", ""), resolved.variables, {})
    ms, text = grafana_interval(tr.from_ms, tr.to_ms, min_interval)
    return builtins(tr, ms, text)


def interpolate_target(query: str, panel: dict, resolved: Resolved, tr: TimeRange) -> str:
    return substitute(query, resolved.variables, panel_builtins(panel, resolved, tr))
