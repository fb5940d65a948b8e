"""Health, readiness (InfluxDB reachable) and the Prometheus exposition."""

from __future__ import annotations

import re

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
