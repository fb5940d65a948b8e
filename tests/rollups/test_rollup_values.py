"""The rollups hold the right numbers.  Raw points of each corpus log (as
``liveprof derive`` prints them) are written to a real influxd; the rollup
queries are run over their time range (the backfill: continuous queries only
ever look back ``resample_for`` from the wall clock), then every rollup point
of every level is compared with what Python computes from the raw points:
sum/max/min/mean/count/last per interval and tag set.  Coarser levels roll up
the finer ones on the server, yet must equal the aggregate of the raw points,
means included.  A last test lets the server's own continuous queries do it
on the wall clock."""

from __future__ import annotations

import asyncio
import math
import time
import uuid

import pytest

from ingest.influx_setup import InfluxSetupConfig, backfill, setup
from ingest.rollups import AGGREGATIONS, RetentionPolicy, Rollup, RollupConfig, outputs

from .derived import (
    Line,
    actual_rollup,
    data_logs,
    derive_lines,
    expected_rollup,
    parse,
    shifted,
    stored,
    to_line,
)

HOUR = 3600 * 10**9

SCHEMES = {
    "default": (RollupConfig(), 1.0),
    # small intervals and 50 ms windows: many points per interval, unequal
    # counts per interval (so a mean of means would be wrong), three levels
    "fine": (RollupConfig(raw=RetentionPolicy(name="raw", duration="1d"), rollups=[
        Rollup(name="r200ms", interval="200ms", duration="1d"),
        Rollup(name="r1s", interval="1s", duration="1d", resample_for="10s"),
        Rollup(name="r5s", interval="5s", duration="2d", resample_for="1m")]), 0.05),
}
LOGS = [log for log in data_logs() if derive_lines(log)]


def field_types(server, database: str, policy: str) -> dict[tuple[str, str], str]:
    out = {}
    for m in AGGREGATIONS:
        for s in server.series(f'SHOW FIELD KEYS FROM "{policy}"."{m}"', database):
            for name, kind in s["values"]:
                out[(m, name)] = kind
    return out


def expected_types(points: list[Line]) -> dict[tuple[str, str], str]:
    raw = {}
    for p in points:
        for k, v in p.fields.items():
            raw[(p.measurement, k)] = ("boolean" if isinstance(v, bool) else "integer" if isinstance(v, int)
                                       else "float" if isinstance(v, float) else "string")
    out = {}
    for (m, fld), kind in raw.items():
        for o in outputs(m):
            if o.source == fld:
                out[(m, o.name)] = ("float" if o.function == "mean" else
                                    "integer" if o.function == "count" else kind)
    return out


def assert_same(actual: dict, expected: dict, what: str) -> None:
    assert set(actual) == set(expected), (
        f"{what}: missing {sorted(set(expected) - set(actual))[:5]}, "
        f"extra {sorted(set(actual) - set(expected))[:5]}")
    for key, want in expected.items():
        got = actual[key]
        assert set(got) == set(want), f"{what} {key}: fields {sorted(set(got) ^ set(want))}"
        for name, value in want.items():
            if isinstance(value, float) or isinstance(got[name], float):
                assert math.isclose(got[name], value, rel_tol=1e-9, abs_tol=1e-9), \
                    (what, key, name, got[name], value)
            else:
                assert got[name] == value, (what, key, name, got[name], value)


@pytest.fixture
def database(influxd):
    if not influxd.running:
        influxd.start()
    name = f"rollups_{uuid.uuid4().hex[:10]}"
    yield name
    if not influxd.running:
        influxd.start()
    influxd.query(f'DROP DATABASE "{name}"')


@pytest.mark.parametrize("scheme", list(SCHEMES))
@pytest.mark.parametrize("log", LOGS, ids=lambda p: p.name)
async def test_backfilled_rollups_equal_python_aggregates(influxd, database, log, scheme):
    base, window = SCHEMES[scheme]
    config = InfluxSetupConfig(url=influxd.url, database=database, rollups=base)
    await setup(config)
    points = parse(derive_lines(log, window))
    # move the log (recorded long ago) to 6 h before this hour, by whole hours:
    # inside every retention policy, aligned as it was, clear of the running CQs
    first = min(p.time for p in points)
    shift = (time.time_ns() // HOUR - 6) * HOUR - first // HOUR * HOUR
    points = shifted(points, shift)
    influxd.write([to_line(p) for p in points], database)
    store = stored(points)
    start = min(p.time for p in points)
    end = max(p.time for p in points) + 1
    report = await backfill(config, start, end)
    assert report.beyond_retention == {}
    written = report.written

    types = expected_types(points)
    for r in config.rollups.rollups:
        expected = expected_rollup(store, r.interval_ns)
        assert expected, "nothing to roll up"
        actual = actual_rollup(influxd, database, r.name)
        assert_same(actual, expected, f"{log.name} {r.name}")
        for m in AGGREGATIONS:
            assert written[f"{r.name}.{m}"] == sum(1 for k in expected if k[0] == m), (r.name, m)
        got_types = field_types(influxd, database, r.name)
        assert {k: v for k, v in got_types.items()} == {k: v for k, v in types.items() if k in got_types}
        assert set(got_types) == {(k[0], f) for k, row in expected.items() for f in row}


async def test_the_servers_continuous_queries_roll_up_on_the_wall_clock(influxd_factory):
    """The continuous queries as setup stores them, run by influxd itself
    (every second here), on points written just behind the wall clock: the
    rollups reach the same values as the aggregates of the raw points.  The
    deadline only bounds the wait; no speed is asserted."""
    server = influxd_factory(settings={"continuous_queries": {"run-interval": "1s"}})
    database = "live"
    config = InfluxSetupConfig(url=server.url, database=database, rollups=RollupConfig(
        raw=RetentionPolicy(name="raw", duration="1d"), rollups=[
            Rollup(name="s1", interval="1s", duration="1h", resample_for="2m"),
            Rollup(name="s5", interval="5s", duration="1h", resample_for="3m")]))
    await setup(config)
    log = next(p for p in LOGS if p.name == "sleep.hd.eventlog")
    points = parse(derive_lines(log, 0.05))
    shift = time.time_ns() - 20 * 10**9 - max(p.time for p in points)
    points = shifted(points, shift)
    server.write([to_line(p) for p in points], database)
    store = stored(points)
    wanted = {r.name: expected_rollup(store, r.interval_ns) for r in config.rollups.rollups}
    deadline = time.monotonic() + 90
    while True:
        got = {name: actual_rollup(server, database, name) for name in wanted}
        if got == wanted or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    for name, want in wanted.items():
        assert_same(got[name], want, f"continuous queries into {name}")
