"""Connections over HTTP: the service dials what is added, stops what is
removed, redials what is changed, and finds them again after a restart."""

from __future__ import annotations

import asyncio
import json

from tests import servers
from tests.api.conftest import Running, api_config, settings_for
from tests.corpus import DATA
from tests.sources.helpers import EventlogServer

LOG = DATA / "threads-mvar.nonthreaded.l.eventlog"


async def wait_for(predicate, timeout=30.0):
    await servers.wait_for(predicate, timeout, interval=0.02)


def socket_streams(api, port):
    return [r for r in api.service.registry.records()
            if r.info.source == "socket" and r.info.peer.endswith(f":{port}")]


async def test_connections_are_dialled_changed_removed_and_kept(influxd, influx_database,
                                                                tmp_path):
    data = LOG.read_bytes()
    one = await EventlogServer(data).start()
    two = await EventlogServer(data).start()
    settings = settings_for(influxd, influx_database, tmp_path)
    try:
        async with Running(settings, api_config()) as api:
            status, conn = await api.call("POST", "/api/v1/connections", json={
                "kind": "socket", "config": {"address": one.address, "backoff_max": 0.5}})
            assert status == 201, conn
            cid = conn["id"]
            await wait_for(lambda: any(r.ended and r.events > 1000
                                       for r in socket_streams(api, one.port)))
            status, listed = await api.call("GET", "/api/v1/connections")
            (shown,) = listed["connections"]
            assert shown["id"] == cid and shown["running"] and shown["kind"] == "socket"
            # changed: dials the other server, no more the first
            status, conn = await api.call("PUT", f"/api/v1/connections/{cid}", json={
                "config": {"address": two.address, "backoff_max": 0.5}})
            assert status == 200 and conn["config"]["address"] == two.address
            dialled_one = one.clients
            await wait_for(lambda: socket_streams(api, two.port))
            await asyncio.sleep(1.0)       # longer than its redial delay
            assert one.clients == dialled_one
            # bad input
            for body in ({"kind": "carrier-pigeon", "config": {}},
                         {"kind": "socket", "config": {"address": "x:y:z:"}},
                         {"kind": "monitor", "config": {"port": 0}},
                         {"kind": "monitor", "config": {"colour": "red"}}):
                status, err = await api.call("POST", "/api/v1/connections", json=body)
                assert status == 422, (body, err)
            status, _ = await api.call("PUT", f"/api/v1/connections/{cid}",
                                       json={"kind": "monitor", "config": {}})
            assert status == 422
        saved = json.loads((tmp_path / "state" / "api" / "connections.json").read_text())
        assert [c["config"]["address"] for c in saved["connections"]] == [two.address]
        # a restart: the connection is back and dialled
        clients = two.clients
        async with Running(settings, api_config()) as api:
            await wait_for(lambda: two.clients > clients)
            status, listed = await api.call("GET", f"/api/v1/connections/{cid}")
            assert status == 200 and listed["running"]
            assert (await api.call("DELETE", f"/api/v1/connections/{cid}"))[0] == 204
            assert not any(t.get_name() == "source:socket"
                           for t in api.service.source_tasks.values())
            assert (await api.call("GET", f"/api/v1/connections/{cid}"))[0] == 404
            clients = two.clients
            await asyncio.sleep(1.0)
            assert two.clients == clients      # no longer dialled
        saved = json.loads((tmp_path / "state" / "api" / "connections.json").read_text())
        assert saved["connections"] == []
    finally:
        await one.stop()
        await two.stop()
