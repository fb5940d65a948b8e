"""Uploads: an eventlog body decoded and ingested as it arrives.

One-shot: ``POST /api/v1/upload`` streams the whole log in one request body.
Resumable: ``POST /api/v1/uploads`` opens a session, ``PUT
/api/v1/uploads/{id}?offset=N`` appends the next bytes (N must be the bytes
received so far, which ``GET /api/v1/uploads/{id}`` tells), ``POST
/api/v1/uploads/{id}/finish`` ends it.  The stream stays open between
chunks; bytes are fed to the decoder as they come, so a chunk cut short by a
lost connection still counts up to where it stopped, and the client resumes
from the offset the server reports.

Nothing is held whole: the body is read with ``iter_chunked`` (never
``read()``), each chunk goes to the upload's stream (a source like any other:
``ingest.sources.http_upload``, opened through the service facade), and the
reader waits (back-pressure on the client's TCP connection) while the
store's memory backlog is above ``sink_backlog_bytes``.  Bodies are
read (and gzip inflated) within bounds of time and memory by ``body.py``.
An upload that is over (finished, failed, cancelled) leaves ``open`` at
once, with its stream, decoder and derivers; only its figures stay, in a
short list (``done``), for a client asking again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web

from ingest.facade import ServiceFacade, ServiceNotReady

from .auth import Token, problem
from .body import BodyRefused, body_pieces
from .config import ApiConfig
from .logs import LIMITED
from .state import ApiCounters

if TYPE_CHECKING:
    from ingest.facade import StreamRecord, UploadStream

log = logging.getLogger("liveprof.api.upload")

KEEP_DONE = 256          # figures of uploads that are over, kept for clients asking again


@dataclass
class Upload:
    id: str
    token: str                      # id of the token that opened it
    app: str | None
    host: str | None
    stream: UploadStream
    resumable: bool
    created: float = field(default_factory=time.time)
    touched: float = field(default_factory=time.time)
    offset: int = 0                 # bytes received and decoded
    state: str = "open"             # open | finished | failed | cancelled
    error: str | None = None
    error_offset: int | None = None
    complete: bool | None = None
    stored: bool | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def record(self) -> StreamRecord:
        return self.stream.record

    def as_dict(self) -> dict:
        rec = self.record
        return {"id": self.id, "state": self.state, "offset": self.offset,
                "session": rec.tags.get("session"), "app": rec.tags.get("app", self.app),
                "host": rec.tags.get("host", self.host), "bytes": rec.bytes,
                "events": rec.events, "points": rec.points, "complete": self.complete,
                "error": self.error, "error_offset": self.error_offset, "stored": self.stored,
                "receiving": self.lock.locked(),
                "created": self.created, "touched": self.touched}


@dataclass
class Done:
    """What is left of a resumable upload once it is over: its figures."""

    id: str
    app: str | None
    state: str
    offset: int
    error: str | None
    error_offset: int | None
    figures: dict
    resumable: bool = True

    @classmethod
    def of(cls, up: Upload) -> Done:
        return cls(up.id, up.app, up.state, up.offset, up.error, up.error_offset, up.as_dict())

    def as_dict(self) -> dict:
        return {**self.figures, "receiving": False}


class Uploads:
    """Uploads in progress and the limits on them."""

    def __init__(self, service: ServiceFacade, config: ApiConfig, counters: ApiCounters):
        self.service = service
        self.config = config
        self.counters = counters
        self.receiving = 0                  # bodies being read now
        self.open: dict[str, Upload] = {}   # resumable ones not yet over, by id
        self.done: OrderedDict[str, Done] = OrderedDict()   # the last KEEP_DONE over
        self._reaper: asyncio.Task | None = None

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        self._reaper = asyncio.create_task(self._reap(), name="api:upload-reaper")

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            await asyncio.gather(self._reaper, return_exceptions=True)
        for up in list(self.open.values()):
            if up.state == "open":
                self._end(up, "service stopped", state="cancelled")
        self.open.clear()
        self.done.clear()

    async def _reap(self) -> None:
        while True:
            await asyncio.sleep(min(60.0, self.config.resumable_idle_timeout / 4))
            now = time.time()
            for up in list(self.open.values()):
                if now - up.touched < self.config.resumable_idle_timeout or up.lock.locked():
                    continue
                self.counters.uploads["abandoned"] += 1
                self._end(up, "resumable upload abandoned", state="cancelled")

    # -- opening ----------------------------------------------------------------------

    def begin(self, request: web.Request, token: Token, resumable: bool) -> Upload:
        app = request.query.get("app") or None
        host = request.query.get("host") or None
        if token.apps is not None:     # restricted
            if app is None and len(token.apps) == 1:
                app = token.apps[0]
            if app is None:
                raise problem(403, "this token is limited to some apps: say which with ?app=")
            if app not in token.apps:
                raise problem(403, f"this token may not use app {app!r}")
        if resumable and len(self.open) >= self.config.max_open_uploads:
            self.counters.refused["open_uploads"] += 1
            raise problem(429, "too many resumable uploads open", retry_after=5)
        try:
            stream = self.service.open_upload(request.remote or "-", app, host)
        except ServiceNotReady as exc:
            raise problem(503, str(exc)) from None
        up = Upload(secrets.token_hex(8), token.id, app, host, stream, resumable)
        if resumable:
            self.open[up.id] = up
        return up

    def get(self, upload_id: str, token: Token) -> Upload | Done:
        up = self.open.get(upload_id) or self.done.get(upload_id)
        if up is None:
            raise problem(404, f"no upload {upload_id!r}")
        if not token.sees(up.app):
            raise problem(403, f"this token may not use app {up.app!r}")
        return up

    # -- bodies -----------------------------------------------------------------------

    @contextlib.contextmanager
    def slot(self):
        if self.receiving >= self.config.max_concurrent_uploads:
            self.counters.refused["concurrent_uploads"] += 1
            raise problem(429, "too many uploads in progress", retry_after=1)
        self.receiving += 1
        try:
            yield
        finally:
            self.receiving -= 1

    async def receive(self, up: Upload, request: web.Request) -> None:
        """Feed the request body to the upload's stream.  Raises the HTTP
        error to answer with (413, 408, 422) after ending the stream where
        the error makes the session unusable; a client gone mid-body is
        ``lost``."""
        try:
            await self._receive(up, request)
        except web.HTTPException:
            raise
        except BaseException as exc:
            self.lost(up, exc)
            raise

    async def _receive(self, up: Upload, request: web.Request) -> None:
        cfg = self.config
        length = request.content_length
        if length is not None and up.offset + length > cfg.max_upload_bytes:
            self._too_large(up)
        try:
            async for chunk in body_pieces(request, cfg):
                up.touched = time.time()
                room = cfg.max_upload_bytes - up.offset
                if len(chunk) > room:
                    self._feed(up, chunk[:room])
                    self._too_large(up)
                self._feed(up, chunk)
                if up.stream.failed:
                    self._decode_failed(up)
                await self._pace()
        except BodyRefused as exc:
            self._refused(up, exc)

    def _feed(self, up: Upload, chunk: bytes) -> None:
        if not chunk:
            return
        up.stream.feed(chunk)
        up.offset += len(chunk)
        self.counters.upload_bytes += len(chunk)

    async def _pace(self) -> None:
        """Let the store catch up: wait while its memory backlog is over the
        bound (at most the idle timeout per chunk; past that the store's own
        bounds, spool or drop, apply)."""
        await asyncio.sleep(0)
        await self.service.wait_for_room(self.config.sink_backlog_bytes,
                                         self.config.upload_idle_timeout)

    # -- endings ----------------------------------------------------------------------

    def _end(self, up: Upload, error: str | None, state: str) -> None:
        if up.state == "open":
            up.state = state
            up.error = up.error or error
            up.stream.abort(error)
            up.touched = time.time()
        if self.open.pop(up.id, None) is not None:
            # over: the stream, decoder and derivers go; the figures stay a while
            self.done[up.id] = Done.of(up)
            while len(self.done) > KEEP_DONE:
                self.done.popitem(last=False)

    def _too_large(self, up: Upload):
        msg = f"upload larger than {self.config.max_upload_bytes} bytes"
        self._end(up, msg, "failed")
        up.error_offset = up.offset
        self.counters.uploads["too_large"] += 1
        raise problem(413, msg, offset=up.offset, **self._figures(up))

    def _refused(self, up: Upload, exc: BodyRefused):
        """A body past a bound of time, rate or inflating (``body.py``): a
        one-shot upload ends there; a resumable one waits for the rest,
        unless its body was a bomb (413)."""
        if not up.resumable or exc.status == 413:
            self._end(up, exc.message, "failed")
            up.error_offset = up.offset
        self.counters.uploads[exc.outcome] += 1
        LIMITED.warning(("upload", exc.outcome), "upload %s from %s refused (%d): %s", up.id,
                        up.record.info.peer, exc.status, exc.message)
        raise problem(exc.status, exc.message, offset=up.offset, **self._figures(up))

    def _decode_failed(self, up: Upload):
        end = up.stream.finish()
        up.error = end.error or "not a valid eventlog"
        self._end(up, up.error, "failed")
        up.error_offset = up.stream.error_offset
        up.complete = False
        self.counters.uploads["invalid"] += 1
        raise problem(422, up.error or "not a valid eventlog", offset=up.error_offset, **self._figures(up))

    def lost(self, up: Upload, exc: BaseException) -> None:
        """The client went away mid-body: a one-shot upload ends there, a
        resumable one waits for the rest."""
        if not up.resumable:
            self._end(up, f"upload interrupted at byte {up.offset}: "
                          f"{type(exc).__name__}", "failed")
            self.counters.uploads["interrupted"] += 1

    async def finish(self, up: Upload | Done) -> web.Response:
        """End the stream; 201 with the session's figures, or 422 when the
        log was cut inside a record (its events before the cut are kept).
        Asked again (the client lost the answer), the same answer."""
        if isinstance(up, Upload) and up.state == "open":
            end = up.stream.finish()
            up.complete = end.complete
            error = None
            if end.reason in ("header", "event"):   # cut inside a record
                error = end.error
                up.error_offset = end.offset
            self._end(up, error, "failed" if error else "finished")
            up.stored = await self.service.settle(up.record.tags.get("session"),
                                                  min(10.0, self.config.request_timeout))
            if up.id in self.done:
                self.done[up.id] = Done.of(up)
            self.counters.uploads["truncated" if error else "ok"] += 1
        elif up.state == "cancelled":
            raise problem(409, f"upload is {up.state}", **self._figures(up))
        body = self._figures(up)
        if up.state == "failed":
            raise problem(422, up.error or "upload failed", offset=up.error_offset, **body)
        return web.json_response(body, status=201)

    async def cancel(self, up: Upload | Done) -> None:
        if isinstance(up, Done):
            raise problem(409, f"upload is {up.state}", offset=up.offset)
        self.counters.uploads["cancelled"] += 1
        self._end(up, "upload cancelled", "cancelled")
        self.done.pop(up.id, None)

    def _figures(self, up: Upload | Done) -> dict:
        d = up.as_dict()
        return {k: d[k] for k in ("id", "session", "app", "host", "bytes", "events", "points",
                                  "complete", "stored", "state")}
