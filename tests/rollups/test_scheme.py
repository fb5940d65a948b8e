"""The scheme as data (no server): every field liveprof derives is rolled up,
the generated InfluxQL names every output at every level, coarser levels read
only what finer ones store, and the config refuses what cannot work."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest import rollups
from ingest.derive.registry import REGISTRY
from ingest.rollups import (
    AGGREGATIONS,
    RetentionPolicy,
    Rollup,
    RollupConfig,
    ServerState,
    continuous_queries,
    format_duration,
    normalize_cq,
    outputs,
    parse_duration,
    plan,
    quote_ident,
    select_fields,
    statements,
)

from .derived import data_logs, derive_lines, emitted_fields

FINE = RollupConfig(raw=RetentionPolicy(name="raw", duration="1d"), rollups=[
    Rollup(name="r200ms", interval="200ms", duration="1h"),
    Rollup(name="r1s", interval="1s", duration="1h", resample_for="10s"),
    Rollup(name="r5s", interval="5s", duration="2h", resample_for="1m")])
CONFIGS = {"default": RollupConfig(), "fine": FINE}
DATABASES = {"default": "liveprof", "fine": "fine"}  # the sink's database (influx.database)


@pytest.mark.parametrize("log", data_logs(), ids=lambda p: p.name)
def test_every_field_derive_emits_is_rolled_up(log):
    emitted = emitted_fields(derive_lines(log))
    assert rollups.uncovered(emitted) == {}


def test_the_corpus_exercises_most_of_the_table():
    """The coverage test above is only as good as what the logs emit: they
    must emit most measurements (a broken derive emitting nothing would pass it)."""
    union: dict[str, set[str]] = {}
    for log in data_logs():
        for m, fields in emitted_fields(derive_lines(log)).items():
            union.setdefault(m, set()).update(fields)
    assert set(union) == set(AGGREGATIONS), set(AGGREGATIONS) ^ set(union)


def test_table_and_registry_name_the_same_measurements():
    assert set(AGGREGATIONS) == set(REGISTRY)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_statements_have_one_cq_per_rollup_and_measurement(name):
    config, db = CONFIGS[name], DATABASES[name]
    stmts = statements(config, db)
    cqs = [s for s in stmts if s.startswith("CREATE CONTINUOUS QUERY")]
    assert len(cqs) == len(config.rollups) * len(AGGREGATIONS)
    for level, r in enumerate(config.rollups):
        source = config.raw.name if level == 0 else config.rollups[level - 1].name
        for m in AGGREGATIONS:
            cq = next(s for s in cqs if f'"{config.cq_prefix}_{r.name}_{m}"' in s)
            assert f'INTO {quote_ident(db)}.{quote_ident(r.name)}.{quote_ident(m)} ' in cq
            assert f'FROM {quote_ident(db)}.{quote_ident(source)}.{quote_ident(m)} ' in cq
            assert f"GROUP BY time({r.interval}), *" in cq
            for o in outputs(m):
                assert f"AS {quote_ident(o.name)}" in cq
            if level == 0:
                for fld in AGGREGATIONS[m]:
                    assert f"({quote_ident(fld)})" in cq, (m, fld)
    # the raw policy is the database's default, created with it
    assert stmts[0].startswith(f'CREATE DATABASE "{db}" WITH DURATION {config.raw.duration}')
    assert stmts[0].endswith(f'NAME "{config.raw.name}"')


@pytest.mark.parametrize("m", list(AGGREGATIONS))
def test_a_coarser_level_reads_only_what_the_finer_one_stores(m):
    names = {o.name for o in outputs(m)}
    read = set(re.findall(r'\w+\("([^"]+)"\)', select_fields(m, 1)))
    assert read <= names, read - names
    # and every output is written at every level
    for level in (0, 1):
        written = re.findall(r'AS "([^"]+)"', select_fields(m, level))
        assert sorted(written) == sorted(names)


@pytest.mark.parametrize("m", list(AGGREGATIONS))
def test_output_names_do_not_shadow_other_raw_fields(m):
    raw = set(AGGREGATIONS[m])
    for o in outputs(m):
        assert o.name not in raw or o.name == o.source, (o, "would overwrite another field")


def test_kinds_follow_the_rules():
    # pause maxima are max, times and counts are sum, gauges mean+max, counters last
    gc = {o.name: o.function for o in outputs("gc")}
    assert gc["pause_ns"] == "sum" and gc["pause_ns_max"] == "max" and gc["pause_ns_count"] == "count"
    heap = {o.name: o.function for o in outputs("heap")}
    assert heap["size_max_bytes"] == "max" and heap["size_bytes"] == "mean"
    assert heap["mblocks_current"] == "mean" and heap["mblocks_current_max"] == "max"
    sparks = {o.name: o.function for o in outputs("sparks")}
    assert sparks["created"] == "last" and sparks["created_delta"] == "sum"
    for o in outputs("capability") + outputs("threads") + outputs("spans"):
        assert o.function == "sum"


@given(st.integers(min_value=1, max_value=10**6),
       st.sampled_from(["ns", "u", "ms", "s", "m", "h", "d", "w"]))
def test_duration_literals_round_trip(n, unit):
    ns = parse_duration(f"{n}{unit}")
    assert parse_duration(format_duration(ns)) == ns


def test_duration_parse():
    assert parse_duration("1h30m") == parse_duration("90m") == 5400 * 10**9
    assert parse_duration("INF") == 0
    for bad in ("", "7", "d", "1x", "1h 2m", "-1h"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_config_refusals():
    with pytest.raises(ValueError, match="multiple"):
        RollupConfig(rollups=[Rollup(name="a", interval="1m", duration="1d"),
                              Rollup(name="b", interval="90s", duration="1d")])
    with pytest.raises(ValueError, match="differ"):
        RollupConfig(rollups=[Rollup(name="raw", interval="1m", duration="1d")])
    with pytest.raises(ValueError, match="reads"):
        # the 1h level reads 1m points kept 1h: gone before a 2h run reads them
        RollupConfig(rollups=[Rollup(name="a", interval="1m", duration="1h"),
                              Rollup(name="b", interval="1h", duration="1d", resample_for="2h")])
    with pytest.raises(ValueError, match="at least the interval"):
        Rollup(name="a", interval="1h", duration="1d", resample_for="10m")
    with pytest.raises(ValueError, match="1h"):
        RetentionPolicy(name="raw", duration="30m")
    RetentionPolicy(name="raw", duration="INF")


def _requote(text: str) -> str:
    """What InfluxDB does to a statement it stores: plain identifiers lose their
    quotes, durations come back in their largest unit."""
    text = re.sub(r'"([A-Za-z_][A-Za-z0-9_]*)"', r"\1", text)
    return re.sub(r"\b(\d+)(ns|u|ms|s|m|h|d|w)\b",
                  lambda mm: format_duration(parse_duration(mm.group(0))), text)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_normalize_sees_through_quoting_and_units_but_not_changes(name):
    for stmt in continuous_queries(CONFIGS[name], DATABASES[name]).values():
        assert normalize_cq(_requote(stmt)) == normalize_cq(stmt)
        assert normalize_cq(stmt.replace('(', 'first(', 1)) != normalize_cq(stmt)
        assert normalize_cq(stmt.replace(' AS "', ' AS "x', 1)) != normalize_cq(stmt)
        assert normalize_cq(stmt.replace(" BEGIN", " RESAMPLE EVERY 5m BEGIN")
                            if "RESAMPLE" not in stmt else stmt.replace("RESAMPLE", "RESAMPLE EVERY 5m")
                            ) != normalize_cq(stmt)


def _matching_state(config: RollupConfig) -> ServerState:
    state = ServerState(database_exists=True)
    for p, default in ([(config.raw, True)] + [(r, False) for r in config.rollups]
                       + [(config.rp_switch.retention, False)]):
        state.policies[p.name] = rollups.ObservedPolicy(p.name, p.duration_ns, 86400 * 10**9, default)
    state.continuous_queries = {n: _requote(s) for n, s in continuous_queries(config, "liveprof").items()}
    state.rp_levels = list(reversed(rollups.rp_levels(config)))  # any order, as SELECT gives them
    return state


def test_plan_against_a_matching_server_keeps_everything():
    config = RollupConfig()
    steps = plan(config, "liveprof", _matching_state(config))
    assert {s.action for s in steps} == {"keep"}
    assert all(not s.statements for s in steps)


def test_plan_alters_replaces_and_drops_only_what_differs():
    config = RollupConfig()
    state = _matching_state(config)
    state.policies["raw"] = rollups.ObservedPolicy("raw", parse_duration("3d"), 0, False)
    tampered = "liveprof_1m_gc"
    state.continuous_queries[tampered] = state.continuous_queries[tampered].replace("max(", "min(")
    state.continuous_queries["liveprof_10m_gc"] = "CREATE CONTINUOUS QUERY liveprof_10m_gc ON x BEGIN END"
    state.continuous_queries["someone_elses"] = "CREATE CONTINUOUS QUERY someone_elses ON x BEGIN END"
    changed = {(s.action, s.name): s for s in plan(config, "liveprof", state) if s.action != "keep"}
    assert set(changed) == {("alter", "raw"), ("replace", tampered), ("drop", "liveprof_10m_gc")}
    alter = changed[("alter", "raw")].statements[0]
    assert "DURATION 1w" in alter and alter.endswith("DEFAULT")
    drop, create = changed[("replace", tampered)].statements
    assert drop.startswith("DROP CONTINUOUS QUERY")
    assert create == continuous_queries(config, "liveprof")[tampered]


# -- the dashboards' retention-policy switch (docs/dashboards.md) ------------------

def _chosen(levels, range_ms: int) -> list[str]:
    """What the dashboards' variable query selects: start < range <= end."""
    return [lv.rp for lv in levels if lv.start_ms < range_ms <= lv.end_ms]


