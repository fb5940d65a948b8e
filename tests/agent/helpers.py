"""Real processes for the agent's tests: LiveSim (tests/live), the agent
(``liveprof agent`` as a subprocess), ``liveprof serve`` in-process against
the real influxd, ``liveprof import`` of the same bytes, and the comparison
of two databases."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from ingest.config import load
from ingest.service import Service
from tests.live.programs import build
from tests.servers import wait_for

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "ingest.cli"]


def livesim_binary() -> Path:
    """LiveSim (tests/live/LiveSim.hs, a copy of ../shared/live's), built once
    and cached like the other test programs (tests/live/programs.py)."""
    return build("LiveSim", "LiveSim.hs")


def start_livesim(binary: Path, fifo: Path, seconds: float, *extra: str) -> subprocess.Popen:
    """LiveSim writing its eventlog into ``fifo`` (GHC opens it read-write:
    it never waits for a reader; the agent holds it open)."""
    return subprocess.Popen([str(binary), str(seconds), *extra, "+RTS", "-N2", "-l",
                             f"-ol{fifo}", "-RTS"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


class AgentProcess:
    """``liveprof agent ARGS`` with its log lines collected as they come."""

    def __init__(self, *args: str):
        self.proc = subprocess.Popen(CLI + ["agent", *args], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True, cwd=ROOT)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def count(self, pattern: str) -> int:
        return sum(1 for line in list(self.lines) if re.search(pattern, line))

    def wait_line(self, pattern: str, timeout: float = 30.0, n: int = 1) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            hits = [line for line in list(self.lines) if re.search(pattern, line)]
            if len(hits) >= n:
                return hits[n - 1]
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.02)
        raise AssertionError(f"agent: no line {pattern!r}; log:\n" + "\n".join(self.lines))

    async def await_line(self, pattern: str, timeout: float = 30.0, n: int = 1) -> str:
        return await asyncio.to_thread(self.wait_line, pattern, timeout, n)

    @property
    def port(self) -> int:
        line = self.wait_line(r"listening on TCP")
        return int(line.rsplit(":", 1)[1])

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            rc = self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait(5)
        self._reader.join(5)
        return rc


def serve_settings(server, database: str, tmp_path: Path, **over):
    values = {"influx.url": server.url, "influx.database": database,
              "influx.flush_interval": 0.2, "state_dir": str(tmp_path / f"state-{database}")}
    values.update(over)
    return load(None, values)


async def start_service(settings) -> tuple[Service, asyncio.Task]:
    service = Service(settings)
    task = asyncio.create_task(service.run())
    await asyncio.wait_for(service.ready.wait(), 20)
    return service, task


async def stop_service(service: Service, task: asyncio.Task) -> None:
    service.stop()
    await asyncio.wait_for(task, 60)


async def wait_finished(service: Service, n: int, timeout: float = 60.0) -> None:
    await wait_for(lambda: service.registry is not None
                   and len(service.registry.finished) >= n, timeout)


def run_import(server, database: str, path: Path, tmp_path: Path) -> None:
    env = dict(os.environ, LIVEPROF_STATE_DIR=str(tmp_path / f"state-{database}"))
    run = subprocess.run(CLI + ["import", str(path), "--influx-url", server.url,
                                "--database", database, "--progress", "never"],
                         capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert run.returncode in (0, 1), run.stderr     # 1: a killed program's log has no end marker


def contents(server, database: str, exclude_tags: tuple[str, ...] = ()) -> dict[str, set]:
    """Every point of every measurement: {measurement: {(tags, row), ...}},
    the tags in ``exclude_tags`` left out."""
    out: dict[str, set] = {}
    rows = server.series("SHOW MEASUREMENTS", database)
    names = [v[0] for r in rows for v in r["values"]]
    for name in names:
        points = set()
        for series in server.series(f'SELECT * FROM "{name}" GROUP BY *', database):
            tags = tuple(sorted((k, v) for k, v in (series.get("tags") or {}).items()
                                if k not in exclude_tags))
            for row in series["values"]:
                points.add((tags, tuple(row)))
        out[name] = points
    return out
