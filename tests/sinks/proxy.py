"""A loopback HTTP proxy in front of a real InfluxDB that records each /write
(headers, decoded lines, upstream status) and can fail on purpose: answer a
status (503, 429, ...) for the next requests, cut connections, or hold every
request until released (a slow server)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp
from aiohttp import web

_HOP = {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "content-encoding"}


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    query: dict[str, str]
    body: bytes  # decoded (aiohttp's server undoes Content-Encoding)
    wire_length: int  # Content-Length as sent
    lines: list[str]
    status: int | None  # upstream answer; None when the proxy failed it


class WriteProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.seen: list[Seen] = []
        self.fail_status: int | None = None
        self.fail_count = 0  # how many requests to fail with fail_status
        self.fail_headers: dict[str, str] = {}
        self.fail_path: str | None = None  # fail only requests to this path (None: any)
        self.cut = False  # close connections without answering
        self.hold: asyncio.Event | None = None  # when given, requests wait until it is set (a slow server)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.url = ""

    async def __aenter__(self) -> WriteProxy:
        app = web.Application(client_max_size=64 << 20)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        self._session = aiohttp.ClientSession(auto_decompress=False)
        return self

    async def __aexit__(self, *exc) -> None:
        assert self._runner is not None and self._session is not None
        await self._runner.cleanup()
        await self._session.close()

    def fail(self, status: int, count: int, headers: dict[str, str] | None = None,
             path: str | None = None) -> None:
        self.fail_status, self.fail_count, self.fail_headers = status, count, headers or {}
        self.fail_path = path

    @property
    def failed(self) -> list[Seen]:
        """Requests the proxy answered itself (injected failures)."""
        return [s for s in self.seen if s.status is None]

    @property
    def delivered(self) -> list[list[str]]:
        """Line lists of the /write requests InfluxDB accepted, in answer order."""
        return [s.lines for s in self.seen if s.path == "/write" and s.status == 204 and s.lines]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()  # already gunzipped by aiohttp
        lines = [line for line in body.decode().split("\n") if line]
        wire = int(request.headers.get("Content-Length", len(body)))
        seen = Seen(request.path, dict(request.headers), dict(request.query), body, wire, lines, None)
        self.seen.append(seen)
        if self.hold is not None:
            await self.hold.wait()
        if self.cut:
            assert request.transport is not None
            request.transport.abort()
            return web.Response(status=502)
        if (self.fail_count > 0 and self.fail_status is not None
                and self.fail_path in (None, request.path)):
            self.fail_count -= 1
            return web.json_response({"error": "injected by the test proxy"}, status=self.fail_status,
                                     headers=self.fail_headers)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        assert self._session is not None
        try:
            async with self._session.request(
                request.method, self.upstream + request.path_qs, data=body, headers=headers
            ) as resp:
                data = await resp.read()
                seen.status = resp.status
                # the body is passed on as it came (still gzipped): keep its encoding
                out = {k: v for k, v in resp.headers.items()
                       if k.lower() not in _HOP or k.lower() == "content-encoding"}
                return web.Response(status=resp.status, body=data, headers=out)
        except (TimeoutError, aiohttp.ClientError, OSError):
            # upstream down: behave as the server itself would, cut the connection
            assert request.transport is not None
            request.transport.abort()
            return web.Response(status=502)
