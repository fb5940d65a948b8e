"""Connections: monitors and eventlog sockets the service dials, changed at
run time (``ServiceFacade.add_connection`` / ``remove_connection``) and kept in a JSON
file under the state directory (0600, ``files.py``), so they come back after
a restart.

Two guards, because the API makes the service dial wherever it is told:
redial delays have a floor (``MIN_BACKOFF``), so no connection dials a closed
port in a tight loop; and only admin tokens see how dialling goes (running,
peer, connection and error counts): to a read token those would tell whether
a host's port is open, a port scanner by proxy."""

from __future__ import annotations

import json
import logging
import secrets
import time
from pathlib import Path

from aiohttp import web
from pydantic import BaseModel, ValidationError

from ingest.facade import ServiceFacade
from ingest.files import private_dir, read_private, write_private

from .auth import json_object, problem
from .routing import api
from .state import CONNECTIONS, TOKEN

log = logging.getLogger("liveprof.api.connections")

MIN_BACKOFF = 0.5      # seconds: the shortest redial delay a connection may ask for


class ConnectionStore:
    def __init__(self, service: ServiceFacade, path: Path):
        self.service = service
        self.kinds = service.connection_kinds()   # kind -> the model of its config
        self.path = Path(path)
        self.items: dict[str, dict] = {}          # id -> {"id", "kind", "config", "created"}
        self.sources: dict[str, object] = {}      # id -> the running source's handle

    # -- persistence -------------------------------------------------------------------

    def load(self) -> None:
        try:
            data = json.loads(read_private(self.path))
        except FileNotFoundError:
            return
        for item in data.get("connections", []):
            try:
                self._validate(item["kind"], item["config"])
            except (ValueError, KeyError) as exc:
                log.error("connection %s in %s ignored: %s", item.get("id"), self.path, exc)
                continue
            self.items[item["id"]] = item

    def save(self) -> None:
        text = json.dumps({"connections": list(self.items.values())}, indent=1)
        private_dir(self.path.parent, tighten=False)  # a configured path: may be shared
        write_private(self.path, text.encode())

    # -- sources -----------------------------------------------------------------------

    def _validate(self, kind: str, config: dict) -> BaseModel:
        if kind not in self.kinds:
            raise ValueError(f"kind must be one of {sorted(self.kinds)}")
        model = self.kinds[kind].model_validate(config)
        for name in ("backoff_initial", "backoff_max"):
            if getattr(model, name) < MIN_BACKOFF:
                raise ValueError(f"config.{name}: at least {MIN_BACKOFF:g} s "
                                 f"(got {getattr(model, name):g})")
        return model

    def start_all(self) -> None:
        for cid in self.items:
            self._start(cid)

    async def stop_all(self) -> None:
        for cid in list(self.sources):
            await self._stop(cid)

    def _start(self, cid: str) -> None:
        item = self.items[cid]
        config = self.kinds[item["kind"]].model_validate(item["config"])
        self.sources[cid] = self.service.add_connection(item["kind"], config)

    async def _stop(self, cid: str) -> None:
        source = self.sources.pop(cid, None)
        if source is not None:
            await self.service.remove_connection(source)

    # -- operations --------------------------------------------------------------------

    def create(self, kind: str, config: dict) -> dict:
        model = self._validate(kind, config)
        cid = secrets.token_hex(6)
        self.items[cid] = {"id": cid, "kind": kind,
                           "config": model.model_dump(mode="json"), "created": time.time()}
        self.save()
        self._start(cid)
        return self.view(cid)

    async def update(self, cid: str, config: dict) -> dict:
        item = self.items[cid]
        model = self._validate(item["kind"], config)
        await self._stop(cid)
        item["config"] = model.model_dump(mode="json")
        item["updated"] = time.time()
        self.save()
        self._start(cid)
        return self.view(cid)

    async def delete(self, cid: str) -> None:
        await self._stop(cid)
        del self.items[cid]
        self.save()

    def view(self, cid: str, full: bool = True) -> dict:
        """The connection; with ``full`` (admins) how its dialling goes."""
        item = dict(self.items[cid])
        if not full:
            return item
        source = self.sources.get(cid)
        if source is None:
            item.update(running=False, peer=None, stats={})
            return item
        status = self.service.connection_status(source)
        item.update(running=status.running, peer=status.peer, stats=dict(status.stats))
        return item


def _body_error(exc: ValidationError | ValueError) -> web.HTTPException:
    if isinstance(exc, ValidationError):
        detail = [{"loc": ".".join(str(p) for p in e["loc"]), "msg": e["msg"]}
                  for e in exc.errors()]
        return problem(422, "invalid connection config", detail=detail)
    return problem(422, str(exc))


def _store(request) -> ConnectionStore:
    return request.app[CONNECTIONS]


def _admin(request) -> bool:
    return request[TOKEN].allows("admin")


def _get(request) -> str:
    cid = request.match_info["id"]
    if cid not in _store(request).items:
        raise problem(404, f"no connection {cid!r}")
    return cid


@api("GET", "/api/v1/connections", scope="read", all_apps=True)
async def list_connections(request: web.Request) -> web.Response:
    store = _store(request)
    full = _admin(request)
    return web.json_response({"connections": [store.view(c, full) for c in store.items]})


@api("POST", "/api/v1/connections", scope="admin", all_apps=True)
async def create_connection(request: web.Request) -> web.Response:
    body = await json_object(request)
    kind, config = body.get("kind"), body.get("config", {})
    if not isinstance(config, dict):
        raise problem(400, "config must be an object")
    if not isinstance(kind, str):
        raise problem(422, f"kind must be one of {sorted(_store(request).kinds)}")
    try:
        item = _store(request).create(kind, config)
    except (ValidationError, ValueError) as exc:
        raise _body_error(exc) from None
    return web.json_response(item, status=201,
                             headers={"Location": f"/api/v1/connections/{item['id']}"})


@api("GET", "/api/v1/connections/{id}", scope="read", all_apps=True)
async def show_connection(request: web.Request) -> web.Response:
    return web.json_response(_store(request).view(_get(request), _admin(request)))


@api("PUT", "/api/v1/connections/{id}", scope="admin", all_apps=True)
async def update_connection(request: web.Request) -> web.Response:
    cid = _get(request)
    body = await json_object(request)
    config = body.get("config")
    if not isinstance(config, dict):
        raise problem(400, "config must be an object")
    if "kind" in body and body["kind"] != _store(request).items[cid]["kind"]:
        raise problem(422, "the kind of a connection cannot change")
    try:
        item = await _store(request).update(cid, config)
    except (ValidationError, ValueError) as exc:
        raise _body_error(exc) from None
    return web.json_response(item)


@api("DELETE", "/api/v1/connections/{id}", scope="admin", all_apps=True)
async def delete_connection(request: web.Request) -> web.Response:
    await _store(request).delete(_get(request))
    return web.Response(status=204)
