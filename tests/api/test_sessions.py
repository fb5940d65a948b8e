"""Sessions over HTTP: list with filters, show, delete (points gone from InfluxDB)."""

from __future__ import annotations

from tests.api.helpers import count
from tests.corpus import DATA

LOG = DATA / "threads-mvar.nonthreaded.l.eventlog"
OTHER = DATA / "parallelTest.eventlog"


async def test_list_filters_show_and_delete(api, influxd, influx_database):
    s1 = (await api.call("POST", "/api/v1/upload", data=LOG.read_bytes(),
                         params={"host": "h1"}))[1]
    s2 = (await api.call("POST", "/api/v1/upload", data=OTHER.read_bytes(),
                         params={"host": "h2", "app": "other"}))[1]
    # a live one: a resumable upload with its first half in
    data = LOG.read_bytes()
    up = (await api.call("POST", "/api/v1/uploads", params={"app": "livey"}))[1]
    await api.call("PUT", f"/api/v1/uploads/{up['id']}", params={"offset": 0},
                   data=data[:len(data) // 2])
    status, listing = await api.call("GET", "/api/v1/sessions")
    assert status == 200
    states = {s["id"]: s["state"] for s in listing["sessions"]}
    assert states[s1["session"]] == states[s2["session"]] == "finished"
    live = [s for s in listing["sessions"] if s["state"] == "live"]
    # its identity is not settled yet (this log posts it at the end): no tags yet
    assert len(live) == 1 and live[0]["id"].startswith("pending-") and live[0]["app"] is None

    async def ids(**params):
        status, body = await api.call("GET", "/api/v1/sessions", params=params)
        assert status == 200
        return {s["id"] for s in body["sessions"]}
    assert await ids(app="other") == {s2["session"]}
    assert await ids(host="h1") == {s1["session"]}
    assert await ids(state="live") == {live[0]["id"]}
    assert await ids(state="finished") == {s1["session"], s2["session"]}
    assert await ids(app="other", host="h1") == set()
    assert (await api.call("GET", "/api/v1/sessions", params={"state": "soon"}))[0] == 400

    status, shown = await api.call("GET", f"/api/v1/sessions/{s1['session']}")
    assert status == 200
    assert shown["program"] == "threads-mvar-nonthreaded" and shown["rts"].startswith("GHC-")
    assert shown["run"]["pid"] > 0 and shown["started"] <= shown["ended"]
    assert (shown["events"], shown["points"], shown["bytes"]) == \
        (s1["events"], s1["points"], len(data))
    assert shown["errors"] == [] and shown["streams"][0]["source"] == "http_upload"

    # a live session cannot be deleted
    assert (await api.call("DELETE", f"/api/v1/sessions/{live[0]['id']}"))[0] == 409
    # a finished one: its points go, in every measurement
    assert count(influxd, influx_database, "gc", s1["session"]) > 0
    assert (await api.call("DELETE", f"/api/v1/sessions/{s1['session']}"))[0] == 204
    for measurement, field in (("gc", "pause_ns"), ("session", "pid"), ("heap", "size_bytes")):
        assert count(influxd, influx_database, measurement, s1["session"], field) == 0
    assert count(influxd, influx_database, "gc", s2["session"]) > 0      # the other stays
    assert (await api.call("GET", f"/api/v1/sessions/{s1['session']}"))[0] == 404
    assert (await api.call("DELETE", f"/api/v1/sessions/{s1['session']}"))[0] == 404
    assert s1["session"] not in await ids()


async def test_sessions_known_only_to_influxdb_are_shown_and_deleted(api, influxd,
                                                                     influx_database):
    body = (await api.call("POST", "/api/v1/upload", data=LOG.read_bytes()))[1]
    sid = body["session"]
    api.service.registry.finished.clear()          # as after a restart
    status, shown = await api.call("GET", f"/api/v1/sessions/{sid}")
    assert status == 200 and shown["state"] == "stored" and shown["program"] == "threads-mvar-nonthreaded"
    await api.token("stranger", ["read", "write"], apps=["stranger"])
    assert (await api.call("GET", f"/api/v1/sessions/{sid}", who="stranger"))[0] == 404
    assert (await api.call("DELETE", f"/api/v1/sessions/{sid}", who="stranger"))[0] == 404
    assert (await api.call("DELETE", f"/api/v1/sessions/{sid}"))[0] == 204
    assert count(influxd, influx_database, "gc", sid) == 0
