"""Live latency through the sink: a short flush interval by default, batches
still cut by size when busy, at most ``max_in_flight`` requests while
InfluxDB is slow, and imports keeping big batches.  Nothing here measures
time: the buffer is driven by a hand-set clock, the real-server tests count
requests and lines."""

from __future__ import annotations

import asyncio

from ingest.commands.importer import IMPORT_FLUSH_INTERVAL, sink_config
from ingest.sinks import InfluxSink, InfluxSinkConfig
from ingest.sinks.influxdb.buffer import Buffer
from ingest.sinks.influxdb.config import SinkStats
from ingest.sinks.influxdb.ledger import Ledger
from tests.sinks.helpers import eventually, seq_lines, stored_seqs
from tests.sinks.proxy import WriteProxy

FAST_RETRY = dict(retry_base_delay=0.02, retry_max_delay=0.2)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Fed(Buffer):
    """The buffer as the sink feeds it: every line added is counted queued."""

    def add(self, lines: list[str]) -> None:
        self.ledger.queued += len(lines)
        super().add(lines)


def buffer(**batch) -> tuple[Buffer, Clock]:
    clock = Clock()
    cfg = InfluxSinkConfig(batch=batch)
    return Fed(cfg, Ledger(SinkStats(), lambda: None), None, clock=clock), clock


def test_the_default_flush_interval_is_short_enough_for_live_streams():
    assert InfluxSinkConfig().batch.flush_interval <= 0.25
    assert InfluxSinkConfig(flush_interval=2.0).batch.flush_interval == 2.0  # the old flat key


def test_a_small_batch_is_due_once_its_oldest_line_waited_the_interval():
    buf, clock = buffer(lines=100, flush_interval=0.25)
    buf.add(seq_lines(3))
    assert not buf.batch_due(closing=False)
    clock.now += 0.2
    buf.add(seq_lines(2, start=3))
    assert not buf.batch_due(closing=False)
    clock.now += 0.05  # the first line has waited the interval: all five go
    assert buf.batch_due(closing=False)
    assert len(buf.pop_batch()) == 5
    assert buf.since is None and not buf.batch_due(closing=False)


def test_lines_left_after_a_size_cut_wait_their_own_interval():
    # a busy stream: a batch cut by size must not drag the rest out early as a
    # small request on the age of the lines already sent
    buf, clock = buffer(lines=10, flush_interval=0.25)
    buf.add(seq_lines(6))
    clock.now += 0.2
    buf.add(seq_lines(9, start=6))
    assert buf.batch_due(closing=False)  # by size
    assert len(buf.pop_batch()) == 10
    assert len(buf) == 5 and buf.since == clock.now  # the 5 left came with the second add
    clock.now += 0.1  # the first add's lines would be 0.3 s old now
    assert not buf.batch_due(closing=False)
    clock.now += 0.15
    assert buf.batch_due(closing=False)
    assert len(buf.pop_batch()) == 5


def test_a_cut_inside_one_add_keeps_that_adds_age():
    buf, clock = buffer(lines=4, flush_interval=0.25)
    buf.add(seq_lines(10))
    assert [len(buf.pop_batch()) for _ in range(2)] == [4, 4]
    assert buf.since == clock.now  # the last 2 lines are as old as their add
    clock.now += 0.25
    assert buf.batch_due(closing=False)


def test_import_keeps_big_batches_whatever_the_live_interval():
    live = InfluxSinkConfig()
    cfg = sink_config(live, timeout=30)
    assert cfg.batch.flush_interval == IMPORT_FLUSH_INTERVAL > live.batch.flush_interval
    assert cfg.batch.lines == live.batch.lines and cfg.buffer.spool_dir is None
    slow = sink_config(InfluxSinkConfig(flush_interval=60.0), timeout=30)
    assert slow.batch.flush_interval == 60.0  # a longer interval set by the user stays


