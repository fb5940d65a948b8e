"""Outage edges (issue 12, item 9): a transient 5xx at import start, a spool
bound below a batch, honest drop counts in the log, the periodic 'still
down' line, why close could not deliver, and spilling to disk by time."""

from __future__ import annotations

import asyncio
import logging
import re
import sys

import pytest

from ingest.config import load
from ingest.errors import ConfigError
from ingest.files import private_dir
from ingest.sinks import InfluxSink, InfluxSinkConfig
from ingest.sinks.spool import Spool
from tests.corpus import DATA
from tests.sinks.helpers import eventually, seq_lines, stored_seqs
from tests.sinks.proxy import WriteProxy

FAST_RETRY = dict(retry_base_delay=0.02, retry_max_delay=0.3)
LOG = DATA / "hello-ghc-8.6.5.eventlog"


@pytest.mark.parametrize("failures", [1, 3])
async def test_import_retries_a_transient_5xx_at_its_first_check(influxd, failures):
    """A proxy answers 503 to the first request(s) whatever they are (the first
    is the CREATE DATABASE), then passes through: the import succeeds."""
    database = f"t_import_503_{failures}"
    async with WriteProxy(influxd.url) as proxy:
        proxy.fail(503, failures)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "ingest.cli", "import", str(LOG), "--influx-url", proxy.url,
            "--database", database, "--timeout", "60",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        _, err = await asyncio.wait_for(proc.communicate(), 120)
    stderr = err.decode()
    assert proc.returncode == 0, stderr
    assert len(proxy.failed) == failures
    assert "503" in stderr  # the transient failure is said, not hidden
    written = int(re.search(r"(\d+) points written", stderr).group(1))
    assert written > 0
    stored = influxd.series('SELECT count(*) FROM "gc"', database)
    assert stored and stored[0]["values"][0][1] > 0
    influxd.drop_database(database)


def test_a_spool_bound_below_a_batch_is_refused_with_a_clear_error():
    with pytest.raises(ConfigError) as info:
        load(None, {"influx.spool_max_bytes": 100_000, "influx.batch_bytes": 1 << 20})
    text = str(info.value)
    assert "influx.spool_max_bytes" in text and "batch_bytes" in text and "4194304" in text


async def test_the_smallest_accepted_spool_keeps_every_batch(influxd_factory, tmp_path):
    """With the bound at its minimum (4 batches) an outage that fits loses nothing."""
    server = influxd_factory()
    server.create_database("db")
    server.stop()
    cfg = InfluxSinkConfig(url=server.url, database="db", batch_lines=100, batch_bytes=5_000,
                           spool_max_bytes=20_000, memory_max_bytes=2_000, flush_interval=0.05,
                           spool_dir=tmp_path / "spool", max_in_flight=1, **FAST_RETRY)
    n = 250  # ~11 KB: more than memory, less than the spool
    async with InfluxSink(cfg) as sink:
        for i in range(0, n, 10):
            sink.submit(seq_lines(10, start=i))
            await asyncio.sleep(0)
        assert sink.stats.spooled > 0
        server.start()
        await sink.flush(timeout=30)
        stats = sink.stats
    assert stats.dropped_overflow == 0 and stats.written == n
    assert stored_seqs(server, "db") == list(range(n))


