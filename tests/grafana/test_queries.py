"""Every dashboard query, annotation, variable and alert query, with Grafana's
macros and variables substituted as Grafana does (tests/grafana/grafana_sim.py),
run against a real influxd filled from corpus logs (conftest.py): non-empty
series with the expected columns, on the raw policy for a short range and on
the rollups for long ones."""

from __future__ import annotations

import pytest

from ingest.rollups import rp_levels

from .conftest import SCHEME, T0_MS
from .grafana_sim import (
    TimeRange,
    builtins,
    interpolate_target,
    resolve_variables,
    substitute,
)
from .queries import DASHBOARDS, alert_rules, dashboards, parse

HOUR, DAY = 3_600_000, 86_400_000
# (range length, the policy the issue asks for); every range ends just after the data
RANGES = {"1h": (HOUR, "raw"), "7d": (7 * DAY, "1m"), "60d": (60 * DAY, "1h")}


def time_range(stack, length: int) -> TimeRange:
    to = stack.end_ms + 10 * 60_000
    return TimeRange(to - length, to)


def expected_policy(length: int) -> str:
    (lv,) = [lv for lv in rp_levels(SCHEME) if lv.start_ms < length <= lv.end_ms]
    return lv.rp


@pytest.mark.parametrize("span", list(RANGES))
def test_rp_variable_picks_the_policy_for_the_range(stack, span):
    length, wanted = RANGES[span]
    assert expected_policy(length) == wanted
    for name, dash in dashboards().items():
        res = resolve_variables(dash, stack.influx, time_range(stack, length))
        assert res.variables["rp"].values == [wanted], name
        kind = "raw" if wanted == "raw" else "rollup"
        assert res.variables["rp_kind"].values == [kind]
        (lv,) = [lv for lv in rp_levels(SCHEME) if lv.rp == wanted]
        assert res.variables["rp_interval"].values == [lv.interval]
        # the query Grafana sends has the range length as the literal difference
        tr = time_range(stack, length)
        assert f"{tr.to_ms} - {tr.from_ms} > \"start\"" in res.queries["rp"]


def _check_series(series: list[dict], columns: list[str], where: str) -> None:
    assert series, f"{where}: no series"
    for s in series:
        assert s["columns"] == columns, f"{where}: columns {s['columns']} != {columns}"
        assert s["values"], f"{where}: empty series"
    assert any(v is not None for s in series for row in s["values"] for v in row[1:]), \
        f"{where}: only nulls"


@pytest.mark.parametrize("span", list(RANGES))
@pytest.mark.parametrize("name", [p.name for p in DASHBOARDS])
def test_every_panel_fills_and_reads_only_its_level(stack, name, span):
    length, wanted = RANGES[span]
    dash = dashboards()[name]
    tr = time_range(stack, length)
    res = resolve_variables(dash, stack.influx, tr)
    for v in ("app", "host", "session"):
        assert res.variables[v].values, f"{name}: ${v} has no values"
    if res.variables["session"].multi:
        assert len(res.variables["session"].values) > 1  # All: the (a|b) regex form is exercised
    kind = res.variables["rp_kind"].values[0]
    for panel in dash["panels"]:
        answered = 0
        for t in panel["targets"]:
            pq = parse(t["query"])
            q = interpolate_target(t["query"], panel, res, tr)
            assert "$" not in q.replace("$/", "").replace("/^", ""), f"left over in {q}"
            assert f'FROM "{wanted}".' in q
            series = stack.influx.series(q)
            where = f"{name} / {panel['title']} / {t['refId']} on {wanted}"
            if pq.active(kind):
                _check_series(series, ["time", *pq.aliases], where)
                answered += 1
            else:
                assert series == [], f"{where}: the guard let a {pq.guard} query run"
        assert answered, f"{name} / {panel['title']}: nothing on {wanted}"


@pytest.mark.parametrize("span", list(RANGES))
def test_markers_annotation_returns_the_marker_texts(stack, span):
    length, wanted = RANGES[span]
    for name, dash in dashboards().items():
        tr = time_range(stack, length)
        res = resolve_variables(dash, stack.influx, tr)
        sessions = res.variables["session"].values
        texts = {ln.split('text="', 1)[1].rsplit('"', 1)[0] for ln in stack.lines("markers")
                 if 'text="' in ln and any(f"session={s}" in ln for s in sessions)}
        for a in dash["annotations"]["list"]:
            if a.get("builtIn"):
                continue
            q = substitute(a["query"], res.variables, builtins(tr))
            series = stack.influx.series(q)
            assert texts, name
            _check_series(series, ["time", "text"], f"{name} markers on {wanted}")
            got = {row[1] for s in series for row in s["values"]}
            # raw has every marker; a rollup keeps the last text of each interval
            assert got <= texts and (got == texts if wanted == "raw" else got), name


def test_variables_follow_each_other(stack):
    """$host narrows to the hosts of the chosen apps, $session to theirs."""
    dash = dashboards()["overview.json"]
    tr = time_range(stack, HOUR)
    res = resolve_variables(dash, stack.influx, tr)
    apps, hosts = res.variables["app"].values, res.variables["host"].values
    assert len(apps) >= 3 and sorted(hosts) == ["host-a", "host-b"]
    one = {"app": res.variables["app"].__class__("app", apps[:1], True)}
    q = substitute(dash["templating"]["list"][4]["query"], one, builtins(tr))  # $host
    assert dash["templating"]["list"][4]["name"] == "host"
    narrowed = [row[1] for s in stack.influx.series(q) for row in s["values"]]
    assert len(narrowed) == 1 and narrowed[0] in hosts


# -- alert rules ------------------------------------------------------------------------------------

def _alert_queries():
    for rule in alert_rules():
        for d in rule["data"]:
            if d["datasourceUid"] != "__expr__":
                yield rule, d


@pytest.mark.parametrize("rule_query", list(_alert_queries()),
                         ids=lambda rq: f"{rq[0]['uid']}:{rq[1]['refId']}")
def test_alert_queries_return_series(stack, rule_query):
    """Each query at an evaluation time whose window (relativeTimeRange) holds
    the data, as Grafana's scheduler would run it then."""
    rule, d = rule_query
    rel = d["relativeTimeRange"]
    now = T0_MS + rel["to"] * 1000 + 60_000
    tr = TimeRange(now - rel["from"] * 1000, now - rel["to"] * 1000)
    q = substitute(d["model"]["query"], {}, builtins(tr))
    series = stack.influx.series(q)
    pq = parse(q)
    _check_series(series, ["time", *pq.aliases], rule["uid"])
    values = [row[1] for s in series for row in s["values"] if row[1] is not None]
    if rule["uid"] == "liveprof-gc-max-pause":
        # the longest pause in the window, in ms, as derive wrote it
        pauses = [int(ln.split("pause_ns=")[1].split("i", 1)[0]) for ln in stack.lines("gc")
                  if "pause_ns=" in ln and tr.from_ms * 1_000_000 <= int(ln.rsplit(" ", 1)[1])
                  <= tr.to_ms * 1_000_000]
        assert max(values) == pytest.approx(max(pauses) / 1e6)
    if rule["uid"] == "liveprof-gc-pause-share":
        assert all(0 <= v <= 1 for v in values) and any(v > 0 for v in values)
