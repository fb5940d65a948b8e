"""InfluxDB going away and coming back; the spool's bounds; sink restarts."""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import sys
import textwrap

import pytest

from ingest.sinks import InfluxSink, InfluxSinkConfig
from tests.sinks.helpers import eventually, seq_lines, seq_of, stored_seqs
from tests.sinks.proxy import WriteProxy

FAST_RETRY = dict(retry_base_delay=0.02, retry_max_delay=0.3)


async def stream(sink: InfluxSink, start: int, n: int, chunk: int = 100) -> int:
    """Submit seq start..start+n in chunks, letting the loop run in between;
    checks the memory bound after every submit.  Returns the next seq."""
    for i in range(start, start + n, chunk):
        sink.submit(seq_lines(min(chunk, start + n - i), start=i))
        assert sink.stats.buffered_bytes <= sink.config.buffer.memory_max_bytes
        await asyncio.sleep(0)
    return start + n


async def test_influxd_down_mid_stream_spills_to_disk_and_everything_arrives_once(influxd_factory, tmp_path):
    server = influxd_factory()
    server.create_database("db")
    spool_dir = tmp_path / "spool"
    cfg = InfluxSinkConfig(url=server.url, database="db", batch_lines=200, flush_interval=0.05,
                           memory_max_bytes=20_000, spool_dir=spool_dir, **FAST_RETRY)
    async with InfluxSink(cfg) as sink:
        seq = await stream(sink, 0, 2000)
        await eventually(lambda: sink.stats.written > 0, what="first points written")

        server.stop()
        seq = await stream(sink, seq, 20_000)
        await eventually(lambda: sink.stats.retried > 0, what="writes failing")
        assert sink.stats.spooled > 0
        assert sink.stats.spooled_bytes > 500_000
        assert any(spool_dir.glob("*.seg"))
        assert sink.stats.written < seq
        with pytest.raises(TimeoutError):  # flush() waits for delivery; here it cannot happen
            await sink.flush(timeout=0.3)

        server.start()
        seq = await stream(sink, seq, 2000)
        await sink.flush(timeout=30)
        stats = sink.stats
    assert stats.written == seq  # each line acknowledged once
    assert stats.dropped_4xx == stats.dropped_overflow == stats.dropped_retries == 0
    assert stats.spooled == 0
    assert stored_seqs(server, "db") == list(range(seq))
    assert list(spool_dir.glob("*.seg")) == []


async def test_replay_after_a_crash_of_influxd_is_in_order_without_duplicates(influxd_factory, tmp_path):
    server = influxd_factory()
    server.create_database("db")
    async with WriteProxy(server.url) as proxy:
        cfg = InfluxSinkConfig(url=proxy.url, database="db", batch_lines=100, flush_interval=0.05,
                               max_in_flight=1, memory_max_bytes=10_000, spool_dir=tmp_path / "spool",
                               **FAST_RETRY)
        async with InfluxSink(cfg) as sink:
            seq = await stream(sink, 0, 1000)
            await eventually(lambda: sink.stats.written > 0, what="first points written")
            server.stop(graceful=False)  # SIGKILL
            seq = await stream(sink, seq, 5000)
            await eventually(lambda: sink.stats.retried > 2, what="writes failing")
            server.start()
            seq = await stream(sink, seq, 1000)
            await sink.flush(timeout=30)
    sent = [seq_of(line) for lines in proxy.delivered for line in lines]
    assert sent == list(range(seq))  # every line accepted exactly once, in submit order
    assert any(s.status is None for s in proxy.seen)  # some requests did fail
    assert stored_seqs(server, "db") == list(range(seq))