async def test_drop_counts_in_the_log_add_up(influxd_factory, caplog):
    """Drops come in bursts faster than the log's rate limit: the log still
    says how many since the last line, the running total, and the final total."""
    server = influxd_factory()
    server.create_database("db")
    server.stop()
    cfg = InfluxSinkConfig(url=server.url, database="db", batch_lines=50, max_in_flight=1,
                           flush_interval=0.05, memory_max_bytes=3_000, close_timeout=0.2, **FAST_RETRY)
    caplog.set_level(logging.INFO, logger="liveprof.sinks.influx")
    async with InfluxSink(cfg) as sink:
        for i in range(0, 3000, 100):
            sink.submit(seq_lines(100, start=i))
            await asyncio.sleep(0)
        dropped = sink.stats.dropped_overflow
    assert dropped > 1000
    reports = [int(m.group(1)) for m in re.finditer(r"dropped the oldest (\d+) lines since the last report",
                                                     caplog.text)]
    assert reports and sum(reports) <= dropped
    (final,) = re.findall(r"(\d+) lines dropped in all \((\d+) for the memory/disk bounds", caplog.text)
    assert int(final[1]) == dropped
    assert int(final[0]) == dropped + sink.stats.dropped_shutdown
    assert sink.stats.dropped_shutdown > 0  # what was left at close, without a spool


async def test_a_long_outage_is_logged_with_its_backlog(influxd_factory, tmp_path, caplog):
    server = influxd_factory()
    server.create_database("db")
    server.stop()
    cfg = InfluxSinkConfig(url=server.url, database="db", batch_lines=100, flush_interval=0.05,
                           spool_dir=tmp_path / "spool", spill_after=0.2, down_log_interval=0.3,
                           close_timeout=0.2, **FAST_RETRY)
    caplog.set_level(logging.WARNING, logger="liveprof.sinks.influx")
    async with InfluxSink(cfg) as sink:
        sink.submit(seq_lines(1000))
        await eventually(lambda: sink.stats.spooled == 1000 and sink.stats.buffered == 0,
                         what="everything on disk")
        await eventually(lambda: caplog.text.count("InfluxDB still down after") >= 2,
                         what="two 'still down' lines")
    lines = [r.getMessage() for r in caplog.records if "still down" in r.getMessage()]
    waiting = re.search(r"(\d+) lines waiting \((\d+) in flight, (\d+) in memory, (\d+) on disk",
                        lines[-1])
    assert waiting is not None, lines[-1]
    assert int(waiting.group(1)) == 1000 and int(waiting.group(4)) == 1000
    closing = [r.getMessage() for r in caplog.records if "closing with data not delivered" in r.getMessage()]
    assert len(closing) == 1
    reason = closing[0].split("closing with data not delivered: ", 1)[1]
    assert reason.startswith("1000 lines still waiting") and "spooling them" in reason


async def test_memory_goes_to_disk_after_spill_after_not_only_by_size(influxd_factory, tmp_path):
    """Far below memory_max_bytes, lines (and the batch being retried) are on
    disk once they waited spill_after: a new sink on the directory has them."""
    server = influxd_factory()
    server.create_database("db")
    server.stop()
    spool_dir = tmp_path / "spool"
    cfg = InfluxSinkConfig(url=server.url, database="db", flush_interval=0.05, spill_after=0.3,
                           spool_dir=spool_dir, **FAST_RETRY)
    sink = InfluxSink(cfg)
    await sink.start()
    try:
        sink.submit(seq_lines(3000))
        await eventually(lambda: sink.stats.in_flight > 0 and sink.stats.retried > 0, what="failing")
        sink.submit(seq_lines(2000, start=3000))
        await eventually(lambda: sink.stats.buffered == 0 and sink.stats.spooled == 5000,
                         what="all on disk")
        assert sink.stats.spilled_late == 5000
        # what a crash would find: records on disk, read by a second spool on the directory
        copy = private_dir(tmp_path / "copy", tighten=True)
        for f in spool_dir.glob("*.seg"):
            (copy / f.name).write_bytes(f.read_bytes())
        again = Spool(copy)
        assert again.pending_lines == 5000
        seen = []
        while (rec := again.read()) is not None:
            seen += rec.lines
        assert sorted(seen) == sorted(seq_lines(5000))
        again.close()
        server.start()
        await sink.flush(timeout=30)
        assert sink.stats.written == 5000
    finally:
        await sink.close()
    assert stored_seqs(server, "db") == list(range(5000))
    assert list(spool_dir.glob("*.seg")) == []
