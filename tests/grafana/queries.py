"""Reading the dashboards and alert rules: every query with where it sits, and
a small InfluxQL reader for the conventions of grafana/build_dashboards.py
(the measurement, the ``$rp_kind`` guard, the ``AS`` names, the fields)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from yaml import safe_load as load_yaml

from ingest.rollups import AGGREGATIONS, outputs

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = sorted((REPO / "grafana" / "dashboards").glob("*.json"))
PROVISIONING = REPO / "grafana" / "provisioning"
ALERT_FILES = sorted((PROVISIONING / "alerting").glob("*"))
DS_UID = "liveprof-influxdb"
DS = {"type": "influxdb", "uid": DS_UID}


def dashboards() -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in DASHBOARDS}


def alert_rules() -> list[dict]:
    rules = []
    for path in ALERT_FILES:
        doc = load_yaml(path.read_text())
        for group in doc.get("groups", []):
            rules.extend(group["rules"])
    return rules


@dataclass(frozen=True)
class Target:
    dashboard: str
    panel: dict
    target: dict

    @property
    def query(self) -> str:
        return self.target["query"]

    @property
    def where(self) -> str:
        return f"{self.dashboard} / {self.panel['title']} / {self.target['refId']}"


def panel_targets(dash_name: str, dash: dict) -> list[Target]:
    return [Target(dash_name, p, t) for p in dash["panels"] for t in p.get("targets", [])]


_SELECT = re.compile(r"^SELECT\s+(?P<select>.+?)\s+FROM\s+(?P<from>\S+)\s+WHERE\s+(?P<rest>.*)$", re.DOTALL)
_FROM = re.compile(r'^"(?P<rp>[^"]+)"\."(?P<m>[^"]+)"$')
_GUARD = re.compile(r"'\$rp_kind' = '(raw|rollup)'")
_IDENT = re.compile(r'"([^"]+)"')


def split_top(text: str, sep: str = ",") -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return parts


@dataclass(frozen=True)
class Parsed:
    rp: str
    measurement: str
    items: tuple[tuple[str, str], ...]  # (expression, alias)
    guard: str | None                   # "raw", "rollup" or None (every level)
    where_group: str

    @property
    def aliases(self) -> list[str]:
        return [a for _, a in self.items]

    def fields(self) -> set[str]:
        """Identifiers read in the selected expressions."""
        return {name for expr, _ in self.items for name in _IDENT.findall(expr)}

    def active(self, kind: str) -> bool:
        return self.guard is None or self.guard == kind


def parse(query: str) -> Parsed:
    m = _SELECT.match(query.strip())
    assert m, f"not SELECT ... FROM ... WHERE ...: {query}"
    f = _FROM.match(m.group("from"))
    assert f, f"FROM must be \"<policy>\".\"<measurement>\": {query}"
    items = []
    for item in split_top(m.group("select")):
        a = re.match(r'^(?P<expr>.+?)\s+AS\s+"(?P<alias>[^"]+)"$', item, re.DOTALL)
        assert a, f"every selected expression needs AS \"name\": {item!r} in {query}"
        items.append((a.group("expr"), a.group("alias")))
    guards = _GUARD.findall(m.group("rest"))
    assert len(guards) <= 1, f"at most one $rp_kind guard: {query}"
    return Parsed(f.group("rp"), f.group("m"), tuple(items), guards[0] if guards else None,
                  m.group("rest"))


def schema_fields(measurement: str, kind: str) -> set[str]:
    """The fields a point of ``measurement`` has on a raw or a rollup policy."""
    if kind == "raw":
        return set(AGGREGATIONS[measurement])
    return {o.name for o in outputs(measurement)}