async def test_the_disk_bound_drops_the_oldest_counts_and_logs_it(influxd_factory, tmp_path, caplog):
    server = influxd_factory()
    server.create_database("db")
    server.stop()
    spool_dir = tmp_path / "spool"
    cfg = InfluxSinkConfig(url=server.url, database="db", batch_lines=50, flush_interval=0.05,
                           max_in_flight=1, memory_max_bytes=4_000, spool_dir=spool_dir,
                           spool_max_bytes=40_000, batch_bytes=8_000, spool_segment_bytes=8_000, **FAST_RETRY)
    caplog.set_level(logging.ERROR, logger="liveprof.sinks.influx")
    total = 4000  # ~180 KB of line protocol
    async with InfluxSink(cfg) as sink:
        await stream(sink, 0, total)
        assert sink.stats.dropped_overflow > 0
        assert sum(f.stat().st_size for f in spool_dir.glob("*.seg")) <= 40_000
        server.start()
        await sink.flush(timeout=30)
        stats = sink.stats
    assert "dropped the oldest" in caplog.text
    stored = stored_seqs(server, "db")
    assert stats.written == len(stored)
    assert stats.written + stats.dropped_overflow == total
    missing = sorted(set(range(total)) - set(stored))
    assert len(missing) == stats.dropped_overflow
    # what went missing is one run of old lines (at most the first batch, in flight, precedes it)
    assert missing == list(range(missing[0], missing[-1] + 1))
    assert missing[0] <= cfg.batch.lines
    assert stored[-(total - missing[-1] - 1):] == list(range(missing[-1] + 1, total))


async def test_a_new_sink_replays_what_the_last_one_spooled_at_close(influxd_factory, tmp_path):
    server = influxd_factory()
    server.create_database("db")
    server.stop()
    spool_dir = tmp_path / "spool"
    cfg = InfluxSinkConfig(url=server.url, database="db", batch_lines=100, flush_interval=0.05,
                           spool_dir=spool_dir, close_timeout=0.3, **FAST_RETRY)
    async with InfluxSink(cfg) as sink:
        await stream(sink, 0, 3000)
        await eventually(lambda: sink.stats.in_flight > 0 and sink.stats.retried > 0, what="writes failing")
    assert sink.stats.written == 0
    assert sink.stats.dropped_shutdown == 0

    server.start()
    async with InfluxSink(cfg) as again:
        assert again.stats.spooled == 3000
        await again.flush(timeout=30)
        assert again.stats.written == 3000
    assert stored_seqs(server, "db") == list(range(3000))
    assert list(spool_dir.glob("*.seg")) == []


async def test_a_killed_sink_process_loses_nothing_it_had_spooled(influxd_factory, tmp_path):
    server = influxd_factory()
    server.create_database("db")
    server.stop()
    spool_dir = tmp_path / "spool"
    script = textwrap.dedent(f"""
        import asyncio, sys
        from ingest.sinks import InfluxSink, InfluxSinkConfig
        from tests.sinks.helpers import seq_lines

        async def main():
            cfg = InfluxSinkConfig(url={server.url!r}, database="db", batch_lines=100, memory_max_bytes=1,
                                   spool_dir={str(spool_dir)!r}, retry_base_delay=0.02, retry_max_delay=0.2)
            sink = InfluxSink(cfg)
            await sink.start()
            for i in range(0, 2000, 100):
                sink.submit(seq_lines(100, start=i))
                await asyncio.sleep(0)
            print("spooled", sink.stats.spooled, flush=True)
            await asyncio.sleep(3600)

        asyncio.run(main())
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,  # noqa: ASYNC220  # killed by SIGKILL below, read in a thread
                            cwd=str(__import__("pathlib").Path(__file__).parents[2]))
    try:
        line = await asyncio.to_thread(proc.stdout.readline)
        assert line.split() == ["spooled", "2000"], line
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    server.start()
    cfg = InfluxSinkConfig(url=server.url, database="db", spool_dir=spool_dir, **FAST_RETRY)
    async with InfluxSink(cfg) as sink:
        await sink.flush(timeout=30)
        assert sink.stats.written == 2000
    assert stored_seqs(server, "db") == list(range(2000))


async def test_without_a_spool_the_memory_bound_drops_the_oldest(influxd_factory, caplog):
    server = influxd_factory()
    server.create_database("db")
    server.stop()
    cfg = InfluxSinkConfig(url=server.url, database="db", batch_lines=50, max_in_flight=1,
                           flush_interval=0.05, memory_max_bytes=5_000, close_timeout=0.2, **FAST_RETRY)
    caplog.set_level(logging.ERROR, logger="liveprof.sinks.influx")
    async with InfluxSink(cfg) as sink:
        await stream(sink, 0, 2000)
        assert sink.stats.dropped_overflow > 0
        server.start()
        await sink.flush(timeout=30)
        stats = sink.stats
    assert "no spool" in caplog.text
    stored = stored_seqs(server, "db")
    assert stats.written == len(stored)
    assert stats.written + stats.dropped_overflow == 2000
    assert stored[-1] == 1999