@pytest.mark.parametrize("name", list(CONFIGS))
def test_rp_switch_levels_tile_every_range_length(name):
    config = CONFIGS[name]
    levels = rollups.rp_levels(config)
    assert [lv.rp for lv in levels] == [config.raw.name] + [r.name for r in config.rollups]
    assert [lv.kind for lv in levels] == ["raw"] + ["rollup"] * len(config.rollups)
    assert levels[0].start_ms == 0 and levels[-1].end_ms == rollups.UNBOUNDED_MS
    for a, b in itertools.pairwise(levels):
        assert a.end_ms == b.start_ms and a.start_ms <= a.end_ms
    for r, lv in zip(config.rollups, levels[1:]):
        assert lv.interval_ms * 1_000_000 == r.interval_ns
    # exactly one level for any range, 1 ms up to centuries
    for range_ms in (1, 999, 3_600_000, 86_400_000, 30 * 86_400_000, 10**13):
        assert len(_chosen(levels, range_ms)) == 1, range_ms


def test_rp_switch_default_thresholds():
    """raw while a range holds min_points minutes (the next level's interval),
    1m while it holds min_points hours, then 1h; the issue's three ranges."""
    config = RollupConfig()
    levels = rollups.rp_levels(config)
    n = config.rp_switch.min_points
    assert [(lv.start_ms, lv.end_ms) for lv in levels[:2]] == [(0, n * 60_000), (n * 60_000, n * 3_600_000)]
    hour, day = 3_600_000, 86_400_000
    assert _chosen(levels, hour) == ["raw"]
    assert _chosen(levels, 7 * day) == ["1m"]
    assert _chosen(levels, 30 * day) == ["1h"]
    assert _chosen(levels, 60 * day) == ["1h"]


