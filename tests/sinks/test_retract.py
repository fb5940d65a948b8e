"""InfluxSink.retract against a real influxd: a point a live correction moved
is deleted once what came before it is written, and nothing else is."""

from __future__ import annotations

from ingest.derive.point import Point, Retraction
from ingest.sinks import InfluxSink, InfluxSinkConfig
from tests.sinks.helpers import BASE_NS, eventually


def config(url: str, database: str, **kw) -> InfluxSinkConfig:
    return InfluxSinkConfig(url=url, database=database, retry_base_delay=0.02,
                            retry_max_delay=0.2, **kw)


async def rows(sink: InfluxSink) -> list[dict]:
    return [r for s in await sink.query('SELECT * FROM "gc"') for r in s.rows()]


async def test_the_moved_point_alone_is_deleted_and_a_point_that_lost_a_field_rewritten(
        influxd, influx_database):
    tags = {"app": "a", "session": "s", "gen": "0", "kind": "minor"}
    # batches big and slow to cut: the deletes must still wait for these writes
    async with InfluxSink(config(influxd.url, influx_database, flush_interval=0.5)) as sink:
        sink.submit([
            Point("gc", {"app": "a", "session": "s"}, {"pause_ns": 1}, BASE_NS + 1),  # no gen/kind
            Point("gc", tags, {"pause_ns": 2}, BASE_NS + 1),       # corrected: same time, tags
            Point("gc", tags, {"pause_ns": 3, "sync_ns": 9}, BASE_NS + 2),  # will lose sync_ns
            Point("gc", tags, {"pause_ns": 4}, BASE_NS + 3),       # moved to BASE_NS + 4
            Point("gc", tags, {"pause_ns": 5}, BASE_NS + 5),       # untouched
        ])
        sink.submit([Point("gc", tags, {"pause_ns": 4}, BASE_NS + 4),
                     Point("gc", tags, {"pause_ns": 3}, BASE_NS + 2)])
        blank = {"app": "a", "session": "s", "gen": "", "kind": ""}
        sink.retract([Retraction("gc", blank, BASE_NS + 1),
                      Retraction("gc", tags, BASE_NS + 2,
                                 Point("gc", dict(tags), {"pause_ns": 3}, BASE_NS + 2)),
                      Retraction("gc", tags, BASE_NS + 3)])
        await eventually(lambda: sink.stats.retracted == 3, what="3 deletes")
        await sink.flush(timeout=20)
        got = await rows(sink)
    assert sink.stats.retract_failed == 0
    assert [(r["time"] - BASE_NS, r["pause_ns"], r["gen"], r.get("sync_ns")) for r in got] == [
        (1, 2, "0", None), (2, 3, "0", None), (4, 4, "0", None), (5, 5, "0", None)]


async def test_retractions_past_the_bound_are_counted_not_kept(influxd, influx_database,
                                                               monkeypatch):
    from ingest.sinks.influxdb import sink as sink_module
    monkeypatch.setattr(sink_module, "MAX_RETRACTIONS", 2)
    async with InfluxSink(config(influxd.url, influx_database)) as sink:
        sink.submit([Point("gc", {"app": "a"}, {"v": i}, BASE_NS + i) for i in range(5)])
        sink.retract([Retraction("gc", {"app": "a"}, BASE_NS + i) for i in range(5)])
        assert sink.stats.retract_failed == 3
        await eventually(lambda: sink.stats.retracted == 2, what="2 deletes")
        await sink.flush(timeout=20)
        got = [r["time"] - BASE_NS for r in await rows(sink)]
    assert got == [2, 3, 4]
