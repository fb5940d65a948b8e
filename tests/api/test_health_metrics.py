"""Health, readiness (InfluxDB reachable) and the Prometheus exposition."""

from __future__ import annotations

import asyncio
import re
import uuid

from ingest.sinks.mqtt import MAX_ATTEMPTS
from tests.alerts.helpers import gc_points
from tests.alerts.test_alerts_hostile import points_of_program
from tests.api.conftest import Running, api_config, settings_for
from tests.corpus import DATA

LOG = DATA / "threads-mvar.nonthreaded.l.eventlog"
SAMPLE = re.compile(r'^([a-z_:][a-z0-9_:]*)(\{([a-z_]+="[^"\\]*"(,[a-z_]+="[^"\\]*")*)\})? '
                    r'(-?[0-9.e+]+|NaN|\+Inf|-Inf)$')


def parse(text: str) -> dict[tuple, float]:
    """The exposition format, strictly: HELP/TYPE before each family's samples."""
    out: dict[tuple, float] = {}
    typed: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in ("counter", "gauge") and name not in typed, line
            typed.add(name)
            continue
        if line.startswith("# HELP "):
            continue
        m = SAMPLE.match(line)
        assert m, line
        assert m.group(1) in typed, line
        labels = tuple(sorted(re.findall(r'([a-z_]+)="([^"]*)"', m.group(3) or "")))
        out[(m.group(1), labels)] = float(m.group(5))
    return out


async def test_health_is_public_and_readiness_follows_influxdb(influxd_factory, tmp_path):
    server = influxd_factory()
    server.create_database("ready")
    async with Running(settings_for(server, "ready", tmp_path), api_config()) as api:
        assert await api.call("GET", "/healthz", who=None) == (200, {"status": "ok"})
        assert await api.call("GET", "/readyz", who=None) == (200, {"ready": True})
        server.stop()
        status, body = await api.call("GET", "/readyz", who=None)
        assert status == 503 and not body["ready"] and "InfluxDB" in body["error"]
        assert (await api.call("GET", "/healthz", who=None))[0] == 200
        server.start()
        assert (await api.call("GET", "/readyz", who=None))[0] == 200


async def test_metrics_count_what_was_ingested_with_bounded_labels(api):
    data = LOG.read_bytes()
    status, up = await api.call("POST", "/api/v1/upload", data=data)
    status, _ = await api.call("POST", "/api/v1/upload", data=b"nonsense" * 10)
    assert status == 422
    status, text = await api.call("GET", "/metrics")
    assert status == 200
    m = parse(text)
    src = (("source", "http_upload"),)
    assert m[("liveprof_stream_bytes_total", src)] == len(data) + 80
    assert m[("liveprof_stream_events_total", src)] == up["events"]
    assert m[("liveprof_stream_points_total", src)] == up["points"]
    assert m[("liveprof_stream_streams_total", src)] == 2
    assert m[("liveprof_stream_errors_total", src)] == 1
    assert m[("liveprof_sink_lines_total", (("state", "written"),))] == up["points"]
    assert m[("liveprof_sink_lag_lines", ())] == 0
    assert m[("liveprof_uploads_total", (("outcome", "invalid"),))] == 1
    assert m[("liveprof_uploads_total", (("outcome", "ok"),))] == 1
    assert m[("liveprof_http_requests_total", (("method", "POST"), ("route", "/api/v1/upload"),
                                               ("status", "422")))] == 1
    # no session, peer or app in any label
    for value in (up["session"], up["app"], "127.0.0.1"):
        assert value not in text
    # counters never go back when old streams are forgotten
    api.service.registry.finished.clear()
    m2 = parse((await api.call("GET", "/metrics"))[1])
    assert m2[("liveprof_stream_events_total", src)] == up["events"]


async def test_a_request_stuck_on_influxdb_times_out(influxd_factory, tmp_path):
    server = influxd_factory()
    server.create_database("frozen")
    settings = settings_for(server, "frozen", tmp_path)
    async with Running(settings, api_config(request_timeout=1.0)) as api:
        status, up = await api.call("POST", "/api/v1/upload", data=LOG.read_bytes())
        assert status == 201
        # InfluxDB hangs: accepts, never answers (freeze() waits until every
        # thread of it has stopped: a bare SIGSTOP let it answer now and then)
        server.freeze()
        try:
            status, body = await api.call("GET", f"/api/v1/sessions/{up['session']}")
            assert status == 504 and "1 s" in body["error"]
            # health does not wait on InfluxDB
            assert (await api.call("GET", "/healthz", who=None))[0] == 200
        finally:
            server.thaw()
        assert (await api.call("GET", f"/api/v1/sessions/{up['session']}"))[0] == 200


