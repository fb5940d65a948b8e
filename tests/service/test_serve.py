"""The service end to end: monitors in, a real InfluxDB out."""

from __future__ import annotations

import asyncio

from ingest.config import load
from ingest.service import Service
from tests.corpus import DATA, summary
from tests.monitor import fake_monitor as fm
from tests.servers import wait_for

LOG = DATA / "threads-mvar.nonthreaded.l.eventlog"


def settings_for(server, database, tmp_path, **over):
    # the test logs were written on a fixed day: a raw policy kept for ever takes their
    # points whatever the date the tests run on (the default, 7 days, would drop them)
    values = {"influx.url": server.url, "influx.database": database,
              "influx.flush_interval": 0.2, "state_dir": str(tmp_path / "state"),
              "rollups.raw.name": "raw", "rollups.raw.duration": "INF"}
    values.update(over)
    return load(None, values)


async def run_until(service: Service, predicate, timeout=60.0):
    task = asyncio.create_task(service.run())
    try:
        await asyncio.wait_for(service.ready.wait(), 10)
        await wait_for(lambda: predicate(service), timeout)
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
        await run_until(service, lambda s: ended(1)(s) and s.setup_report is not None)
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
        await wait_for(lambda: ended(1)(service), 60)
        assert service.sink.stats.spooled > 0         # the memory bound was passed: on disk
        server.start()
        await wait_for(lambda: service.sink.stats.written >= service.registry.finished[1].points,
                       60, interval=0.1)
        service.stop()
        await asyncio.wait_for(task, 30)
    assert count(server, "outage", "gc") == summary(LOG)["gc"]["collections"]
    stats = service.sink.stats
    assert stats.dropped_overflow == stats.dropped_4xx == 0


