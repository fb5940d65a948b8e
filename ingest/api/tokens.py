"""Token management (admin): create (the token is shown once), list, revoke."""

from __future__ import annotations

from aiohttp import web

from .auth import SCOPES, json_object, problem
from .routing import api
from .state import TOKENS


@api("GET", "/api/v1/tokens", scope="admin", all_apps=True)
async def list_tokens(request: web.Request) -> web.Response:
    store = request.app[TOKENS]
    return web.json_response({"tokens": [t.public() for t in store.tokens.values()]})


@api("POST", "/api/v1/tokens", scope="admin", all_apps=True)
async def create_token(request: web.Request) -> web.Response:
    body = await json_object(request)
    name, scopes, apps = body.get("name", ""), body.get("scopes"), body.get("apps")
    if not isinstance(name, str) or not name:
        raise problem(422, "name: a non-empty string")
    if not isinstance(scopes, list) or not scopes or any(s not in SCOPES for s in scopes):
        raise problem(422, f"scopes: a non-empty list of {list(SCOPES)}")
    if apps is not None and (not isinstance(apps, list) or not apps
                             or any(not isinstance(a, str) or not a for a in apps)):
        raise problem(422, "apps: null (every app) or a non-empty list of app names")
    token, text = request.app[TOKENS].create(name, scopes, apps)
    return web.json_response({**token.public(), "token": text}, status=201)


@api("DELETE", "/api/v1/tokens/{id}", scope="admin", all_apps=True)
async def revoke_token(request: web.Request) -> web.Response:
    if not request.app[TOKENS].revoke(request.match_info["id"]):
        raise problem(404, f"no token {request.match_info['id']!r}")
    return web.Response(status=204)
