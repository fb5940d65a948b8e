"""The OpenAPI 3.0 document of the API, served at ``/api/v1/openapi.json``.

Written by hand next to the routes; tests/api checks that it validates and
that its paths and methods are exactly the served routes (``routing.ROUTES``).
"""

from __future__ import annotations

from aiohttp import web

from .routing import api

VERSION = "1.0.0"


def _n(schema: dict) -> dict:
    return {**schema, "nullable": True}


INT, NUM, STR, BOOL = {"type": "integer"}, {"type": "number"}, {"type": "string"}, {"type": "boolean"}

SCHEMAS = {
    "Error": {"type": "object", "required": ["error"],
              "properties": {"error": STR, "offset": _n(INT)},
              "additionalProperties": True},
    "Stream": {"type": "object",
               "required": ["stream", "source", "peer", "state", "started", "bytes", "events",
                            "points"],
               "properties": {"stream": INT, "source": STR, "peer": STR,
                              "state": {"type": "string", "enum": ["live", "finished"]},
                              "started": NUM, "ended": _n(NUM), "bytes": INT, "events": INT,
                              "points": INT, "error": _n(STR), "clock": _n(STR)}},
    "Session": {"type": "object", "required": ["id", "state", "errors", "streams"],
                "properties": {
                    "id": STR, "app": _n(STR), "host": _n(STR),
                    "apps": {"type": "array", "items": STR},
                    "state": {"type": "string", "enum": ["live", "finished", "stored"]},
                    "started": _n(NUM), "ended": _n(NUM), "bytes": _n(INT), "events": _n(INT),
                    "points": _n(INT), "errors": {"type": "array", "items": STR},
                    "streams": {"type": "array", "items": {"$ref": "#/components/schemas/Stream"}},
                    "program": _n(STR), "rts": _n(STR), "stored": BOOL,
                    "run": {"type": "object", "additionalProperties": True,
                            "description": "the session point's fields (docs/schema.md)"},
                    "rts_start": _n(STR)}},
    "UploadResult": {"type": "object",
                     "required": ["id", "session", "bytes", "events", "points", "state"],
                     "properties": {"id": STR, "session": _n(STR), "app": _n(STR),
                                    "host": _n(STR), "bytes": INT, "events": INT, "points": INT,
                                    "complete": _n(BOOL), "stored": _n(BOOL), "state": STR}},
    "Upload": {"type": "object", "required": ["id", "state", "offset"],
               "properties": {"id": STR,
                              "state": {"type": "string",
                                        "enum": ["open", "finished", "failed", "cancelled"]},
                              "offset": INT, "session": _n(STR), "app": _n(STR), "host": _n(STR),
                              "bytes": INT, "events": INT, "points": INT, "complete": _n(BOOL),
                              "error": _n(STR), "error_offset": _n(INT), "stored": _n(BOOL),
                              "receiving": BOOL, "created": NUM, "touched": NUM}},
    "ConnectionInput": {
        "type": "object", "required": ["kind", "config"],
        "properties": {"kind": {"type": "string", "enum": ["monitor", "socket"]},
                       "config": {"type": "object", "additionalProperties": True,
                                  "description": "monitor: host, port, connect_timeout, "
                                                 "backoff_initial, backoff_max, max_frame, once; "
                                                 "socket: address (unix:PATH or HOST:PORT), "
                                                 "connect_timeout, backoff_initial, "
                                                 "backoff_max, read_size, once"}}},
    "ConnectionUpdate": {"type": "object", "required": ["config"],
                         "properties": {"kind": {"type": "string", "enum": ["monitor", "socket"]},
                                        "config": {"type": "object",
                                                   "additionalProperties": True}}},
    # running, peer and stats: admin tokens only (to a read token they would tell
    # whether a dialled port is open)
    "Connection": {"type": "object", "required": ["id", "kind", "config"],
                   "properties": {"id": STR, "kind": {"type": "string",
                                                      "enum": ["monitor", "socket"]},
                                  "config": {"type": "object", "additionalProperties": True},
                                  "created": NUM, "updated": NUM, "running": BOOL,
                                  "peer": _n(STR),
                                  "stats": {"type": "object",
                                            "additionalProperties": {"type": "integer"}}}},
    "TokenInput": {"type": "object", "required": ["name", "scopes"],
                   "properties": {"name": {"type": "string", "minLength": 1},
                                  "scopes": {"type": "array", "minItems": 1,
                                             "items": {"type": "string",
                                                       "enum": ["read", "write", "admin"]}},
                                  "apps": _n({"type": "array", "minItems": 1,
                                              "items": {"type": "string", "minLength": 1}})}},
    "Token": {"type": "object", "required": ["id", "name", "scopes", "apps", "created"],
              "properties": {"id": STR, "name": STR,
                             "scopes": {"type": "array", "items": STR},
                             "apps": _n({"type": "array", "items": STR}), "created": NUM,
                             "token": {"type": "string",
                                       "description": "only in the answer to its creation"}}},
}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict:
    text = {400: "bad request", 401: "no valid bearer token",
            403: "the token lacks the scope, or the app", 404: "not found",
            408: "the body stalled, or came slower than the minimum rate",
            409: "conflict (state or offset)",
            413: "over the upload size limit, or a compressed body expanding past the ratio",
            415: "a Content-Encoding other than gzip or deflate",
            422: "invalid input (or eventlog: `offset` says where)",
            429: "a limit on concurrent uploads", 503: "not ready / InfluxDB unavailable",
            504: "timed out"}
    return {str(c): _json(_ref("Error"), text[c]) for c in codes}


