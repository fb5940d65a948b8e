"""The route table: each handler says the scope it needs, once.

``@api(method, path, scope=..., all_apps=...)`` records a handler; the auth
middleware (``app.py``) reads what it needs from the matched handler, and
the OpenAPI test checks the document against this same table.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    scope: str | None        # None: public (health)
    all_apps: bool           # the resource spans every app: app-limited tokens get 403
    timeout: bool            # the request timeout applies (not to upload bodies)


ROUTES: list[Route] = []


def api(method: str, path: str, *, scope: str | None, all_apps: bool = False,
        timeout: bool = True):
    def register(handler: Handler) -> Handler:
        route = Route(method, path, handler, scope, all_apps, timeout)
        ROUTES.append(route)
        handler.__api_route__ = route  # type: ignore[attr-defined]
        return handler
    return register


def route_of(request: web.Request) -> Route | None:
    info = request.match_info
    handler = getattr(info, "handler", None)
    return getattr(handler, "__api_route__", None)