async def wait_metric(api, key: tuple, pred, what: str) -> dict:
    """/metrics, parsed, once ``pred(value of key)`` holds (a guard, not a timing)."""
    async def ask():
        while True:
            m = parse((await api.call("GET", "/metrics"))[1])
            if key in m and pred(m[key]):
                return m
            await asyncio.sleep(0.05)
    try:
        return await asyncio.wait_for(ask(), 60)
    except TimeoutError:
        raise AssertionError(f"/metrics never showed {what}") from None


async def test_lines_spilled_for_waiting_are_counted(influxd_factory, tmp_path):
    """InfluxDB goes away: after ``spill_after`` the waiting lines go to the
    spool and ``liveprof_sink_spilled_late_lines_total`` counts them."""
    server = influxd_factory()
    server.create_database("spill")
    settings = settings_for(server, "spill", tmp_path, **{"influx.spill_after": 0.3})
    async with Running(settings, api_config()) as api:
        m = parse((await api.call("GET", "/metrics"))[1])
        assert m[("liveprof_sink_spilled_late_lines_total", ())] == 0
        server.stop()
        status, up = await api.call("POST", "/api/v1/upload", data=LOG.read_bytes())
        assert status == 201 and up["points"] > 0, up
        key = ("liveprof_sink_spilled_late_lines_total", ())
        m = await wait_metric(api, key, lambda v: v >= up["points"], "every line spilled")
        assert m[key] == up["points"]  # each line once: none stayed in memory
        server.start()
        written = ("liveprof_sink_lines_total", (("state", "written"),))
        await wait_metric(api, written, lambda v: v == up["points"], "the spooled lines written")


async def test_alert_failures_are_counted_per_kind(influxd, influx_database, mosquitto_factory,
                                                   tmp_path):
    """A broker that cuts the client for an oversized alert (mosquitto's
    max_packet_size): the alert is tried MAX_ATTEMPTS times, then given up;
    /metrics shows the failure under its kind and the failed attempts."""
    broker = mosquitto_factory(extra_config="max_packet_size 2000")
    prefix = f"liveprof-test/{uuid.uuid4().hex[:12]}/"
    big = [p for p in gc_points(points_of_program(tmp_path, "x" * 3000)) if p.fields["pause_ns"] > 0]
    small = [p for p in gc_points(points_of_program(tmp_path, "small")) if p.fields["pause_ns"] > 0]
    settings = settings_for(influxd, influx_database, tmp_path, **{
        "mqtt": {"host": broker.host, "port": broker.port, "topic_prefix": prefix,
                 "pause_threshold_ms": 0, "backoff_initial": 0.05, "backoff_max": 0.5}})
    async with Running(settings, api_config()) as api:
        m = parse((await api.call("GET", "/metrics"))[1])
        for kind in ("gc_pause", "gc_pause_share"):
            assert m[("liveprof_alerts_failed_by_alert_total", (("alert", kind),))] == 0
        assert m[("liveprof_alerts_failed_total", ())] == 0
        assert m[("liveprof_alerts_publish_errors_total", ())] == 0
        assert m[("liveprof_alerts_publisher_restarts_total", ())] == 0
        api.service.alerts.submit(big[:1] + small)   # what the streams hand the sink
        published = ("liveprof_alerts_total", (("state", "published"),))
        m = await wait_metric(api, published, lambda v: v == len(small), "the small alerts")
    assert m[("liveprof_alerts_failed_total", ())] == 1
    assert m[("liveprof_alerts_failed_by_alert_total", (("alert", "gc_pause"),))] == 1
    assert m[("liveprof_alerts_failed_by_alert_total", (("alert", "gc_pause_share"),))] == 0
    assert m[("liveprof_alerts_publish_errors_total", ())] == MAX_ATTEMPTS
    assert m[("liveprof_alerts_publisher_restarts_total", ())] == 0  # cut, never dead