async def test_a_point_is_sent_by_the_default_interval_without_a_flush(influxd, influx_database):
    cfg = InfluxSinkConfig(url=influxd.url, database=influx_database, **FAST_RETRY)
    async with InfluxSink(cfg) as sink:
        sink.submit(seq_lines(3))
        # far fewer lines than a batch and no flush(): only the interval sends them
        await eventually(lambda: sink.stats.written == 3, what="small batch sent by the interval")
        assert (sink.stats.requests, sink.stats.batches) == (1, 1)
        assert stored_seqs(influxd, influx_database) == [0, 1, 2]


async def test_a_slow_influxdb_gets_at_most_max_in_flight_requests_and_bigger_batches(
        influxd, influx_database):
    async with WriteProxy(influxd.url) as proxy:
        proxy.hold = asyncio.Event()
        cfg = InfluxSinkConfig(url=proxy.url, database=influx_database, batch_lines=100,
                               flush_interval=0.01, max_in_flight=2, check_on_start=False,
                               **FAST_RETRY)
        async with InfluxSink(cfg) as sink:
            sink.submit(seq_lines(10))
            await eventually(lambda: sink.stats.in_flight == 1, what="first batch sent")
            sink.submit(seq_lines(10, start=10))
            await eventually(lambda: sink.stats.in_flight == 2, what="second batch sent")
            for i in range(25):  # many intervals pass while both requests hang
                sink.submit(seq_lines(10, start=20 + 10 * i))
                await asyncio.sleep(0.02)
            writes = [s for s in proxy.seen if s.path == "/write"]
            assert len(writes) == 2 and sink.stats.in_flight == 2
            assert sink.stats.buffered == 250
            proxy.hold.set()
            await sink.flush(timeout=20)
        assert [len(b) for b in proxy.delivered] == [10, 10, 100, 100, 50]
    assert stored_seqs(influxd, influx_database) == list(range(270))


async def test_a_submit_sends_when_the_next_would_come_after_the_interval(influxd, influx_database):
    # a live stream's chunks come every so often: the submit after which the next
    # one, as far apart, would find the oldest line past its interval sends the
    # batch itself (no loop wake-up for the dispatcher's timer); the hand-set
    # clock never lets that timer find the lines due
    cfg = InfluxSinkConfig(url=influxd.url, database=influx_database, flush_interval=1.0,
                           **FAST_RETRY)
    async with InfluxSink(cfg) as sink:
        clock = Clock()
        sink._buffer.clock = clock
        sink.submit(seq_lines(2))
        clock.now += 0.4
        sink.submit(seq_lines(2, start=2))     # 0.4 old + 0.4 to the next: not yet
        assert not sink._buffer.send_now and len(sink._buffer) == 4
        clock.now += 0.4
        sink.submit(seq_lines(2, start=4))     # 0.8 old + 0.4 to the next > 1.0: now
        assert sink._buffer.send_now
        await eventually(lambda: sink.stats.written == 6, what="the batch sent by a submit")
        assert sink.stats.requests == 1
        clock.now += 0.1
        sink.submit(seq_lines(2, start=6))     # a new batch: 0 old + 0.1 to the next
        assert not sink._buffer.send_now and len(sink._buffer) == 2
    assert stored_seqs(influxd, influx_database) == list(range(8))


def test_batches_are_cut_by_lines_and_bytes_in_order():
    """``pop_batch`` of more than one batch: whole batches by lines while they
    fit in the bytes, line by line when they do not; every line once, in
    order, and the byte count kept."""
    cfg = InfluxSinkConfig(batch={"lines": 4, "bytes": 40}, buffer={"memory_max_bytes": 1 << 20})
    buf = Buffer(cfg, Ledger(SinkStats(), lambda: None), None)
    short = [f"m v={i}" for i in range(9)]              # 8 bytes a line with its newline
    long = [f"m v={i} {'x' * 12}" for i in range(5)]    # 21 bytes: two a batch by bytes
    buf.add(short + long)
    sizes, got = [], []
    while len(buf):
        batch = buf.pop_batch()
        sizes.append(len(batch))
        got += batch
        assert sum(map(len, batch)) + len(batch) <= 40 or len(batch) == 1
        assert buf.mem_bytes == sum(len(line) + 1 for line in short + long) - \
            sum(len(line) + 1 for line in got)
    assert got == short + long
    assert sizes == [4, 4, 2, 2, 2]
