"""Slow clients cannot lock others out (issue 12, item 5): real sockets
against a service in a process of its own.

- Four uploads dribbling one byte at a time hold every upload slot (a fifth
  gets 429) until the minimum rate cuts them (408); then a normal upload
  succeeds.
- A thousand half-sent requests, under a low file limit, are closed (the
  oldest first past the connection cap, the rest after the header timeout);
  ``/healthz`` answers within 1 s on a fresh connection throughout, and the
  service's log grows by a bounded number of lines.
"""

from __future__ import annotations

import asyncio
import re
import time

import aiohttp

from tests.api.conftest import ADMIN
from tests.api.process import served
from tests.corpus import DATA

LOG = DATA / "threads-mvar.nonthreaded.l.eventlog"
HALF_SENT = 1000
LOG_LINES_BOUND = 60     # lines the service may log about the whole attack


async def dribble(host: str, port: int, data: bytes, every: float) -> bytes:
    """A one-shot upload sending one byte per ``every`` seconds until the
    server answers; returns the answer's bytes."""
    reader, writer = await asyncio.open_connection(host, port)
    head = (f"POST /api/v1/upload HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {ADMIN}\r\n"
            f"Content-Length: {len(data)}\r\nContent-Type: application/octet-stream\r\n\r\n")
    writer.write(head.encode())
    answer = b""
    try:
        for i in range(len(data)):
            writer.write(data[i:i + 1])
            try:
                answer = await asyncio.wait_for(reader.read(65536), every)
            except TimeoutError:
                continue
            break
        while chunk := await asyncio.wait_for(reader.read(65536), 30):
            answer += chunk
            if b"}" in answer:
                break
    except (ConnectionError, TimeoutError):
        pass
    finally:
        writer.close()
    return answer


async def test_dribbling_uploads_are_cut_and_a_normal_one_then_succeeds(
        influxd, influx_database, tmp_path):
    data = LOG.read_bytes()
    async with served(influxd, influx_database, tmp_path, max_concurrent_uploads=4,
                      upload_min_rate=2000, upload_rate_window=2.0) as srv, \
            aiohttp.ClientSession(headers=srv.auth) as http:
        slow = [asyncio.create_task(dribble(srv.host, srv.port, data, 0.3)) for _ in range(4)]

        async def receiving() -> int:
            async with http.get(srv.url + "/metrics") as r:
                text = await r.text()
            return int(float(re.search(r"^liveprof_uploads_receiving (\S+)$", text, re.M)[1]))
        while await receiving() < 4:  # noqa: ASYNC110 /metrics over HTTP: nothing to await
            await asyncio.sleep(0.05)
        async with http.post(srv.url + "/api/v1/upload", data=data) as r:
            assert r.status == 429       # every slot held by the dribblers
        healthy = []
        while not all(t.done() for t in slow):
            healthy.append(await srv.healthy())
            await asyncio.sleep(0.2)
        answers = [t.result() for t in slow]
        for answer in answers:
            assert answer.startswith(b"HTTP/1.1 408"), answer[:300]
            assert b"slower than 2000 bytes/s" in answer, answer
        async with http.post(srv.url + "/api/v1/upload", data=data) as r:
            body = await r.json()
            assert r.status == 201 and body["complete"], body
        assert healthy and all(healthy)


async def half_sent(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"POST /api/v1/upload HTTP/1.1\r\nHost: x\r\nContent-Le")
    return reader, writer


async def closed_by_server(reader: asyncio.StreamReader) -> bool:
    """True once the server closes the connection (EOF or reset)."""
    try:
        while await reader.read(65536):
            pass
    except ConnectionError:
        pass
    return True


async def test_half_sent_requests_are_closed_and_health_answers_throughout(
        influxd, influx_database, tmp_path):
    async with served(influxd, influx_database, tmp_path, nofile=256,
                      header_timeout=3.0) as srv:
        await asyncio.sleep(0.5)
        lines_before = len(srv.log)
        healthy: list[bool] = []
        stop = asyncio.Event()

        async def watch():
            while not stop.is_set():
                healthy.append(await srv.healthy(timeout=1.0))
                await asyncio.sleep(0.2)
        watcher = asyncio.create_task(watch())
        conns = []
        for _ in range(0, HALF_SENT, 100):
            conns += await asyncio.gather(*(half_sent(srv.host, srv.port) for _ in range(100)))
        started = time.monotonic()
        closed = await asyncio.wait_for(
            asyncio.gather(*(closed_by_server(r) for r, _ in conns)), 60)
        print(f"\n{HALF_SENT} half-sent requests all closed {time.monotonic() - started:.1f} s "
              f"after the last was opened; /healthz answered {sum(healthy)} of {len(healthy)}; "
              f"{len(srv.log) - lines_before} log lines")
        # and a request that is never even begun is closed too
        r, w = await asyncio.open_connection(srv.host, srv.port)
        assert await asyncio.wait_for(closed_by_server(r), 30)
        stop.set()
        await watcher
        for _, writer in conns:
            writer.close()
        w.close()
        async with aiohttp.ClientSession(headers=srv.auth) as http:
            async with http.get(srv.url + "/metrics") as resp:
                text = await resp.text()
        new_lines = srv.log[lines_before:]
    assert all(closed) and len(closed) == HALF_SENT
    assert healthy and all(healthy), healthy
    evicted = float(re.search(r'^liveprof_http_connections_closed_total\{reason="evicted"\} (\S+)$',
                              text, re.M)[1])
    assert evicted > 0        # the cap (half the file limit) was reached and held
    assert len(new_lines) < LOG_LINES_BOUND, "\n".join(new_lines[-80:])
