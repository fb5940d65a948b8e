"""Sessions: the streams the service has seen, grouped by their ``session``
tag (one program run may arrive by several streams), and the session points
stored in InfluxDB.

A stream whose identity is not settled yet (no points made) has no session
tag: it is listed as ``pending-<n>`` until it has one.  Listing shows the
streams this process knows (live, and the last finished ones); showing and
deleting also work for sessions known only to InfluxDB (ingested before a
restart).
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

from aiohttp import web

from ingest.facade import ServiceFacade, StoreError

from .auth import Token, problem
from .routing import api
from .state import SERVICE, TOKEN

if TYPE_CHECKING:
    from ingest.facade import StreamRecord

log = logging.getLogger("liveprof.api.sessions")

# session ids are hashes (16 hex digits) or configured names: nothing else is
# looked up (or put into a query)
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")

SESSION_FIELDS = ("program", "command", "args", "rts", "ghc_version", "rts_flavour", "pid",
                  "ppid", "generations", "max_heap_bytes", "alloc_area_bytes", "caps")


def stream_dict(rec: StreamRecord) -> dict:
    return {"stream": rec.key, "source": rec.info.source, "peer": rec.info.peer,
            "state": "live" if rec.live else "finished", "started": rec.info.started,
            "ended": rec.ended, "bytes": rec.bytes, "events": rec.events,
            "points": rec.points, "error": rec.error, "clock": rec.clock}


def group(service: ServiceFacade, token: Token | None = None) -> dict[str, list[StreamRecord]]:
    """Session id -> its streams the token may see, in order.  One run can
    come as several streams, tagged with different apps (the same log
    uploaded for two apps): a token sees only the streams of its apps."""
    out: dict[str, list[StreamRecord]] = {}
    for rec in sorted(service.stream_records(), key=lambda r: r.key):
        if token is not None and not token.sees(rec.tags.get("app")):
            continue
        sid = rec.tags.get("session") or f"pending-{rec.key}"
        out.setdefault(sid, []).append(rec)
    return out


def session_dict(sid: str, recs: list[StreamRecord]) -> dict:
    tags = next((r.tags for r in recs if r.tags), {})
    live = any(r.live for r in recs)
    apps = sorted({r.tags["app"] for r in recs if r.tags.get("app")})
    return {"id": sid, "app": tags.get("app"), "apps": apps, "host": tags.get("host"),
            "state": "live" if live else "finished",
            "started": min(r.info.started for r in recs),
            "ended": None if live else max(r.ended or 0.0 for r in recs),
            "bytes": sum(r.bytes for r in recs), "events": sum(r.events for r in recs),
            "points": sum(r.points for r in recs),
            "errors": [r.error for r in recs if r.error],
            "streams": [stream_dict(r) for r in recs]}


def _apps(token: Token) -> list[str] | None:
    return None if token.apps is None else list(token.apps)


def _session_id(request: web.Request) -> str:
    sid = request.match_info["id"]
    if not _ID.fullmatch(sid):
        raise problem(404, "no such session (not a session id)")
    return sid


@api("GET", "/api/v1/sessions", scope="read")
async def list_sessions(request: web.Request) -> web.Response:
    token: Token = request[TOKEN]
    q = request.query
    state = q.get("state")
    if state not in (None, "live", "finished"):
        raise problem(400, "state is live or finished")
    out = []
    for sid, streams in group(request.app[SERVICE], token).items():
        s = session_dict(sid, streams)
        if ("app" in q and q["app"] not in s["apps"]) or ("host" in q and s["host"] != q["host"]) \
                or (state and s["state"] != state):
            continue
        out.append(s)
    return web.json_response({"sessions": out})


@api("GET", "/api/v1/sessions/{id}", scope="read")
async def show_session(request: web.Request) -> web.Response:
    token: Token = request[TOKEN]
    service = request.app[SERVICE]
    sid = _session_id(request)
    streams = group(service, token).get(sid)
    known = session_dict(sid, streams) if streams else None
    if known is None and group(service).get(sid):
        raise problem(403, "this token may not see that session's apps")
    stored = None
    if not sid.startswith("pending-"):
        try:
            stored = await service.stored_session(sid, _apps(token))
        except StoreError as exc:
            if known is None:
                raise problem(503, f"InfluxDB cannot be asked: {exc}") from exc
    if known is None:
        if stored is None:
            raise problem(404, f"no session {sid!r}")
        known = {"id": sid, "app": stored.get("app"), "apps": [stored.get("app")],
                 "host": stored.get("host"),
                 "state": "stored", "started": None, "ended": None, "bytes": None,
                 "events": None, "points": None, "errors": [], "streams": []}
    info = {k: stored.get(k) for k in SESSION_FIELDS} if stored else {}
    known.update({"program": info.get("program"), "rts": info.get("rts"),
                  "stored": stored is not None,
                  "run": {k: v for k, v in info.items() if v is not None},
                  "rts_start": stored.get("time") if stored else None})
    return web.json_response(known)


@api("DELETE", "/api/v1/sessions/{id}", scope="write")
async def delete_session(request: web.Request) -> web.Response:
    """Drop the session's points (every measurement, every retention policy)
    and forget its finished streams.  A live session is refused (409)."""
    token: Token = request[TOKEN]
    service = request.app[SERVICE]
    sid = _session_id(request)
    streams = group(service, token).get(sid)
    if streams:
        if session_dict(sid, streams)["state"] == "live":
            raise problem(409, "the session is live: it can be deleted once it has ended")
    elif group(service).get(sid):
        raise problem(403, "this token may not see that session's apps")
    else:
        try:
            stored = await service.stored_session(sid, _apps(token))
        except StoreError as exc:
            raise problem(503, f"InfluxDB cannot be asked: {exc}") from exc
        if stored is None:
            raise problem(404, f"no session {sid!r}")
    if not sid.startswith("pending-"):
        try:
            await service.delete_session(sid, _apps(token))
        except StoreError as exc:
            raise problem(503, f"InfluxDB refused to drop the session: {exc}") from exc
    service.forget_streams([r.key for r in streams or ()])
    return web.Response(status=204)
