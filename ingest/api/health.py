"""``/healthz``: the process answers.  ``/readyz``: the service runs and
InfluxDB answers (``sink.healthcheck``: ping, then an empty write)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from .routing import api
from .state import SERVICE


@api("GET", "/healthz", scope=None)
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@api("GET", "/readyz", scope=None)
async def readyz(request: web.Request) -> web.Response:
    service = request.app[SERVICE]
    if service.sink is None or service.registry is None:
        return web.json_response({"ready": False, "error": "the service is starting"},
                                 status=503)
    if service.settings.setup and service.setup_report is None:
        # points written before the retention policies exist are refused
        return web.json_response({"ready": False, "error": "retention/rollup setup pending"},
                                 status=503)
    try:
        async with asyncio.timeout(5.0):
            await service.sink.healthcheck()
    except Exception as exc:  # noqa: BLE001 (whatever fails, InfluxDB is not usable)
        return web.json_response({"ready": False, "error": f"InfluxDB: {exc or type(exc).__name__}"},
                                 status=503)
    return web.json_response({"ready": True})
