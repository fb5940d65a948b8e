"""A 200 MB upload streams: the server process's peak memory grows by far
less than the upload, and every event arrives."""

from __future__ import annotations

import asyncio
import sys
import time

import aiohttp

from tests.api.biglog import RepeatedLog
from tests.api.conftest import ADMIN
from tests.api.helpers import count, expected_events
from tests.api.process import memory
from tests.corpus import DATA, REPO, summary

LOG = DATA / "threads-mvar.nonthreaded.l.eventlog"
SIZE = 200 << 20
GROWTH_BOUND = 64 << 20     # peak RSS growth allowed during the upload


async def test_a_200_mb_upload_streams_with_flat_memory(influxd, influx_database, tmp_path):
    base = LOG.read_bytes()
    big = RepeatedLog(base)
    copies = big.copies_for(SIZE)
    size = big.size(copies)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.api.serve_main", influxd.url, influx_database,
        str(tmp_path / "state"), ADMIN, cwd=REPO, stdout=asyncio.subprocess.PIPE)
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        port = int(line.split()[1])
        url = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {ADMIN}"}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as http:
            # warm up (imports, first stream) so the baseline is the steady state
            warm = (DATA / "parallelTest.eventlog").read_bytes()   # another session
            async with http.post(f"{url}/api/v1/upload", data=warm, headers=headers) as r:
                assert r.status == 201
            before = memory(proc.pid)
            peaks = []

            async def body():
                for i, piece in enumerate(big.pieces(copies)):
                    if i % 50 == 0:
                        peaks.append(memory(proc.pid)["VmRSS"])
                    yield piece
            started = time.monotonic()
            async with http.post(f"{url}/api/v1/upload", data=body(), headers=headers) as r:
                result = await r.json()
                assert r.status == 201, result
            elapsed = time.monotonic() - started
            after = memory(proc.pid)
        growth = after["VmHWM"] - before["VmRSS"]
        print(f"\n200 MB upload: {size / 1e6:.0f} MB in {elapsed:.1f} s "
              f"({size / 1e6 / elapsed:.1f} MB/s); server RSS before {before['VmRSS'] >> 20} MiB, "
              f"peak {after['VmHWM'] >> 20} MiB (growth {growth >> 20} MiB)")
        assert size >= SIZE - len(base)
        assert result["bytes"] == size and result["complete"]
        ref = summary(LOG)
        assert result["events"] == copies * expected_events(ref, base)
        assert count(influxd, influx_database, "gc", result["session"], "copied_bytes") == \
            copies * ref["gc"]["collections"]
        assert growth < GROWTH_BOUND, (before, after, peaks)
    finally:
        if proc.returncode is None:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 30)
