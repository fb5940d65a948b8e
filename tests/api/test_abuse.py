"""Abuse at a running API (issue 12, item 11): random and mutated bodies,
headers, paths and request bytes from a few clients at once, for a bounded
time, against the service in a process of its own.

What must hold throughout: no answer is a 500 (a handler that failed), the
service logs no traceback, ``/healthz`` answers within 1 s on a fresh
connection, the peak RSS stays under ``RSS_BOUND``, and a good upload still
gets its figures at the end.

Runs ``LIVEPROF_ABUSE_SECONDS`` (default 15) with seed ``LIVEPROF_ABUSE_SEED``
(default: random, printed).  A longer campaign by hand:

    LIVEPROF_ABUSE_SECONDS=1800 python -m pytest -q -s tests/api/test_abuse.py

prints the inputs tried, by kind, the failures found and the peak RSS.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import zlib
from collections import Counter

import aiohttp

from tests.api.conftest import ADMIN
from tests.api.process import served
from tests.corpus import DATA

SECONDS = float(os.environ.get("LIVEPROF_ABUSE_SECONDS", "15"))
SEED = int(os.environ.get("LIVEPROF_ABUSE_SEED", str(random.randrange(1 << 32))))
WORKERS = 4
RSS_BOUND = 400 << 20
LOGS = [(DATA / "parallelTest.eventlog").read_bytes(),
        (DATA / "threads-mvar.nonthreaded.l.eventlog").read_bytes()[:120_000]]
ROUTES = ["/healthz", "/readyz", "/metrics", "/api/v1/openapi.json", "/api/v1/upload",
          "/api/v1/uploads", "/api/v1/uploads/0123456789abcdef", "/api/v1/sessions",
          "/api/v1/sessions/x", "/api/v1/connections", "/api/v1/connections/x",
          "/api/v1/tokens", "/api/v1/tokens/x"]
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE", "BREW", ""]


def mutate(rng: random.Random, data: bytes) -> bytes:
    """A few random edits of ``data``: flips, inserts, deletions, copies, cuts."""
    b = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        op = rng.randrange(6)
        i = rng.randrange(len(b) + 1)
        if op == 0 and b:
            b[min(i, len(b) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1:
            b[i:i] = rng.randbytes(rng.randint(1, 64))
        elif op == 2:
            del b[i:i + rng.randint(1, 4096)]
        elif op == 3:
            j = rng.randrange(len(b) + 1)
            b[i:i] = b[j:j + rng.randint(1, 8192)]
        elif op == 4:
            del b[i:]
        else:
            b[i:i] = bytes(rng.choice([2, 4, 8])) + b"\xff\xff" * rng.randint(1, 8)
    return bytes(b)


def encode(rng: random.Random, body: bytes) -> tuple[bytes, dict]:
    """The body as sent and its Content-Encoding header (sometimes a lie)."""
    kind = rng.choice(["plain", "plain", "gzip", "deflate", "gzip-cut", "gzip-lie", "odd"])
    if kind == "plain":
        return body, {}
    if kind in ("gzip", "gzip-cut"):
        z = zlib.compressobj(6, zlib.DEFLATED, 31)
        packed = z.compress(body) + z.flush()
        if kind == "gzip-cut":
            packed = packed[:rng.randrange(len(packed) + 1)]
        return packed, {"Content-Encoding": "gzip"}
    if kind == "deflate":
        return zlib.compress(body), {"Content-Encoding": "deflate"}
    if kind == "gzip-lie":
        return body, {"Content-Encoding": "gzip"}
    return body, {"Content-Encoding": rng.choice(["br", "zstd", "gzip, deflate", "x" * 300,
                                                  "identity", "GZIP", ""])}


def raw_request(rng: random.Random, port: int) -> bytes:
    """A request of random shape, often broken."""
    method = rng.choice(METHODS)
    path = rng.choice(ROUTES)
    path = rng.choice([path, path + "/../" * rng.randint(1, 5), path + "%00", path + "?" +
                       "a=" * rng.randint(1, 2000), "/" + "x" * rng.randint(1, 20000), "*",
                       path.replace("/", "//"), path + "/\u00e9".encode().decode("latin-1")])
    version = rng.choice(["HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/1.1x", ""])
    headers = [f"Host: 127.0.0.1:{port}"]
    if rng.random() < 0.7:
        headers.append(f"Authorization: Bearer {rng.choice([ADMIN, 'lp_x_y', 'x' * 5000])}")
    for _ in range(rng.randint(0, 6)):
        headers.append(rng.choice([
            f"Content-Length: {rng.choice([-1, 0, 5, 1 << 40, 'abc', '1, 2'])}",
            "Transfer-Encoding: chunked", "Transfer-Encoding: gzip, chunked",
            f"X-{rng.randint(0, 9)}: {'v' * rng.randint(0, 9000)}",
            "Content-Encoding: gzip", "Expect: 100-continue", "Connection: upgrade",
            "Upgrade: websocket", "bad header line", "\x00: \x01",
        ]))
    body = rng.choice([b"", rng.randbytes(rng.randint(0, 3000)), b"5\r\nhello\r\n0\r\n\r\n",
                       b"zz\r\n", mutate(rng, LOGS[0])[:5000]])
    head = f"{method} {path} {version}\r\n" + "\r\n".join(headers) + "\r\n\r\n"
    return head.encode("latin-1", "replace") + body


class Campaign:
    def __init__(self, srv, rng_seed: int):
        self.srv = srv
        self.seed = rng_seed
        self.tried: Counter = Counter()
        self.statuses: Counter = Counter()
        self.failures: list[str] = []

    def answered(self, kind: str, status: int | None, what) -> None:
        self.tried[kind] += 1
        self.statuses[status] += 1
        if status is not None and status >= 500 and status not in (503, 504):
            self.failures.append(f"{kind}: {status} for {what!r:.300}")

    async def raw(self, rng: random.Random) -> None:
        data = raw_request(rng, self.srv.port)
        status = None
        try:
            reader, writer = await asyncio.open_connection(self.srv.host, self.srv.port)
            try:
                writer.write(data)
                if rng.random() < 0.5:
                    writer.write_eof()
                line = await asyncio.wait_for(reader.readline(), 10)
                if line.startswith(b"HTTP/"):
                    status = int(line.split()[1])
            finally:
                writer.close()
        except (ConnectionError, TimeoutError, ValueError, IndexError):
            pass
        self.answered("raw", status, data[:200])

    async def upload(self, rng: random.Random, http: aiohttp.ClientSession) -> None:
        body, headers = encode(rng, mutate(rng, rng.choice(LOGS)))
        headers["Authorization"] = f"Bearer {ADMIN}"
        params = rng.choice([{}, {"app": "abuse"}, {"app": "a" * 3000}, {"host": "\u2603"}])
        async with http.post(self.srv.url + "/api/v1/upload", data=body, headers=headers,
                             params=params) as r:
            await r.read()
            self.answered("upload", r.status, headers)

    async def resumable(self, rng: random.Random, http: aiohttp.ClientSession) -> None:
        auth = {"Authorization": f"Bearer {ADMIN}"}
        async with http.post(self.srv.url + "/api/v1/uploads", headers=auth) as r:
            self.answered("resumable", r.status, "create")
            if r.status != 201:
                return
            where = f"{self.srv.url}/api/v1/uploads/{(await r.json())['id']}"
        data = mutate(rng, rng.choice(LOGS))
        offset = 0
        for _ in range(rng.randint(0, 4)):
            size = rng.randint(0, len(data))
            at = rng.choice([offset, offset, rng.randint(-5, len(data) * 2)])
            body, headers = encode(rng, data[offset:offset + size])
            async with http.put(where, params={"offset": str(at)}, data=body,
                                headers={**auth, **headers}) as r:
                answer = await r.json(content_type=None)
                self.answered("resumable", r.status, (at, headers))
                if isinstance(answer, dict) and isinstance(answer.get("offset"), int):
                    offset = answer["offset"]
        method = rng.choice(["POST", "DELETE", "GET"])
        async with http.request(method, where + ("/finish" if method == "POST" else ""),
                                headers=auth) as r:
            await r.read()
            self.answered("resumable", r.status, method)

    async def json_call(self, rng: random.Random, http: aiohttp.ClientSession) -> None:
        route = rng.choice(ROUTES)
        method = rng.choice(["GET", "POST", "PUT", "DELETE"])
        token = rng.choice([ADMIN, "lp_" + "a" * rng.randint(0, 40), "", "Bearer"])
        body = rng.choice([b"{}", b"[]", b"null", b"{\"name\": 1}", rng.randbytes(200),
                           b"{\"name\": \"n\", \"scopes\": [\"read\"], \"apps\": [\"\"]}",
                           b"{\"kind\": \"monitor\", \"config\": {\"port\": -1}}",
                           b"[" * 5000 + b"]" * 5000, b"\"" + b"\\u0000" * 1000 + b"\""])
        if route.startswith("/api/v1/connections") and method in ("POST", "PUT"):
            token = "lp_nope_nope"       # never make the service dial what chance says
        async with http.request(method, self.srv.url + route, data=body,
                                headers={"Authorization": f"Bearer {token}",
                                         "Content-Type": "application/json"}) as r:
            await r.read()
            self.answered("json", r.status, (method, route, body[:80]))

    async def worker(self, n: int, until: float) -> None:
        rng = random.Random(self.seed * 31 + n)
        timeout = aiohttp.ClientTimeout(total=20)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while time.monotonic() < until:
                attack = rng.choice([self.raw, self.upload, self.resumable, self.json_call])
                try:
                    if attack == self.raw:
                        await attack(rng)
                    else:
                        await attack(rng, http)
                except (aiohttp.ClientError, ConnectionError, TimeoutError, ValueError) as exc:
                    self.tried["cut"] += 1         # the server may close on bad input
                    self.statuses[type(exc).__name__] += 1


async def test_random_and_mutated_requests_leave_the_api_up_and_bounded(
        influxd, influx_database, tmp_path):
    async with served(influxd, influx_database, tmp_path, header_timeout=2.0,
                      upload_rate_window=2.0, upload_min_rate=512) as srv:
        campaign = Campaign(srv, SEED)
        healthy: list[bool] = []
        until = time.monotonic() + SECONDS

        async def watch():
            while time.monotonic() < until:
                healthy.append(await srv.healthy(timeout=1.0))
                await asyncio.sleep(0.5)
        await asyncio.gather(watch(), *(campaign.worker(n, until) for n in range(WORKERS)))
        peak = srv.peak()
        alive = await srv.healthy(timeout=5.0)
        good, good_status = None, None
        try:
            async with aiohttp.ClientSession(headers=srv.auth) as http:
                async with http.post(srv.url + "/api/v1/upload", data=LOGS[0]) as r:
                    good = await r.json()
                    good_status = r.status
        except aiohttp.ClientError as exc:
            good = f"{exc!r}; alive: {alive}; log: " + "\n".join(srv.log[-40:])
        tracebacks = [line for line in srv.log if "Traceback" in line or "Unhandled" in line]
        log_lines = len(srv.log)
        (tmp_path / "server.log").write_text("\n".join(srv.log))
    tried = sum(campaign.tried.values())
    print(f"\nabuse seed {SEED}: {tried} inputs in {SECONDS:g} s ({dict(campaign.tried)}); "
          f"statuses {dict(campaign.statuses)}; {len(campaign.failures)} failures; "
          f"/healthz {sum(healthy)}/{len(healthy)}; peak RSS {peak >> 20} MiB; "
          f"{log_lines} log lines")
    assert tried > 50
    assert not campaign.failures, campaign.failures[:20]
    assert not tracebacks, (tmp_path / "server.log", tracebacks[:20])
    assert healthy and all(healthy), healthy
    assert peak < RSS_BOUND
    assert good_status == 201 and good["complete"], good
