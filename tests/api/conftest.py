"""A running service with its HTTP API on loopback, over a real InfluxDB."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import aiohttp
import pytest

from ingest.api import ApiConfig, bound_port, start_api, stop_api
from ingest.config import load
from ingest.service import Service
from tests.servers import wait_for

ADMIN = "test-admin-token-0123456789"


def settings_for(server, database, tmp_path, **over):
    values = {"influx.url": server.url, "influx.database": database,
              "influx.flush_interval": 0.1, "state_dir": str(tmp_path / "state"),
              # corpus logs are years old: past the raw policy's retention, so the
              # database's default (infinite) policy, as `liveprof import` does
              "setup": False}
    values.update(over)
    return load(None, values)


@dataclass
class Api:
    service: Service
    url: str
    session: aiohttp.ClientSession
    runner: object
    tokens: dict[str, str] = field(default_factory=dict)

    def auth(self, who: str = "admin") -> dict:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    async def call(self, method: str, path: str, who: str | None = "admin", **kw):
        headers = dict(kw.pop("headers", {}))
        if who is not None:
            headers.update(self.auth(who))
        async with self.session.request(method, self.url + path, headers=headers, **kw) as r:
            ctype = r.headers.get("Content-Type", "")
            body = await (r.json() if "json" in ctype else r.text())
            return r.status, body

    async def token(self, name: str, scopes: list[str], apps: list[str] | None = None) -> str:
        status, body = await self.call("POST", "/api/v1/tokens",
                                       json={"name": name, "scopes": scopes, "apps": apps})
        assert status == 201, body
        self.tokens[name] = body["token"]
        return body["token"]


class Running:
    """Service + API started together; ``stop()`` in reverse."""

    def __init__(self, settings, api_config: ApiConfig):
        self.settings = settings
        self.api_config = api_config

    async def __aenter__(self) -> Api:
        self.service = Service(self.settings)
        self.task = asyncio.create_task(self.service.run())
        await asyncio.wait_for(self.service.ready.wait(), 20)
        # the raw retention policy must exist before points are written to it
        await wait_for(lambda: not self.settings.setup or self.service.setup_report is not None,
                       30, interval=0.02)
        self.runner = await start_api(self.service, self.api_config)
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300))
        url = f"http://127.0.0.1:{bound_port(self.runner)}"
        api = Api(self.service, url, self.http, self.runner, {"admin": ADMIN})
        return api

    async def __aexit__(self, *exc):
        await self.http.close()
        await stop_api(self.runner)
        self.service.stop()
        await asyncio.wait_for(self.task, 30)


def api_config(**over) -> ApiConfig:
    values = {"port": 0, "admin_token": ADMIN}
    values.update(over)
    return ApiConfig(**values)


@pytest.fixture
async def api(influxd, influx_database, tmp_path):
    settings = settings_for(influxd, influx_database, tmp_path)
    async with Running(settings, api_config()) as a:
        yield a
