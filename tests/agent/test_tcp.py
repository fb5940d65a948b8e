"""A real GHC program -> ``liveprof agent`` -> TCP -> ``liveprof serve`` -> a
real influxd holds exactly what ``liveprof import`` of the same bytes writes,
the per-capability measurements included (they need the blocks).

The bytes the program wrote are the agent's own copy (``--tee``).  Nothing
is left out of the comparison: the session, host and app tags come out the
same (the session id from the program's pid and wall-clock event, which the
agent's stream carries from the start; the host is this machine's name in
both, the agent's and import's default; the app the program's name)."""

from __future__ import annotations

import asyncio
import os

import pytest

from tests.agent.helpers import (
    AgentProcess,
    contents,
    livesim_binary,
    run_import,
    serve_settings,
    start_livesim,
    start_service,
    stop_service,
    wait_finished,
)
from tests.corpus import DATA

SECONDS = 3


@pytest.fixture(scope="module")
def livesim():
    return livesim_binary()


async def agent_to_serve(livesim, influxd, database, tmp_path, *agent_args):
    fifo, tee = tmp_path / "live.fifo", tmp_path / "tee.eventlog"
    agent = AgentProcess("--fifo", str(fifo), "--listen", "127.0.0.1:0", "--tee", str(tee),
                         *agent_args)
    try:
        port = agent.port
        settings = serve_settings(influxd, database, tmp_path,
                                  monitors=[{"host": "127.0.0.1", "port": port}])
        service, task = await start_service(settings)
        try:
            await agent.await_line(r"receiver .* connected")
            program = start_livesim(livesim, fifo, SECONDS)
            _, err = program.communicate(timeout=120)
            assert program.returncode == 0, err
            await agent.await_line(r"run ended")
            await wait_finished(service, 1)
        finally:
            await stop_service(service, task)
    finally:
        assert agent.stop() == 0
    assert service.registry is not None
    (record,) = service.registry.finished.values()
    return record, tee, agent


async def test_program_agent_tcp_serve_equals_import(livesim, influxd, tmp_path):
    record, tee, agent = await agent_to_serve(livesim, influxd, "agent_tcp", tmp_path)
    assert record.error is None and record.info.caps is True
    assert record.info.host == record.tags["host"] == os.uname().nodename
    assert record.tags["app"] == "LiveSim"
    run_import(influxd, "agent_tcp_import", tee, tmp_path)
    live = contents(influxd, "agent_tcp")
    whole = contents(influxd, "agent_tcp_import")
    # serve's own bookkeeping, not a point of the stream: the dashboards' policy switch
    live.pop("rp_config")
    whole.pop("rp_config", None)
    assert set(live) == set(whole)
    assert {"capability", "sparks", "gc", "threads"} <= set(live)
    for name in sorted(whole):
        assert live[name] == whole[name], name
    assert sum(len(v) for v in live.values()) > 100
    assert agent.count(r"receivers dropped 0") >= 1


async def test_without_blocks_the_capabilities_are_lost(livesim, influxd, tmp_path):
    # the control: the same path with the 2016 monitor's framing has no
    # per-capability measurements, so the blocks are what brings them
    record, tee, _ = await agent_to_serve(livesim, influxd, "agent_noblocks", tmp_path,
                                          "--no-blocks")
    assert record.error is None and record.info.caps is None
    live = contents(influxd, "agent_noblocks")
    assert "gc" in live and "capability" not in live and "sparks" not in live


async def test_sessions_are_tagged_with_the_agents_app_and_host(influxd, tmp_path):
    # the app and host the agent is given travel in its snapshot (6.7) and tag the
    # session in serve (a receiver that joins late has them too)
    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    agent = AgentProcess("--fifo", str(fifo), "--listen", "127.0.0.1:0", "--app", "shop",
                         "--host", "db-7")
    try:
        port = agent.port
        settings = serve_settings(influxd, "agent_tags", tmp_path,
                                  monitors=[{"host": "127.0.0.1", "port": port}])
        service, task = await start_service(settings)
        try:
            await agent.await_line(r"receiver .* connected")
            # (a thread: the pipe's writes block while the agent is reading)
            await asyncio.to_thread(fifo.write_bytes,
                                    (DATA / "threads-mvar-small.N2.l.eventlog").read_bytes())
            await agent.await_line(r"run ended")
            await wait_finished(service, 1)
        finally:
            await stop_service(service, task)
    finally:
        assert agent.stop() == 0
    assert service.registry is not None
    (record,) = service.registry.finished.values()
    assert (record.info.app, record.info.host) == ("shop", "db-7")
    assert record.tags["app"] == "shop" and record.tags["host"] == "db-7"
    rows = influxd.series('SHOW TAG VALUES FROM "gc" WITH KEY IN ("app", "host")', "agent_tags")
    assert sorted(v[1] for v in rows[0]["values"]) == ["db-7", "shop"]
