"""The provisioning files as files: well-formed, what Grafana needs, only the
provisioned datasource and existing variables, and queries that read only
fields the schema has at the policy they run on (no server needed)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from yaml import safe_load as load_yaml

from ingest.rollups import AGGREGATIONS

from .conftest import go_expand_env
from .queries import (
    ALERT_FILES,
    DASHBOARDS,
    DS,
    DS_UID,
    PROVISIONING,
    REPO,
    alert_rules,
    dashboards,
    panel_targets,
    parse,
    schema_fields,
)

BUILTINS = {"timeFilter", "__interval", "__interval_ms", "__from", "__to", "col"}
_VARREF = re.compile(r"\$(\w+)|\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]")


def _refs(text: str) -> set[str]:
    return {m.group(1) or m.group(2) or m.group(3) for m in _VARREF.finditer(text)}


def test_every_file_is_well_formed():
    yamls = sorted(PROVISIONING.rglob("*.yaml")) + sorted(PROVISIONING.rglob("*.yml"))
    assert len(yamls) >= 3 and len(DASHBOARDS) == 5
    for path in yamls:
        doc = load_yaml(path.read_text())
        assert doc["apiVersion"] == 1, path
    for path in DASHBOARDS:
        json.loads(path.read_text())
    # Grafana refuses an alerting folder holding anything but .yaml/.yml/.json
    assert ALERT_FILES and all(p.suffix in (".yaml", ".yml", ".json") for p in ALERT_FILES)


def test_dashboards_are_what_the_generator_writes():
    sys.path.insert(0, str(REPO / "grafana"))
    try:
        import build_dashboards
    finally:
        sys.path.pop(0)
    rendered = build_dashboards.render()
    assert sorted(rendered) == sorted(p.name for p in DASHBOARDS)
    for path in DASHBOARDS:
        assert path.read_text() == rendered[path.name], f"{path.name}: run python grafana/build_dashboards.py"


def test_liveprof_imports_without_the_dashboard_sdk():
    """grafana-foundation-sdk is a build-time tool (the ``dashboards`` extra):
    every module of protocol and ingest imports in a fresh interpreter where
    importing it fails."""
    code = ("import importlib, pkgutil, sys\n"
            "sys.modules['grafana_foundation_sdk'] = None\n"
            "import ingest, protocol\n"
            "names = [m.name for pkg in (protocol, ingest)\n"
            "         for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.')]\n"
            "for name in names:\n"
            "    importlib.import_module(name)\n"
            "print(len(names))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert int(proc.stdout) > 20  # the walk found the packages' modules


def test_datasource_comes_from_the_environment():
    path = PROVISIONING / "datasources" / "influxdb.yaml"
    (ds,) = load_yaml(path.read_text())["datasources"]
    assert ds["uid"] == DS_UID and ds["type"] == "influxdb" and ds["jsonData"]["version"] == "InfluxQL"
    env = {"INFLUX_URL": "http://db.example:8086", "INFLUX_DATABASE": "prod", "INFLUX_USER": "grafana",
           "INFLUX_PASSWORD": "s3cret$x"}
    (got,) = load_yaml(go_expand_env(path.read_text(), env))["datasources"]
    assert got["url"] == env["INFLUX_URL"]
    assert got["jsonData"]["dbName"] == got["database"] == env["INFLUX_DATABASE"]
    assert got["user"] == env["INFLUX_USER"]
    assert got["secureJsonData"]["password"] == env["INFLUX_PASSWORD"]
    assert "password" not in got and "password" not in got["jsonData"]


def test_dashboard_provider_loads_the_dashboard_folder():
    (p,) = load_yaml((PROVISIONING / "dashboards" / "liveprof.yaml").read_text())["providers"]
    assert p["type"] == "file" and p["options"]["path"].startswith("/")
    assert p["folder"] and p["disableDeletion"] is True


@pytest.mark.parametrize("name", [p.name for p in DASHBOARDS])
def test_dashboard_references_only_the_datasource_and_existing_variables(name):
    dash = dashboards()[name]
    uids = {d["uid"] for d in dashboards().values()}
    assert len(uids) == len(DASHBOARDS)
    variables = [v["name"] for v in dash["templating"]["list"]]
    assert {"app", "host", "session", "rp"} <= set(variables)
    assert len(set(variables)) == len(variables)
    # a variable query may use only the variables before it (Grafana resolves them in order)
    for i, v in enumerate(dash["templating"]["list"]):
        assert v["datasource"] == DS, v["name"]
        assert _refs(v["query"]) <= set(variables[:i]) | BUILTINS, v["name"]
    for a in dash["annotations"]["list"]:
        if a.get("builtIn"):
            continue
        assert a["datasource"] == DS
        assert _refs(a["query"]) <= set(variables) | BUILTINS
    ids = [p["id"] for p in dash["panels"]]
    assert len(set(ids)) == len(ids)
    for p in dash["panels"]:
        assert p["datasource"] == DS, p["title"]
        assert 0 <= p["gridPos"]["x"] and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24
        assert _refs(p.get("interval", "")) <= set(variables)
        assert p["targets"], p["title"]
        tags = set()
        for t in p["targets"]:
            assert t["datasource"] == DS and t["rawQuery"] is True
            assert _refs(t["query"]) <= set(variables) | BUILTINS, (p["title"], t["refId"])
            tags |= {g for g in re.findall(r'"(\w+)"', t["query"].split("GROUP BY")[-1])}
        for ref in _refs(t.get("alias", "")):
            assert ref in variables or ref == "col" or ref.startswith("tag_") and ref[4:] in tags, ref


@pytest.mark.parametrize("name", [p.name for p in DASHBOARDS])
def test_queries_read_only_fields_the_policy_has(name):
    """Raw points have the fields derive writes; rollup points the outputs of
    AGGREGATIONS.  A target without a $rp_kind guard runs on both, so it may
    read only fields both have under the same meaning (the first aggregate
    keeps the field's name); a guarded one only what its level has."""
    for t in panel_targets(name, dashboards()[name]):
        pq = parse(t.query)
        assert pq.rp == "$rp", t.where
        assert pq.measurement in AGGREGATIONS, t.where
        for kind in ("raw", "rollup"):
            if pq.active(kind):
                missing = pq.fields() - schema_fields(pq.measurement, kind)
                assert not missing, f"{t.where} on {kind}: no field {missing}"
        if pq.guard is None:
            # the same name on both: only a field whose first aggregate is what the query
            # computes again on rollups (sum of sums, max of maxima, last of lasts)
            for expr, alias in pq.items:
                if alias.startswith("seen_") and re.fullmatch(r'last\("\w+"\)', expr):
                    continue  # asked for the time of the latest point only, hidden in the panel
                for fn, fld in re.findall(r'(\w+)\("([^"]+)"\)', expr):
                    first = AGGREGATIONS[pq.measurement][fld][0]
                    assert fn == first and fn in ("sum", "max", "last", "min"), \
                        f"{t.where}: {fn}({fld}) differs between raw and rollups " \
                        f"({fld} is rolled up by {first})"
    # every panel answers on both levels
    for p in dashboards()[name]["panels"]:
        kinds = {k for t in p["targets"] for k in ("raw", "rollup") if parse(t["query"]).active(k)}
        assert kinds == {"raw", "rollup"}, (name, p["title"])


def test_markers_are_annotations_on_every_time_series_dashboard():
    for name, dash in dashboards().items():
        ann = [a for a in dash["annotations"]["list"] if not a.get("builtIn")]
        if name == "sessions.json":
            continue
        assert len(ann) == 1 and parse(ann[0]["query"]).measurement == "markers", name
        assert ann[0]["textColumn"] in parse(ann[0]["query"]).aliases


def test_rp_variables_read_the_switch_points():
    for dash in dashboards().values():
        by = {v["name"]: v for v in dash["templating"]["list"]}
        for name, fld in (("rp", "rp"), ("rp_kind", "kind"), ("rp_interval", "interval")):
            v = by[name]
            assert v["refresh"] == 2 and not v["multi"], name  # on every time range change
            assert v["query"].startswith(f'SELECT "{fld}" FROM "forever"."rp_config" WHERE')
            assert "$__to - $__from" in v["query"]
        for p in dash["panels"]:
            if any("time($__interval)" in t["query"] for t in p["targets"]):
                assert p.get("interval") == "$rp_interval", p["title"]


def test_alert_rules_are_complete():
    rules = alert_rules()
    assert len(rules) >= 3
    uids = [r["uid"] for r in rules]
    assert len(set(uids)) == len(uids) and all(len(u) <= 40 for u in uids)
    thresholds = load_yaml(ALERT_FILES[0].read_text())["x-liveprof-thresholds"]
    used = []
    for r in rules:
        refs = {d["refId"]: d for d in r["data"]}
        assert r["condition"] in refs and r["title"]
        assert r["noDataState"] in ("OK", "NoData", "Alerting", "KeepLast")
        assert r["execErrState"] in ("OK", "Error", "Alerting", "KeepLast")
        for d in r["data"]:
            model = d["model"]
            assert model["refId"] == d["refId"]
            if d["datasourceUid"] == "__expr__":
                assert model["type"] in ("reduce", "threshold", "math"), model
                if model["type"] == "math":
                    assert _refs(model["expression"]) and _refs(model["expression"]) <= set(refs)
                else:
                    assert model["expression"] in refs
                if model["type"] == "reduce":
                    assert model["reducer"] in ("last", "mean", "min", "max", "sum", "count")
                if model["type"] == "threshold":
                    (cond,) = model["conditions"]
                    assert cond["evaluator"]["type"] in ("gt", "lt")
                    (value,) = cond["evaluator"]["params"]
                    assert isinstance(value, int | float)
                    used.append(value)
            else:
                assert d["datasourceUid"] == DS_UID and model["datasource"] == DS
                assert d["relativeTimeRange"]["from"] > d["relativeTimeRange"]["to"] >= 0
                assert model["rawQuery"] is True and "$timeFilter" in model["query"]
                assert _refs(model["query"]) <= {"timeFilter"}
    # each threshold is one of the configured values (by anchor), each value used
    assert sorted(used) == sorted(thresholds.values())
