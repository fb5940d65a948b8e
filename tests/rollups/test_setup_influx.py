"""``setup`` and ``liveprof influx setup`` against a real influxd: what it
creates is what the server then shows, a second run changes nothing, changed
settings are altered or replaced, credentials are used and refusals are clear."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from ingest.influx_setup import InfluxSetupConfig, setup
from ingest.rollups import (
    AGGREGATIONS,
    RetentionPolicy,
    Rollup,
    RollupConfig,
    continuous_queries,
    normalize_cq,
    parse_duration,
    parse_go_duration,
    rp_levels,
    rp_points,
)
from ingest.sinks.errors import SinkAuthError

from .derived import REPO


def _name() -> str:
    return f"rollups_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def database(influxd):
    """A database name nothing uses yet (setup creates it); dropped after."""
    if not influxd.running:
        influxd.start()
    name = _name()
    yield name
    if not influxd.running:
        influxd.start()
    influxd.query(f'DROP DATABASE "{name}"')


def _config(server, database, **rollups) -> InfluxSetupConfig:
    return InfluxSetupConfig(url=server.url, database=database, rollups=RollupConfig(**rollups))


def policies(server, database) -> dict[str, dict]:
    rows = server.series(f'SHOW RETENTION POLICIES ON "{database}"', database)[0]
    return {r[0]: dict(zip(rows["columns"], r)) for r in rows["values"]}


def cqs(server, database) -> dict[str, str]:
    for s in server.query("SHOW CONTINUOUS QUERIES")[0].get("series", []):
        if s["name"] == database:
            return {name: q for name, q in s["values"]}
    return {}


def assert_server_matches(server, config: RollupConfig, database: str) -> None:
    pols = policies(server, database)
    for p in [config.raw, *config.rollups, config.rp_switch.retention]:
        assert parse_go_duration(pols[p.name]["duration"]) == p.duration_ns, p.name
    assert [n for n, row in pols.items() if row["default"]] == [config.raw.name]
    have = cqs(server, database)
    want = continuous_queries(config, database)
    assert set(have) == set(want)
    for name, statement in want.items():
        assert normalize_cq(have[name]) == normalize_cq(statement), name


async def test_setup_creates_the_scheme_and_a_second_run_changes_nothing(influxd, database):
    config = _config(influxd, database)
    first = await setup(config)
    assert {(s.action, s.kind) for s in first.steps} == {
        ("create", "database"), ("create", "retention policy"), ("create", "continuous query"),
        ("create", "rp switch")}
    assert_server_matches(influxd, config.rollups, config.database)
    # no autogen: the raw policy was created as the database's default
    assert set(policies(influxd, database)) == {"raw", "1m", "1h", "forever"}

    second = await setup(config)
    assert second.changed == []
    assert len(second.kept) == len(first.steps)
    assert_server_matches(influxd, config.rollups, config.database)


async def test_changed_durations_are_altered_and_changed_queries_replaced(influxd, database):
    await setup(_config(influxd, database))
    before = cqs(influxd, database)
    changed = _config(influxd, database,
                      raw=RetentionPolicy(name="raw", duration="3d", shard_duration="12h"),
                      rollups=[Rollup(name="1m", interval="1m", duration="30d", resample_for="15m"),
                               Rollup(name="1h", interval="1h", duration="1095d", resample_for="2h")])
    report = await setup(changed)
    done = {(s.action, s.name) for s in report.changed}
    assert done == {("alter", "raw"), ("alter", "1m")} | {
        ("replace", f"liveprof_1m_{m}") for m in AGGREGATIONS}
    assert_server_matches(influxd, changed.rollups, changed.database)
    shards = policies(influxd, database)["raw"]["shardGroupDuration"]
    assert parse_go_duration(shards) == parse_duration("12h")
    after = cqs(influxd, database)
    assert all(after[f"liveprof_1h_{m}"] == before[f"liveprof_1h_{m}"] for m in AGGREGATIONS)
    assert (await setup(changed)).changed == []


async def test_tampered_stale_and_foreign_queries(influxd, database):
    config = _config(influxd, database)
    await setup(config)
    name = "liveprof_1m_heap"
    influxd.query(f'DROP CONTINUOUS QUERY "{name}" ON "{database}"')
    influxd.query(f'CREATE CONTINUOUS QUERY "{name}" ON "{database}" BEGIN SELECT max("size_bytes") '
                  f'AS "size_bytes" INTO "{database}"."1m"."heap" FROM "{database}"."raw"."heap" '
                  f'GROUP BY time(1m), * END')
    for extra in ("liveprof_5m_gc", "mine_gc"):
        influxd.query(f'CREATE CONTINUOUS QUERY "{extra}" ON "{database}" BEGIN SELECT max("pause_ns") '
                      f'AS "pause_ns" INTO "{database}"."1m"."gc_x" FROM "{database}"."raw"."gc" '
                      f'GROUP BY time(5m), * END')
    report = await setup(config)
    assert {(s.action, s.name) for s in report.changed} == {("replace", name), ("drop", "liveprof_5m_gc")}
    have = cqs(influxd, database)
    assert "mine_gc" in have and "liveprof_5m_gc" not in have
    assert normalize_cq(have[name]) == normalize_cq(continuous_queries(config.rollups, config.database)[name])


async def test_a_database_made_by_someone_else_gets_raw_as_its_default(influxd, database):
    influxd.query(f'CREATE DATABASE "{database}"')  # autogen, as a sink's CREATE DATABASE makes it
    report = await setup(_config(influxd, database))
    assert ("keep", "database") in {(s.action, s.kind) for s in report.steps}
    pols = policies(influxd, database)
    assert pols["raw"]["default"] and not pols["autogen"]["default"]
    # a write that names no policy lands in raw
    influxd.write(f"probe v=1i {_now_ns()}", database)
    assert influxd.series('SELECT count("v") FROM "raw"."probe"', database)[0]["values"][0][1] == 1


def _now_ns() -> int:
    import time
    return time.time_ns()


async def test_credentials_are_used_and_a_refusal_is_clear(influxd_factory):
    server = influxd_factory(auth=True)
    db = _name()
    good = InfluxSetupConfig(url=server.url, user=server.admin_user, password=server.admin_password,
                             database=db)
    bad = good.model_copy(update={"password": good.password.__class__("wrong-secret")})
    with pytest.raises(SinkAuthError) as err:
        await setup(bad)
    assert "401" in str(err.value) and server.admin_user in str(err.value)
    assert "wrong-secret" not in str(err.value)
    report = await setup(good)
    assert report.changed
    assert (await setup(good)).changed == []
    assert_server_matches(server, good.rollups, good.database)


def _cli(args, env_extra) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEPROF_INFLUX_")}
    env.update(env_extra)
    return subprocess.run([sys.executable, "-m", "ingest.cli", "influx", "setup", *args],
                          cwd=REPO, env=env, check=False, capture_output=True, text=True, timeout=120)


def test_cli_reads_the_environment_and_flags_win(influxd, database):
    env = {"LIVEPROF_INFLUX_URL": influxd.url, "LIVEPROF_INFLUX_DATABASE": database}
    first = _cli([], env)
    assert first.returncode == 0, first.stderr
    assert f"created database {database}" in first.stdout
    assert first.stdout.count("created continuous query") == 2 * len(AGGREGATIONS)
    assert_server_matches(influxd, RollupConfig(), database)
    again = _cli([], env)
    assert again.returncode == 0, again.stderr
    assert "created" not in again.stdout and "0 changes" in again.stdout
    # the flag wins over the environment
    other = _name()
    try:
        by_flag = _cli(["--database", other, "--raw-duration", "30d"], env)
        assert by_flag.returncode == 0, by_flag.stderr
        assert f"created database {other}" in by_flag.stdout
        assert parse_go_duration(policies(influxd, other)["raw"]["duration"]) == parse_duration("30d")
    finally:
        influxd.query(f'DROP DATABASE "{other}"')


def test_cli_with_credentials_from_the_environment(influxd_factory):
    server = influxd_factory(auth=True)
    db = _name()
    env = {"LIVEPROF_INFLUX_URL": server.url, "LIVEPROF_INFLUX_DATABASE": db,
           "LIVEPROF_INFLUX_USER": server.admin_user, "LIVEPROF_INFLUX_PASSWORD": "not-it-at-all"}
    refused = _cli([], env)
    assert refused.returncode == 1
    assert "401" in refused.stderr and "not-it-at-all" not in refused.stderr + refused.stdout
    env["LIVEPROF_INFLUX_PASSWORD"] = server.admin_password
    ok = _cli([], env)
    assert ok.returncode == 0, ok.stderr
    assert f"created database {db}" in ok.stdout


def test_cli_unreachable_server_and_bad_settings():
    from tests.servers import free_port
    down = _cli([], {"LIVEPROF_INFLUX_URL": f"http://127.0.0.1:{free_port()}"})
    assert down.returncode == 1 and "unreachable" in down.stderr
    bad = _cli(["--rollup", "1m:90s:1d", "--rollup", "x:2m:1d"], {})
    assert bad.returncode == 2 and "multiple" in bad.stderr
    both = _cli(["--influx-token", "t", "--influx-user", "u"], {})
    assert both.returncode == 2 and "token" in both.stderr


def test_cli_dry_run_prints_the_library_statements():
    from ingest.rollups import statements
    out = _cli(["--dry-run", "--database", "dry", "--raw-duration", "3d",
                "--rollup", "5m:5m:30d", "--rollup", "1d:1d:INF:2d"], {})
    assert out.returncode == 0, out.stderr
    config = RollupConfig(raw=RetentionPolicy(name="raw", duration="3d"), rollups=[
        Rollup(name="5m", interval="5m", duration="30d"),
        Rollup(name="1d", interval="1d", duration="INF", resample_for="2d")])
    assert out.stdout.splitlines() == [s + ";" for s in statements(config, "dry")]


def test_cli_backfill_rolls_up_a_past_range(influxd, database):
    import time

    from .derived import (
        actual_rollup,
        data_logs,
        derive_lines,
        expected_rollup,
        parse,
        shifted,
        stored,
        to_line,
    )
    env = {"LIVEPROF_INFLUX_URL": influxd.url, "LIVEPROF_INFLUX_DATABASE": database}
    assert _cli([], env).returncode == 0
    log = next(p for p in data_logs() if p.name == "sleep.hd.eventlog")
    points = parse(derive_lines(log))
    hour = 3600 * 10**9
    points = shifted(points, (time.time_ns() // hour - 5) * hour - min(p.time for p in points) // hour * hour)
    influxd.write([to_line(p) for p in points], database)
    start, end = min(p.time for p in points), max(p.time for p in points) + 1
    env_b = {k: v for k, v in os.environ.items() if not k.startswith("LIVEPROF_INFLUX_")} | env
    out = subprocess.run([sys.executable, "-m", "ingest.cli", "influx", "backfill",
                          "--start", str(start), "--end", str(end)],
                         cwd=REPO, env=env_b, check=False, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    store = stored(points)
    total = 0
    for r in RollupConfig().rollups:
        want = expected_rollup(store, r.interval_ns)
        assert set(actual_rollup(influxd, database, r.name)) == set(want)
        total += len(want)
    assert f"{total} rollup points written" in out.stdout


async def test_a_token_is_sent_as_the_authorization_header():
    """influxd 1.6 has no token auth (1.8+ does): a stand-in /query endpoint
    records the header setup sends and answers like an empty server."""
    from aiohttp import web
    seen = []
    written = []

    async def write(request):
        seen.append(request.headers.get("Authorization"))
        written.append((request.query.get("rp"), (await request.read()).decode()))
        return web.Response(status=204)

    async def query(request):
        seen.append(request.headers.get("Authorization"))
        form = await request.post()
        if form["q"] == "SHOW DATABASES":
            return web.json_response({"results": [{"statement_id": 0, "series": [
                {"name": "databases", "columns": ["name"], "values": []}]}]})
        return web.json_response({"results": [{"statement_id": 0}]})

    app = web.Application()
    app.router.add_post("/query", query)
    app.router.add_post("/write", write)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        report = await setup(InfluxSetupConfig(url=f"http://127.0.0.1:{port}", token="tok-123"))
    finally:
        await runner.cleanup()
    assert report.changed and len(seen) == 1 + sum(len(s.statements) + bool(s.points) for s in report.steps)
    assert set(seen) == {"Token tok-123"}
    assert written == [("forever", "\n".join(rp_points(RollupConfig())))]


async def test_raw_is_made_the_default_again(influxd, database):
    config = _config(influxd, database)
    await setup(config)
    influxd.query(f'CREATE RETENTION POLICY "other" ON "{database}" DURATION 1d REPLICATION 1 DEFAULT')
    assert not policies(influxd, database)["raw"]["default"]
    report = await setup(config)
    assert [(s.action, s.name) for s in report.changed] == [("alter", "raw")]
    pols = policies(influxd, database)
    assert pols["raw"]["default"] and not pols["other"]["default"]


def test_setup_config_from_the_sink_config():
    from ingest.sinks import InfluxSinkConfig
    sink = InfluxSinkConfig(url="http://db:8086", database="prod", user="u", password="p", auth="query")
    cfg = InfluxSetupConfig.from_sink(sink, RollupConfig(raw=RetentionPolicy(name="raw", duration="2d")))
    assert (cfg.url, cfg.user, cfg.auth) == ("http://db:8086", "u", "query")
    assert cfg.password is not None and cfg.password.get_secret_value() == "p"
    assert cfg.database == "prod" and cfg.rollups.raw.duration_ns == parse_duration("2d")
    assert "p" not in repr(cfg.password)


def _switch_rows(server, database) -> list[dict]:
    s = server.series('SELECT * FROM "forever"."rp_config"', database)
    return [dict(zip(s[0]["columns"], row)) for row in s[0]["values"]] if s else []


def _picked(server, database, range_ms: int) -> list[str]:
    """The dashboards' $rp query with Grafana's $__to - $__from substituted."""
    to = 1_900_000_000_000
    q = (f'SELECT "rp" FROM "forever"."rp_config" WHERE {to} - {to - range_ms} > "start" '
         f'AND {to} - {to - range_ms} <= "end"')
    return [row[1] for s in server.series(q, database) for row in s["values"]]


async def test_setup_writes_the_rp_switch_and_rewrites_it_when_the_policies_change(influxd, database):
    config = _config(influxd, database)
    await setup(config)
    rows = _switch_rows(influxd, database)
    assert sorted((r["rp"], r["kind"], r["start"], r["end"], r["interval"]) for r in rows) == sorted(
        (lv.rp, lv.kind, lv.start_ms, lv.end_ms, lv.interval) for lv in rp_levels(config.rollups))
    assert {r["time"] for r in rows} == {0}
    hour, day = 3_600_000, 86_400_000
    assert _picked(influxd, database, hour) == ["raw"]
    assert _picked(influxd, database, 7 * day) == ["1m"]
    assert _picked(influxd, database, 60 * day) == ["1h"]

    # one rollup only: the 1h point goes, 1m serves every long range
    one = _config(influxd, database, rollups=[Rollup(name="1m", interval="1m", duration="90d",
                                                     resample_for="10m")])
    report = await setup(one)
    assert ("replace", "rp switch") in {(s.action, s.kind) for s in report.changed}
    assert sorted(r["rp"] for r in _switch_rows(influxd, database)) == ["1m", "raw"]
    assert _picked(influxd, database, 60 * day) == ["1m"]
    assert (await setup(one)).changed == []

    # tampered points are put back
    influxd.query('DROP SERIES FROM "rp_config" WHERE "policy" = \'raw\'', database)
    report = await setup(one)
    assert [(s.action, s.kind) for s in report.changed] == [("replace", "rp switch")]
    assert _picked(influxd, database, hour) == ["raw"]
