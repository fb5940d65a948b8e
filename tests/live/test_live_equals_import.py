"""Live equals import (issue 14): a real GHC program writes its eventlog into
a named pipe read by the service (``serve --fifo``, default live settings) as
it runs; a relay between the two keeps a copy of every byte.  Then ``liveprof
import`` of the copy goes to another database of the same influxd.  Both
databases must hold the same measurements, series, timestamps and field
values, point for point.

Programs: LiveSim (../shared/live, copied here), and Census (ours) with a
heap profile by closure type (``-hT``) and with the non-moving collector
(``-xn``); each writes every capability's buffer to the pipe every 100 ms.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ingest.service import Service
from tests.live.programs import build, stream_program
from tests.servers import wait_for
from tests.service.test_serve import settings_for

CLI = [sys.executable, "-m", "ingest.cli"]
SECONDS = 4
PROGRAMS = {
    "livesim": (("LiveSim", "LiveSim.hs"), [str(SECONDS)], ["-N2"]),
    "census-hT": (("Census", "Census.hs", "quiet_flush.c"), [str(SECONDS), "100"],
                  ["-N2", "-hT", "-i0.2"]),
    "census-xn": (("Census", "Census.hs", "quiet_flush.c"), [str(SECONDS), "100"],
                  ["-N2", "-xn"]),
}
# the same, with a merge that makes events late (everything a capability does not
# show within 5 ms of eventlog time): corrections must make up for it
EAGER = {"derive.stream_idle": 0.005, "derive.max_lag": 0.02}


def run_program(binary: Path, args: list[str], rts: list[str], fifo: Path, serve_fifo: Path,
                copy: Path) -> subprocess.CompletedProcess:
    """Run the program into ``fifo``; relay every byte to ``serve_fifo`` (the
    service has it open) and to ``copy``, until the program has exited."""
    out = os.open(serve_fifo, os.O_WRONLY | os.O_NONBLOCK)
    os.set_blocking(out, True)
    try:
        with open(copy, "wb") as f:
            def take(chunk: bytes) -> None:
                f.write(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(out, view):]

            return stream_program([str(binary), *args, "+RTS", *rts, "-l", f"-ol{fifo}",
                                   "-RTS"], fifo, take, SECONDS + 120)
    finally:
        os.close(out)


def content(server, database: str) -> dict[str, list]:
    """Every point of every measurement (tags and fields as columns), sorted."""
    names = [v[0] for s in server.series("SHOW MEASUREMENTS", database) for v in s["values"]]
    out = {}
    for name in names:
        rows = []
        for s in server.series(f'SELECT * FROM "{name}"', database):
            cols = s["columns"]
            rows += [tuple(sorted(zip(cols, map(repr, v)))) for v in s["values"]]
        out[name] = sorted(rows)
    return out


def differences(live: list, want: list) -> list:
    """The first few rows that differ, as (time, {column: (live, import)})."""
    a = {dict(r)["time"]: dict(r) for r in live}
    b = {dict(r)["time"]: dict(r) for r in want}
    out = []
    for t in sorted(a.keys() | b.keys()):
        ra, rb = a.get(t, {}), b.get(t, {})
        if ra != rb:
            out.append((t, {k: (ra.get(k), rb.get(k)) for k in ra.keys() | rb.keys()
                            if ra.get(k) != rb.get(k)}))
    return out[:4]


@pytest.mark.parametrize("eager", [False, True], ids=["defaults", "eager"])
@pytest.mark.parametrize("name", list(PROGRAMS))
async def test_live_equals_import(name, eager, influxd, tmp_path):
    (binary_name, *sources), args, rts = PROGRAMS[name]
    binary = await asyncio.to_thread(build, binary_name, *sources)
    db = f"{name.replace('-', '_')}_{int(eager)}"
    live_db, import_db = f"live_{db}", f"import_{db}"
    serve_fifo, copy = tmp_path / "serve.fifo", tmp_path / "program.eventlog"
    service = Service(settings_for(influxd, live_db, tmp_path,
                                   fifos=[{"path": str(serve_fifo)}], **(EAGER if eager else {})))
    task = asyncio.create_task(service.run())
    try:
        await asyncio.wait_for(service.ready.wait(), 10)
        await wait_for(serve_fifo.exists, 10)
        ran = await asyncio.to_thread(run_program, binary, args, rts, tmp_path / "program.fifo",
                                      serve_fifo, copy)
        assert ran.returncode == 0, ran.stderr
        await wait_for(lambda: len(service.registry.finished) == 1, 30)
        await service.sink.flush(30)
        record = next(iter(service.registry.finished.values()))
    finally:
        service.stop()
        await asyncio.wait_for(task, 30)
    imported = await asyncio.to_thread(
        subprocess.run, CLI + ["import", str(copy), "--influx-url", influxd.url,
                               "--database", import_db], capture_output=True, text=True)
    assert imported.returncode == 0, imported.stderr

    live, want = content(influxd, live_db), content(influxd, import_db)
    # the service's record of its retention settings (ingest/rollups/rp_switch.py),
    # not derived from any eventlog; an import leaves the database's as they are
    live.pop("rp_config", None)
    assert set(live) == set(want)
    for m in want:
        assert live[m] == want[m], (m, len(live[m]), len(want[m]), differences(live[m], want[m]))
    # the program did what the test is about
    assert len(want["markers"]) >= SECONDS * 5 and len(want["gc"]) > 5
    if "-hT" in rts:
        assert len(want.get("heap_profile", [])) > 10, {m: len(v) for m, v in want.items()}
    if "-xn" in rts:
        assert len(want.get("nonmoving", [])) > 10, {m: len(v) for m, v in want.items()}
    print(name, {m: len(v) for m, v in want.items()}, record)