def test_rp_switch_never_reads_a_level_for_longer_than_it_keeps():
    config = RollupConfig(raw=RetentionPolicy(name="raw", duration="2h"),
                          rollups=[Rollup(name="1m", interval="1m", duration="2d", resample_for="10m"),
                                   Rollup(name="1h", interval="1h", duration="INF")])
    raw, m1, h1 = rollups.rp_levels(config)
    assert raw.end_ms == 2 * 3_600_000          # not 300 min: raw keeps 2 h
    assert m1.end_ms == 2 * 86_400_000          # not 300 h: 1m keeps 2 days
    assert h1.start_ms == m1.end_ms and h1.end_ms == rollups.UNBOUNDED_MS


def test_rp_switch_points_are_line_protocol_of_the_levels():
    config = RollupConfig(rp_switch=rollups.RpSwitch(policy="keep", measurement="rp cfg", min_points=100))
    points = rollups.rp_points(config)
    levels = rollups.rp_levels(config)
    assert len(points) == len(levels)
    for line, lv in zip(points, levels):
        assert line.startswith(f"rp\\ cfg,policy={lv.rp} ")
        assert line.endswith(" 0")
        assert f'rp="{lv.rp}"' in line and f"start={lv.start_ms}i" in line and f"end={lv.end_ms}i" in line
    assert levels[0].end_ms == 100 * 60_000


