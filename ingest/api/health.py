"""``/healthz``: the process answers.  ``/readyz``: the service runs, InfluxDB
answers (a ping, then an empty write) and, when alerts are configured, their
publisher runs (``ServiceFacade.readiness``).

The alert sink counts as not ready while its publisher is not running: before
it starts, after it closed, and while it waits to be started again after
dying; alerts would then pile up unseen.  A broker that is merely away does
not make the service unready (the publisher dials it again and alerts wait in
its queue); the publisher's status in the body says which.

``/readyz`` is public, so its reasons never show credentials: the facade
masks a ``user:password@`` in any URL of an error text (``mask_url``)."""

from __future__ import annotations

from aiohttp import web

from .routing import api
from .state import SERVICE


@api("GET", "/healthz", scope=None)
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@api("GET", "/readyz", scope=None)
async def readyz(request: web.Request) -> web.Response:
    state = await request.app[SERVICE].readiness()
    if state.ready:
        return web.json_response({"ready": True})
    body: dict = {"ready": False, "error": state.error}
    if state.alerts is not None:
        body["alerts"] = state.alerts
    return web.json_response(body, status=503)
