"""The service end to end: monitors in, a real InfluxDB out."""

from __future__ import annotations

import asyncio

import pytest

from ingest.config import load
from ingest.service import Service
from tests.corpus import DATA, summary
from tests.monitor import fake_monitor as fm

LOG = DATA / "threads-mvar.nonthreaded.l.eventlog"


def settings_for(server, database, tmp_path, **over):
    values = {"influx.url": server.url, "influx.database": database,
              "influx.flush_interval": 0.2, "state_dir": str(tmp_path / "state")}
    values.update(over)
    return load(None, values)


async def run_until(service: Service, predicate, timeout=60.0):
    task = asyncio.create_task(service.run())
    try:
        await asyncio.wait_for(service.ready.wait(), 10)
        async def wait():
            while not predicate(service):
                await asyncio.sleep(0.05)
        await asyncio.wait_for(wait(), timeout)
    finally:
        service.stop()
        await asyncio.wait_for(task, 30)


def count(server, database, measurement) -> int:
    rows = server.series(f'SELECT count(*) FROM "{measurement}"', database)
    return max(v for row in rows for v in row["values"][0][1:]) if rows else 0


def ended(n):
    return lambda s: s.registry is not None and len(s.registry.finished) >= n


async def test_a_monitor_session_lands_in_influxdb(influxd, influx_database, tmp_path):
    with fm.TcpMonitor(LOG, max_connections=1) as monitor:
        cfg = settings_for(influxd, influx_database, tmp_path,
                           monitors=[{"host": "127.0.0.1", "port": monitor.port}])
        service = Service(cfg)
        await run_until(service, ended(1))
    (record,) = service.registry.finished.values()
    assert record.events > 10_000 and record.error is None
    assert service.sink.stats.written == record.points > 0
    ref = summary(LOG)
    assert count(influxd, influx_database, "gc") == ref["gc"]["collections"]
    tags = influxd.series('SHOW TAG VALUES FROM "gc" WITH KEY = "app"', influx_database)
    assert tags[0]["values"][0][1] == record.tags["app"] == "threads-mvar-nonthreaded"
    # the retention/rollup scheme was applied at start: raw is the default policy
    assert service.setup_report is not None
    policies = influxd.series("SHOW RETENTION POLICIES", influx_database)[0]["values"]
    assert [p[0] for p in policies if p[-1]] == ["raw"]
    assert len(policies) >= 3


async def test_a_bad_monitor_does_not_stop_a_good_one(influxd, influx_database, tmp_path):
    with fm.TcpMonitor(LOG, raw=b"\xff\xff\xff\xffgarbage", max_connections=1) as bad, \
            fm.TcpMonitor(LOG, max_connections=1) as good:
        cfg = settings_for(influxd, influx_database, tmp_path, monitors=[
            {"host": "127.0.0.1", "port": bad.port}, {"host": "127.0.0.1", "port": good.port}])
        service = Service(cfg)
        await run_until(service, lambda s: ended(2)(s) and any(
            r.events > 10_000 for r in s.registry.finished.values()))
    errors = [r for r in service.registry.finished.values() if r.error]
    assert len(errors) == 1 and f":{bad.port}" in errors[0].error
    assert count(influxd, influx_database, "gc") == summary(LOG)["gc"]["collections"]


async def test_influxdb_down_then_back_loses_nothing(influxd_factory, tmp_path):
    server = influxd_factory()
    server.create_database("outage")
    server.stop()
    with fm.TcpMonitor(LOG, max_connections=1) as monitor:
        cfg = settings_for(server, "outage", tmp_path, **{
            "monitors": [{"host": "127.0.0.1", "port": monitor.port}],
            "influx.memory_max_bytes": 10_000, "influx.retry_max_delay": 0.5})
        service = Service(cfg)
        task = asyncio.create_task(service.run())
        await asyncio.wait_for(service.ready.wait(), 10)
        while not ended(1)(service):
            await asyncio.sleep(0.05)
        assert service.sink.stats.spooled > 0         # the memory bound was passed: on disk
        server.start()
        while service.sink.stats.written < service.registry.finished[1].points:
            await asyncio.sleep(0.1)
        service.stop()
        await asyncio.wait_for(task, 30)
    assert count(server, "outage", "gc") == summary(LOG)["gc"]["collections"]
    stats = service.sink.stats
    assert stats.dropped_overflow == stats.dropped_4xx == 0