async def test_every_source_at_once(influxd, influx_database, tmp_path):
    """A monitor, datagrams, a socket, a FIFO and a file, all at once: one session each."""
    import os
    import socket as so

    from tests.sources.helpers import EventlogServer

    data = LOG.read_bytes()
    fifo = tmp_path / "prog.fifo"
    udp = so.socket(so.AF_INET, so.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp_port = udp.getsockname()[1]
    udp.close()
    server = await EventlogServer(data, unix_path=str(tmp_path / "prog.sock")).start()
    with fm.TcpMonitor(LOG, max_connections=1) as monitor:
        cfg = settings_for(influxd, influx_database, tmp_path, **{
            "monitors": [{"host": "127.0.0.1", "port": monitor.port}],
            "monitor_udp": {"host": "127.0.0.1", "port": udp_port, "idle_timeout": 1.0},
            "sockets": [{"address": server.address, "once": True}],
            "fifos": [{"path": str(fifo)}],
            "files": [{"path": str(LOG)}]})
        service = Service(cfg)
        task = asyncio.create_task(service.run())
        await asyncio.wait_for(service.ready.wait(), 10)
        await wait_for(fifo.exists, 30, interval=0.02)
        # a program writing its eventlog into the pipe, opened read-write as GHC does
        fd = os.open(fifo, os.O_RDWR)
        try:
            await asyncio.to_thread(os.write, fd, data)
        finally:
            os.close(fd)
        await asyncio.to_thread(fm.send_datagrams, LOG, ("127.0.0.1", udp_port), interval=0.002)
        try:
            await wait_for(lambda: len(service.registry.finished) >= 5, 60)
        finally:
            service.stop()
            await asyncio.wait_for(task, 30)
            await server.stop()
    records = list(service.registry.finished.values())
    assert sorted(r.info.source for r in records) == sorted(
        ["monitor_tcp", "monitor_udp", "socket", "fifo", "file"])
    assert all(r.error is None and r.events > 10_000 for r in records), \
        [(r.info.name, r.error, r.events) for r in records]
    # one program run delivered five ways: every stream derives the same session id (pid and
    # wall clock) and host (all local), so InfluxDB holds one copy of each point
    want = summary(LOG)["gc"]["collections"]
    assert count(influxd, influx_database, "gc") == want
    assert service.sink.stats.written == sum(r.points for r in records)


async def test_sources_added_and_removed_while_running(influxd, influx_database, tmp_path):
    from ingest.sources.monitor_tcp import MonitorTcpConfig, MonitorTcpSource

    with fm.TcpMonitor(LOG, hold_open=True) as monitor:
        service = Service(settings_for(influxd, influx_database, tmp_path))
        task = asyncio.create_task(service.run())
        await asyncio.wait_for(service.ready.wait(), 10)
        assert service.source_tasks == {}
        source = MonitorTcpSource(MonitorTcpConfig(host="127.0.0.1", port=monitor.port))
        service.add_source(source)

        async def streamed_all():
            # the monitor sent everything and holds the connection open; wait until the
            # stream has taken it all in
            total = len(fm.split_eventlog(LOG.read_bytes())[1])
            last = -1
            while True:
                live = list(service.registry.live.values())
                if monitor.events_sent >= total and live and live[0].record.bytes == last:
                    return
                last = live[0].record.bytes if live else -1
                await asyncio.sleep(0.2)
        await asyncio.wait_for(streamed_all(), 30)
        await service.remove_source(source)
        assert service.source_tasks == {} and not service.registry.live
        (record,) = service.registry.finished.values()
        assert record.error is None or "cancel" not in record.error
        service.stop()
        await asyncio.wait_for(task, 30)
    assert count(influxd, influx_database, "gc") == summary(LOG)["gc"]["collections"]


async def test_gc_alerts_go_out_over_mqtt_while_points_land(influxd, influx_database, mosquitto,
                                                           mqtt_topic, tmp_path):
    import json

    import aiomqtt

    prefix = mqtt_topic.rstrip("/")
    got: list[dict] = []
    async with aiomqtt.Client(mosquitto.host, port=mosquitto.port) as client:
        await client.subscribe(f"{prefix}/#", qos=1)

        async def listen():
            async for message in client.messages:
                got.append(json.loads(message.payload))

        listener = asyncio.create_task(listen())
        with fm.TcpMonitor(LOG, max_connections=1) as monitor:
            cfg = settings_for(influxd, influx_database, tmp_path, **{
                "monitors": [{"host": "127.0.0.1", "port": monitor.port}],
                # every collection of this log pauses longer than a microsecond
                "mqtt": {"host": mosquitto.host, "port": mosquitto.port,
                         "topic_prefix": prefix, "pause_threshold_ms": 0.001}})
            service = Service(cfg)
            want = summary(LOG)["gc"]["collections"]
            await run_until(service, lambda s: ended(1)(s) and s.alerts.stats.published >= want)
        try:
            await wait_for(lambda: len(got) >= want, 10)
        finally:
            listener.cancel()
    assert len(got) == want == count(influxd, influx_database, "gc")
    assert all(a["pause_ms"] > 0.001 and a["app"] == "threads-mvar-nonthreaded" for a in got)


async def test_a_named_pipe_shows_points_before_the_writer_has_finished(influxd, influx_database,
                                                                       tmp_path):
    """A program writing its eventlog into a FIFO: points are queryable while it
    still writes.  The log is a GHC 9.2 one, which writes its identity (clock,
    pid, arguments) first (older GHCs write it at exit, and points wait for it
    up to 1 s of eventlog time); it spans well under the default 10 s lag bound
    of the live merge, so the test sets that to 50 ms of eventlog time."""
    # (count() reads the default policy, raw once setup ran)
    import os

    log = DATA / "ghc-9.2-events.eventlog"
    data = log.read_bytes()
    fifo = tmp_path / "prog.eventlog"
    cfg = settings_for(influxd, influx_database, tmp_path, **{
        "fifos": [{"path": str(fifo)}], "derive.max_lag": 0.05,
        # the log is from 2021: keep raw points for ever, or InfluxDB drops them
        "rollups.raw": {"name": "raw", "duration": "INF"}})
    service = Service(cfg)
    task = asyncio.create_task(service.run())
    try:
        await asyncio.wait_for(service.ready.wait(), 10)
        await wait_for(fifo.exists, 10)
        fd = os.open(fifo, os.O_RDWR)
        try:
            cut = len(data) * 2 // 3
            for i in range(0, cut, 512):               # the program runs: small writes
                await asyncio.to_thread(os.write, fd, data[i:min(i + 512, cut)])
                await asyncio.sleep(0.002)
            # still writing (a third to go): points are already in InfluxDB
            await wait_for(lambda: count(influxd, influx_database, "gc") > 0, 30)
            early = count(influxd, influx_database, "gc")
            await asyncio.to_thread(os.write, fd, data[cut:])
        finally:
            os.close(fd)
        await wait_for(lambda: len(service.registry.finished) == 1, 30)
        await service.sink.flush(30)
    finally:
        service.stop()
        await asyncio.wait_for(task, 30)
    assert 0 < early < summary(log)["gc"]["collections"]
    assert count(influxd, influx_database, "gc") == summary(log)["gc"]["collections"]