AUTH = (401, 403)
ID = {"name": "id", "in": "path", "required": True, "schema": STR}
APP_Q = {"name": "app", "in": "query", "required": False, "schema": STR,
         "description": "the app tag (required for a token limited to several apps; "
                        "default: the token's one app, else the program name)"}
HOST_Q = {"name": "host", "in": "query", "required": False, "schema": STR,
          "description": "the host tag (default: the service's)"}
EVENTLOG_BODY = {"required": True, "content": {"application/octet-stream": {
    "schema": {"type": "string", "format": "binary"}}}}


def _op(summary: str, responses: dict, *, secure: bool = True, **extra) -> dict:
    op = {"summary": summary, "responses": responses, **extra}
    if not secure:
        op["security"] = []
    return op


def document() -> dict:
    paths = {
        "/healthz": {"get": _op("the process is up", {"200": _json(
            {"type": "object", "properties": {"status": STR}}, "up")}, secure=False)},
        "/readyz": {"get": _op("ready: the service runs and InfluxDB answers", {
            "200": _json({"type": "object", "properties": {"ready": BOOL}}, "ready"),
            "503": _json({"type": "object", "properties": {"ready": BOOL, "error": STR}},
                         "not ready")}, secure=False)},
        "/metrics": {"get": _op("Prometheus metrics (scope read, every app)", {
            "200": {"description": "text format 0.0.4",
                    "content": {"text/plain": {"schema": STR}}}, **_errors(*AUTH)})},
        "/api/v1/openapi.json": {"get": _op("this document (any valid token)", {
            "200": _json({"type": "object"}, "OpenAPI 3.0"), **_errors(401)})},
        "/api/v1/upload": {"post": _op(
            "upload a whole eventlog in one streamed body (scope write)",
            {"201": _json(_ref("UploadResult"), "ingested"),
             **_errors(400, *AUTH, 408, 413, 415, 422, 429, 503)},
            parameters=[APP_Q, HOST_Q], requestBody=EVENTLOG_BODY)},
        "/api/v1/uploads": {"post": _op(
            "open a resumable upload (scope write)",
            {"201": _json(_ref("Upload"), "opened"), **_errors(*AUTH, 429, 503)},
            parameters=[APP_Q, HOST_Q])},
        "/api/v1/uploads/{id}": {
            "parameters": [ID],
            "get": _op("a resumable upload: where it stands (offset)",
                       {"200": _json(_ref("Upload"), "the upload"), **_errors(*AUTH, 404)}),
            "put": _op("append the next bytes at ?offset= (the bytes received so far)",
                       {"200": _json(_ref("Upload"), "appended"),
                        **_errors(400, *AUTH, 404, 408, 409, 413, 415, 422, 429)},
                       parameters=[{"name": "offset", "in": "query", "required": True,
                                    "schema": {"type": "integer", "minimum": 0}}],
                       requestBody=EVENTLOG_BODY),
            "delete": _op("cancel: end the stream (points so far kept)",
                          {"204": {"description": "cancelled"}, **_errors(*AUTH, 404)})},
        "/api/v1/uploads/{id}/finish": {"parameters": [ID], "post": _op(
            "end a resumable upload", {"201": _json(_ref("UploadResult"), "ingested"),
                                       **_errors(*AUTH, 404, 409, 422)})},
        "/api/v1/sessions": {"get": _op(
            "sessions this process knows (live, and the last finished)",
            {"200": _json({"type": "object", "required": ["sessions"], "properties": {
                "sessions": {"type": "array", "items": _ref("Session")}}}, "sessions"),
             **_errors(400, *AUTH)},
            parameters=[{"name": "app", "in": "query", "schema": STR},
                        {"name": "host", "in": "query", "schema": STR},
                        {"name": "state", "in": "query",
                         "schema": {"type": "string", "enum": ["live", "finished"]}}])},
        "/api/v1/sessions/{id}": {
            "parameters": [ID],
            "get": _op("one session: program, RTS, start/end, counts, errors",
                       {"200": _json(_ref("Session"), "the session"),
                        **_errors(*AUTH, 404, 503)}),
            "delete": _op("delete a finished session and its points in InfluxDB (scope write)",
                          {"204": {"description": "deleted"},
                           **_errors(*AUTH, 404, 409, 503)})},
        "/api/v1/connections": {
            "get": _op("monitors and sockets dialled (scope read, every app)",
                       {"200": _json({"type": "object", "required": ["connections"],
                                      "properties": {"connections": {
                                          "type": "array", "items": _ref("Connection")}}},
                                     "connections"), **_errors(*AUTH)}),
            "post": _op("add a connection: dialled at once, kept across restarts (admin)",
                        {"201": _json(_ref("Connection"), "created"),
                         **_errors(400, *AUTH, 422)},
                        requestBody={"required": True, "content": {"application/json": {
                            "schema": _ref("ConnectionInput")}}})},
        "/api/v1/connections/{id}": {
            "parameters": [ID],
            "get": _op("one connection", {"200": _json(_ref("Connection"), "the connection"),
                                          **_errors(*AUTH, 404)}),
            "put": _op("replace a connection's config: redialled (admin)",
                       {"200": _json(_ref("Connection"), "updated"),
                        **_errors(400, *AUTH, 404, 422)},
                       requestBody={"required": True, "content": {"application/json": {
                           "schema": _ref("ConnectionUpdate")}}}),
            "delete": _op("stop dialling and forget a connection (admin)",
                          {"204": {"description": "deleted"}, **_errors(*AUTH, 404)})},
        "/api/v1/tokens": {
            "get": _op("tokens, without secrets (admin)",
                       {"200": _json({"type": "object", "required": ["tokens"], "properties": {
                           "tokens": {"type": "array", "items": _ref("Token")}}}, "tokens"),
                        **_errors(*AUTH)}),
            "post": _op("create a token; its text is in this answer only (admin)",
                        {"201": _json(_ref("Token"), "created"), **_errors(400, *AUTH, 422)},
                        requestBody={"required": True, "content": {"application/json": {
                            "schema": _ref("TokenInput")}}})},
        "/api/v1/tokens/{id}": {"parameters": [ID], "delete": _op(
            "revoke a token (admin)", {"204": {"description": "revoked"},
                                       **_errors(*AUTH, 404)})},
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": "liveprof API", "version": VERSION,
                 "description": "Upload GHC eventlogs, list and delete sessions, manage the "
                                "connections the service dials and its tokens (docs/api.md)."},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {"schemas": SCHEMAS, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer",
                       "description": "lp_<id>_<secret>; scopes read, write, admin; "
                                      "optionally limited to some apps"}}},
    }


@api("GET", "/api/v1/openapi.json", scope="any")
async def openapi(request: web.Request) -> web.Response:
    return web.json_response(document())