def test_plan_writes_the_switch_and_rewrites_it_when_it_differs():
    config = RollupConfig()
    empty = plan(config, "liveprof", ServerState())
    switch = [s for s in empty if s.kind == "rp switch"]
    assert len(switch) == 1 and switch[0].action == "create"
    assert list(switch[0].points) == rollups.rp_points(config) and switch[0].policy == "forever"
    forever = next(s for s in empty if s.kind == "retention policy" and s.name == "forever")
    assert "DURATION INF" in forever.statements[0]

    state = _matching_state(config)
    state.rp_levels[0] = rollups.RpLevel(state.rp_levels[0].rp, state.rp_levels[0].kind,
                                         state.rp_levels[0].start_ms + 1, state.rp_levels[0].end_ms,
                                         state.rp_levels[0].interval)
    changed = [s for s in plan(config, "liveprof", state) if s.action != "keep"]
    assert [(s.action, s.kind) for s in changed] == [("replace", "rp switch")]
    assert changed[0].statements[0].startswith("DROP SERIES FROM") and changed[0].points

    with pytest.raises(ValueError):
        RollupConfig(rp_switch=rollups.RpSwitch(policy="raw"))


def test_the_database_is_not_a_rollup_setting():
    """It is the sink's (influx.database): a rollups.database left in a
    settings file is refused with a message that says where it went."""
    with pytest.raises(ValueError, match=r"set influx\.database"):
        RollupConfig.model_validate({"database": "other"})
    assert "database" not in RollupConfig.model_fields


def test_statements_quote_the_database_name_they_are_given():
    odd = 'lp "prod" \\ it\'s'
    stmts = statements(RollupConfig(), odd)
    assert stmts[0].startswith(f"CREATE DATABASE {quote_ident(odd)} WITH")
    cqs = [s for s in stmts if s.startswith("CREATE CONTINUOUS QUERY")]
    assert cqs and all(f" ON {quote_ident(odd)} " in s and f"INTO {quote_ident(odd)}." in s for s in cqs)


def test_a_rollups_database_setting_left_over_is_refused_naming_where_it_came_from(monkeypatch, tmp_path):
    from ingest.config import load
    from ingest.errors import ConfigError

    monkeypatch.setenv("LIVEPROF_ROLLUPS_DATABASE", "old")
    with pytest.raises(ConfigError, match=r"LIVEPROF_ROLLUPS_DATABASE: .*set influx\.database"):
        load()
    monkeypatch.delenv("LIVEPROF_ROLLUPS_DATABASE")
    toml = tmp_path / "liveprof.toml"
    toml.write_text('[rollups]\ndatabase = "old"\n')
    with pytest.raises(ConfigError, match=r"liveprof\.toml: key rollups\.database: .*set influx\.database"):
        load(toml)
