"""``/healthz``: the process answers.  ``/readyz``: the service runs, InfluxDB
answers (``sink.healthcheck``: ping, then an empty write) and, when alerts are
configured, their publisher runs.

The alert sink counts as not ready while its publisher is not running: before
it starts, after it closed, and while it waits to be started again after dying
(``MqttAlertSink.healthy``); alerts would then pile up unseen.  A broker that
is merely away does not make the service unready (the publisher dials it
again and alerts wait in its queue); ``status()`` in the body says which.

``/readyz`` is public, so its reasons never show credentials: a
``user:password@`` in any URL of an error text is masked (``mask_url``)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from ingest.urls import mask_url

from .routing import api
from .state import SERVICE


@api("GET", "/healthz", scope=None)
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def _alerts_status(alerts) -> dict:
    status = dict(alerts.status())
    if isinstance(status.get("last_error"), str):
        status["last_error"] = mask_url(status["last_error"])
    return status


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
    alerts = service.alerts
    if alerts is not None and not alerts.healthy:
        status = _alerts_status(alerts)
        return web.json_response({"ready": False, "alerts": status,
                                  "error": f"MQTT alerts: publisher {status['state']}"},
                                 status=503)
    try:
        async with asyncio.timeout(5.0):
            await service.sink.healthcheck()
    except Exception as exc:
        reason = mask_url(str(exc) or type(exc).__name__)
        return web.json_response({"ready": False, "error": f"InfluxDB: {reason}"}, status=503)
    return web.json_response({"ready": True})
