"""``/healthz``: the process answers.  ``/readyz``: the service runs and
InfluxDB answers (``sink.healthcheck``: ping, then an empty write).

``/readyz`` is public, so its reason never shows credentials: a
``user:password@`` in any URL of the error text is masked."""

from __future__ import annotations

import asyncio
import re

from aiohttp import web

from .routing import api
from .state import SERVICE


_USERINFO = re.compile(r"(?<=//)[^/?#@\s]*@")


def mask_credentials(text: str) -> str:
    """``http://user:pw@host:8086`` -> ``http://***@host:8086`` wherever it
    occurs (a local twin of ``ingest.urls.mask_url``, which masks them in the
    configuration and logs)."""
    return _USERINFO.sub("***@", text)


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
        reason = mask_credentials(str(exc) or type(exc).__name__)
        return web.json_response({"ready": False, "error": f"InfluxDB: {reason}"}, status=503)
    return web.json_response({"ready": True})
