"""The service and its API in a process of their own (``serve_main``), for
tests that attack it and watch its memory, its health and its log."""

from __future__ import annotations

import asyncio
import json
import resource
import sys
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import aiohttp

from tests.api.conftest import ADMIN
from tests.corpus import REPO


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process, bytes."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
    return out


@dataclass
class Served:
    pid: int
    host: str
    port: int
    log: list[str] = field(default_factory=list)     # its stderr lines so far

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def auth(self) -> dict:
        return {"Authorization": f"Bearer {ADMIN}"}

    def rss(self) -> int:
        return memory(self.pid)["VmRSS"]

    def peak(self) -> int:
        return memory(self.pid)["VmHWM"]

    async def healthy(self, timeout: float = 1.0) -> bool:
        """/healthz answers 200 within ``timeout`` on a fresh connection."""
        try:
            async with aiohttp.ClientSession(
                    timeout=aiohttp.ClientTimeout(total=timeout)) as http:
                async with http.get(self.url + "/healthz") as r:
                    return r.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False


ADDRESS_SPACE = 3 << 30     # a runaway server fails with MemoryError, not the machine


@asynccontextmanager
async def served(influxd, database: str, tmp_path, *, nofile: int | None = None, **api):
    """Run ``serve_main`` with these ``api`` settings (and, with ``nofile``,
    that soft file limit); yields a ``Served``; stops it after.  Its address
    space is capped at ``ADDRESS_SPACE``: the tests attack it, and a defect
    must not take the shared machine's memory with it."""
    def limit():
        if nofile is not None:
            _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, hard))
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.api.serve_main", influxd.url, database,
        str(tmp_path / "state"), ADMIN, json.dumps(api), cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, preexec_fn=limit)
    srv = None

    async def drain():
        while line := await proc.stderr.readline():
            if srv is not None:
                srv.log.append(line.decode(errors="replace").rstrip())
    try:
        srv = Served(proc.pid, "127.0.0.1", 0)
        reader = asyncio.create_task(drain())
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        assert line.startswith(b"PORT "), line
        srv.port = int(line.split()[1])
        yield srv
    finally:
        if proc.returncode is None:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 30)
        await asyncio.wait_for(reader, 10)
