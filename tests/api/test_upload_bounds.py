"""Uploads stay bounded in memory (issue 12, item 4), against a service in a
process of its own whose memory the tests read from /proc.

- A gzip bomb (a real log, then a gigabyte of zeros after its end marker,
  2 MB compressed) is refused with 413 once it expands past the ratio; the
  log's events are kept; the server's peak RSS grows by less than
  ``BOMB_GROWTH`` (it reached 2.1 GB before).
- Honest gzip and deflate bodies upload to the same figures as the plain
  log; an encoding that cannot be bounded is refused with 415.
- Resumable uploads created and finished over and over leave nothing open
  (``liveprof_uploads_open`` is 0) and the RSS flat (within ``CYCLE_GROWTH``;
  it grew 1.5 GB over 3,000 cycles before).
"""

from __future__ import annotations

import re
import zlib

import aiohttp

from tests.api.process import served
from tests.corpus import DATA

LOG = DATA / "threads-mvar.nonthreaded.l.eventlog"
BOMB_ZEROS = 1 << 30
BOMB_GROWTH = 128 << 20
CYCLES = 1500
CYCLE_GROWTH = 32 << 20


def gzip_bomb(head: bytes, zeros: int) -> bytes:
    """gzip of ``head`` and then ``zeros`` zero bytes, made piecewise."""
    z = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [z.compress(head)]
    block = bytes(1 << 24)
    for _ in range(zeros // len(block)):
        parts.append(z.compress(block))
    parts.append(z.flush())
    return b"".join(parts)


def compress(data: bytes, wbits: int) -> bytes:
    z = zlib.compressobj(6, zlib.DEFLATED, wbits)
    return z.compress(data) + z.flush()


def metric(text: str, name: str) -> float:
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert m, name
    return float(m.group(1))


async def test_a_gzip_bomb_is_refused_with_bounded_memory(influxd, influx_database, tmp_path):
    data = LOG.read_bytes()
    bomb = gzip_bomb(data, BOMB_ZEROS)
    assert len(bomb) < 3 << 20
    async with served(influxd, influx_database, tmp_path) as srv, \
            aiohttp.ClientSession(headers=srv.auth) as http:
        # warm up: imports and a first stream, so the baseline is the steady state
        async with http.post(srv.url + "/api/v1/upload", data=data) as r:
            plain = await r.json()
            assert r.status == 201, plain
        before = srv.rss()
        async with http.post(srv.url + "/api/v1/upload", data=bomb,
                             headers={"Content-Encoding": "gzip"}) as r:
            body = await r.json()
        peak = srv.peak()
        print(f"\ngzip bomb: {len(bomb)} bytes -> {BOMB_ZEROS + len(data)} bytes inflated; "
              f"refused at {body.get('bytes')} bytes; server RSS before {before >> 20} MiB, "
              f"peak {peak >> 20} MiB")
        assert r.status == 413, body
        assert "expands more than" in body["error"] and "gzip" in body["error"]
        assert body["events"] == plain["events"]        # the log before the zeros is kept
        assert body["bytes"] < 64 * len(bomb)
        assert peak - before < BOMB_GROWTH
        assert await srv.healthy()


async def test_gzip_and_deflate_bodies_equal_the_plain_log_and_others_are_refused(
        influxd, influx_database, tmp_path):
    data = LOG.read_bytes()
    async with served(influxd, influx_database, tmp_path) as srv, \
            aiohttp.ClientSession(headers=srv.auth) as http:
        async def up(body: bytes, **headers):
            async with http.post(srv.url + "/api/v1/upload", data=body, headers=headers) as r:
                return r.status, await r.json()
        status, plain = await up(data)
        assert status == 201, plain
        for coding, wbits in (("gzip", 16 + zlib.MAX_WBITS), ("deflate", zlib.MAX_WBITS)):
            status, got = await up(compress(data, wbits), **{"Content-Encoding": coding})
            assert status == 201, (coding, got)
            assert (got["bytes"], got["events"], got["points"], got["complete"]) == \
                (plain["bytes"], plain["events"], plain["points"], True), coding
        # two gzip members in a row are one body (RFC 1952)
        half = len(data) // 2
        status, got = await up(compress(data[:half], 31) + compress(data[half:], 31),
                               **{"Content-Encoding": "gzip"})
        assert status == 201 and got["events"] == plain["events"], got
        for coding in ("br", "zstd", "gzip, gzip", "compress"):
            status, got = await up(compress(data, 31), **{"Content-Encoding": coding})
            assert status == 415 and "Content-Encoding" in got["error"], (coding, got)
        # a gzip stream cut short, or not gzip at all, names what is wrong
        status, got = await up(compress(data, 31)[:5000], **{"Content-Encoding": "gzip"})
        assert status == 400 and "ends inside" in got["error"], got
        status, got = await up(data, **{"Content-Encoding": "gzip"})
        assert status == 400 and "corrupt" in got["error"], got
        assert await srv.healthy()


async def test_resumable_cycles_leave_nothing_open_and_memory_flat(
        influxd, influx_database, tmp_path):
    data = (DATA / "parallelTest.eventlog").read_bytes()
    async with served(influxd, influx_database, tmp_path) as srv, \
            aiohttp.ClientSession(headers=srv.auth) as http:
        async def cycle(with_data: bool):
            async with http.post(srv.url + "/api/v1/uploads") as r:
                up = await r.json()
                assert r.status == 201, up
            where = f"{srv.url}/api/v1/uploads/{up['id']}"
            if with_data:
                async with http.put(where, params={"offset": "0"}, data=data) as r:
                    assert r.status == 200, await r.text()
            async with http.post(where + "/finish") as r:
                done = await r.json()
                # nothing sent: not even a header, refused as cut inside it
                assert r.status == (201 if with_data else 422), done
            return done

        async def rounds(n: int):
            for i in range(n):
                await cycle(with_data=i % 50 == 0)
        await rounds(200)
        before = srv.rss()
        await rounds(CYCLES)
        after = srv.rss()
        async with http.get(srv.url + "/metrics") as r:
            text = await r.text()
        # asked again after it is over, a finished upload answers the same
        done = await cycle(with_data=True)
        async with http.post(f"{srv.url}/api/v1/uploads/{done['id']}/finish") as r:
            again = await r.json()
            assert r.status == 201 and again == done
    print(f"\n{CYCLES} resumable create+finish cycles: server RSS {before >> 20} -> "
          f"{after >> 20} MiB")
    assert metric(text, "liveprof_uploads_open") == 0
    assert metric(text, 'liveprof_uploads_total{outcome="truncated"}') >= CYCLES * 0.9
    assert after - before < CYCLE_GROWTH
