"""Smaller leaks and edges of the API (issue 12, item 8): credentials in the
InfluxDB URL never reach the public /readyz; connections have a floor on
their redial delay and tell read tokens nothing about open ports; the API's
files are private; the configured admin token is kept with a keyed digest."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
import stat

from tests.api.conftest import ADMIN, Running, api_config, settings_for
from tests.corpus import DATA
from tests.sources.helpers import EventlogServer

LOG = DATA / "parallelTest.eventlog"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_readyz_never_shows_the_influx_credentials(influxd, influx_database, tmp_path):
    url = f"http://liveuser:s3cret-Pw0rd@127.0.0.1:{closed_port()}"
    settings = settings_for(influxd, influx_database, tmp_path, **{"influx.url": url})
    async with Running(settings, api_config()) as api:
        status, body = await api.call("GET", "/readyz", who=None)
    assert status == 503 and "InfluxDB" in body["error"], body
    text = json.dumps(body)
    assert "s3cret-Pw0rd" not in text and "liveuser" not in text, text
    assert "127.0.0.1" in text     # still says where


async def test_connections_floor_their_backoff_and_hide_dialling_from_read_tokens(
        influxd, influx_database, tmp_path):
    server = await EventlogServer(LOG.read_bytes()).start()
    try:
        async with Running(settings_for(influxd, influx_database, tmp_path),
                           api_config()) as api:
            for key in ("backoff_initial", "backoff_max"):
                status, err = await api.call("POST", "/api/v1/connections", json={
                    "kind": "socket", "config": {"address": server.address, key: 0.001}})
                assert status == 422 and key in err["error"], err
            status, conn = await api.call("POST", "/api/v1/connections", json={
                "kind": "socket", "config": {"address": server.address, "backoff_max": 0.5}})
            assert status == 201, conn
            closed = f"127.0.0.1:{closed_port()}"
            status, shut = await api.call("POST", "/api/v1/connections", json={
                "kind": "socket", "config": {"address": closed, "once": True}})
            assert status == 201, shut
            await api.token("reader", ["read"])
            while server.clients == 0:
                status, shown = await api.call("GET", f"/api/v1/connections/{conn['id']}")
            # admins see how dialling goes; a read token sees the same for an open and a
            # closed port: what was configured, nothing of the outcome
            status, shown = await api.call("GET", f"/api/v1/connections/{conn['id']}")
            assert status == 200 and {"running", "peer", "stats"} <= set(shown)
            seen = {}
            for cid in (conn["id"], shut["id"]):
                status, item = await api.call("GET", f"/api/v1/connections/{cid}", who="reader")
                assert status == 200, item
                seen[cid] = item
            status, listed = await api.call("GET", "/api/v1/connections", who="reader")
            assert status == 200 and sorted(listed["connections"], key=lambda c: c["id"]) == \
                sorted(seen.values(), key=lambda c: c["id"])
            for item in seen.values():
                assert set(item) == {"id", "kind", "config", "created"}, item
    finally:
        await server.stop()


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


async def test_the_api_files_are_private_and_the_admin_token_is_keyed(
        influxd, influx_database, tmp_path):
    settings = settings_for(influxd, influx_database, tmp_path)
    base = tmp_path / "state" / "api"
    async with Running(settings, api_config()) as api:
        await api.token("writer", ["write"])
        status, _ = await api.call("POST", "/api/v1/connections", json={
            "kind": "socket", "config": {"address": f"127.0.0.1:{closed_port()}", "once": True}})
        assert status == 201
    assert mode(base) == 0o700
    names = sorted(p.name for p in base.iterdir())
    assert names == ["connections.json", "tokens.json", "tokens.key"], names  # no temp left
    for name in names:
        assert mode(base / name) == 0o600, name
    stored = (base / "tokens.json").read_text()
    assert ADMIN not in stored
    # no unsalted digest of the admin token in the store (its id was one)
    assert hashlib.sha256(ADMIN.encode()).hexdigest()[:8] not in stored
    # the digest depends on the key file: with another key the token is refused
    key = (base / "tokens.key").read_text()
    (base / "tokens.key").write_text(secrets.token_hex(32))
    async with Running(settings, api_config()) as api:
        assert (await api.call("GET", "/api/v1/tokens"))[0] == 401
    (base / "tokens.key").write_text(key)
    os.chmod(base / "tokens.json", 0o644)      # loosened by hand: made private again
    async with Running(settings, api_config()) as api:
        assert (await api.call("GET", "/api/v1/tokens"))[0] == 200
    assert mode(base / "tokens.json") == 0o600


async def test_a_store_of_the_old_kind_is_upgraded_at_the_admin_tokens_next_use(
        influxd, influx_database, tmp_path):
    base = tmp_path / "state" / "api"
    base.mkdir(parents=True)
    salt = secrets.token_hex(16)
    old_id = "config-" + hashlib.sha256(ADMIN.encode()).hexdigest()[:8]
    # the store as earlier versions wrote it
    (base / "tokens.json").write_text(json.dumps({"tokens": [{
        "id": old_id, "name": "admin (configuration)", "scopes": ["admin"], "apps": None,
        "created": 1.0, "salt": salt,
        "digest": hashlib.sha256(bytes.fromhex(salt) + ADMIN.encode()).hexdigest()}]}))
    settings = settings_for(influxd, influx_database, tmp_path)
    async with Running(settings, api_config()) as api:
        status, listed = await api.call("GET", "/api/v1/tokens")
        assert status == 200
        (token,) = listed["tokens"]
        assert token["id"] != old_id and token["scopes"] == ["admin"]
        assert (await api.call("GET", "/api/v1/tokens"))[0] == 200   # and again
    stored = (base / "tokens.json").read_text()
    assert old_id not in stored and mode(base / "tokens.json") == 0o600
