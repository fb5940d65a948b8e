"""InfluxSink as the service's PointStore (ingest/sinks/base.py), against a
real influxd: the backlog and waiting for room, drops per session, deleting a
session's series, the health check; and no aiohttp error at its edge."""

from __future__ import annotations

import asyncio
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest.derive.point import Point
from ingest.sinks import InfluxSink, InfluxSinkConfig, SinkError
from ingest.sinks.base import PointStore
from ingest.sinks.influxdb.config import SinkStats
from ingest.sinks.influxdb.ledger import SESSIONS_KEPT, Ledger, session_of
from tests.servers import free_port
from tests.sinks.helpers import BASE_NS, eventually
from tests.sinks.proxy import WriteProxy

FAST_RETRY = {"retry": {"base_delay": 0.02, "max_delay": 0.2}}


def lines_of(session: str, n: int, *, start: int = 0, measurement: str = "store") -> list[str]:
    return [f"{measurement},session={session} seq={i}i {BASE_NS + i}" for i in range(start, start + n)]


def stored_sessions(server, database: str, measurement: str = "store") -> dict[str, int]:
    series = server.series(f'SELECT count("seq") FROM "{measurement}" GROUP BY "session"', database)
    return {s["tags"]["session"]: s["values"][0][1] for s in series}


def test_the_sink_is_a_point_store():
    def store(s: PointStore) -> PointStore:  # checked by mypy; here: every member exists
        return s

    sink = store(InfluxSink(InfluxSinkConfig()))
    for name in ("backlog_bytes", "wait_for_room", "flush", "dropped_points", "delete_series",
                 "healthcheck", "submit", "__aenter__", "__aexit__"):
        assert hasattr(sink, name), name
    assert sink.backlog_bytes == 0


async def test_wait_for_room_returns_when_the_buffer_shrinks_not_before(influxd, influx_database):
    async with WriteProxy(influxd.url) as proxy:
        proxy.fail(503, 10_000, path="/write")
        cfg = InfluxSinkConfig(url=proxy.url, database=influx_database, check_on_start=False,
                               batch={"lines": 10, "max_in_flight": 1, "flush_interval": 3600}, **FAST_RETRY)
        async with InfluxSink(cfg) as sink:
            lines = lines_of("w", 100)
            sink.submit(lines)
            await eventually(lambda: len(proxy.failed) > 0, what="first batch failing")
            # one batch is retried; nothing else leaves memory while it fails
            assert sink.backlog_bytes == sum(len(line) + 1 for line in lines[10:])
            assert await sink.wait_for_room(0, timeout=0.3) is False
            assert await sink.wait_for_room(sink.backlog_bytes) is True  # room already
            waiter = asyncio.create_task(sink.wait_for_room(0, timeout=30))
            await asyncio.sleep(0.1)
            assert not waiter.done()
            proxy.fail_count = 0  # InfluxDB answers again
            started = time.monotonic()
            assert await waiter is True
            assert time.monotonic() - started < 10
            assert sink.backlog_bytes == 0
            await sink.flush(timeout=20)
    assert stored_sessions(influxd, influx_database) == {"w": 100}


async def test_refused_lines_are_counted_against_their_session(influxd, influx_database):
    cfg = InfluxSinkConfig(url=influxd.url, database=influx_database, **FAST_RETRY)
    async with InfluxSink(cfg) as sink:
        bad = ["store,session=b seq=oops oops", "store,session=b seq=1i not-a-time"]
        sink.submit(lines_of("a", 5) + lines_of("b", 3, start=10) + bad)
        await sink.flush(timeout=20)
        assert (sink.dropped_points("a"), sink.dropped_points("b"), sink.dropped_points("z")) == (0, 2, 0)
        # a type conflict names no line: charged to the sessions of its batch
        sink.submit(["conflict,session=c v=1i 1"])
        await sink.flush(timeout=20)
        sink.submit(["conflict,session=c v=1.5 2"])
        await sink.flush(timeout=20)
        assert sink.dropped_points("c") == 1 and sink.stats.dropped_4xx == 3
    assert stored_sessions(influxd, influx_database) == {"a": 5, "b": 3}


async def test_lines_dropped_for_the_memory_bound_are_counted_against_their_session():
    port = free_port()  # nothing listens: InfluxDB down, no spool
    cfg = InfluxSinkConfig(url=f"http://127.0.0.1:{port}", database="db", check_on_start=False,
                           batch={"lines": 5, "max_in_flight": 1}, buffer={"memory_max_bytes": 500},
                           close_timeout=0, **FAST_RETRY)
    async with InfluxSink(cfg) as sink:
        sink.submit(lines_of("m", 200))
        sink.submit(lines_of("n", 3, start=500))
        assert sink.stats.dropped_overflow > 100
        assert sink.dropped_points("m") == sink.stats.dropped_overflow
        assert sink.dropped_points("n") == 0


async def test_lines_the_spool_drops_for_its_bound_are_charged_to_their_session(influxd_factory, tmp_path):
    server = influxd_factory()
    server.create_database("db")
    server.stop()
    cfg = InfluxSinkConfig(url=server.url, database="db", check_on_start=False,
                           batch={"lines": 20, "bytes": 2000, "max_in_flight": 1},
                           buffer={"memory_max_bytes": 1000, "spool_dir": tmp_path / "spool",
                                   "spool_max_bytes": 8000, "spool_segment_bytes": 2000},
                           close_timeout=0, **FAST_RETRY)
    async with InfluxSink(cfg) as sink:
        for i in range(10):
            sink.submit(lines_of(f"s{i % 2}", 50, start=i * 50))
        dropped = sink.stats.dropped_overflow
        assert dropped > 0
        assert sink.dropped_points("s0") + sink.dropped_points("s1") == dropped
        assert sink.dropped_points("s0") > 0 and sink.dropped_points("s1") > 0


async def test_delete_series_drops_the_series_with_all_given_tags(influxd, influx_database):
    quoted = "it's \"q\" \\ x"
    lines = [f"store,app=x,session={s.replace(' ', chr(92) + ' ')} seq=1i {BASE_NS}"
             for s in ("a", "b", quoted)] + [f"store,app=y,session=b seq=2i {BASE_NS}"]
    cfg = InfluxSinkConfig(url=influxd.url, database=influx_database, **FAST_RETRY)
    async with InfluxSink(cfg) as sink:
        sink.submit(lines)
        await sink.flush(timeout=20)
        assert stored_sessions(influxd, influx_database) == {"a": 1, "b": 2, quoted: 1}
        await sink.delete_series({"session": quoted})
        assert stored_sessions(influxd, influx_database) == {"a": 1, "b": 2}
        await sink.delete_series({"session": "b", "app": "y"})  # both tags must match
        assert stored_sessions(influxd, influx_database) == {"a": 1, "b": 1}
        with pytest.raises(ValueError):
            await sink.delete_series({})  # would match every series


async def test_a_server_that_is_gone_gives_sink_errors_without_secrets(influxd_factory):
    server = influxd_factory()
    url = server.url
    server.stop()
    cfg = InfluxSinkConfig(url=url, database="db", user="u", password="pw-secret-1", auth="query",
                           check_on_start=False, timeout=2)
    async with InfluxSink(cfg) as sink:
        for call in (sink.healthcheck(), sink.query("SHOW DATABASES"), sink.delete_series({"session": "x"}),
                     sink.ensure_database()):
            with pytest.raises(SinkError) as info:
                await call
            assert info.value.retryable and "pw-secret-1" not in str(info.value)
            assert not isinstance(info.value.__cause__, SinkError)  # chained to the aiohttp error


async def test_healthcheck_passes_on_a_live_server(influxd, influx_database):
    async with InfluxSink(InfluxSinkConfig(url=influxd.url, database=influx_database)) as sink:
        await sink.healthcheck()


# -- the session tag of a line (pure) ---------------------------------------------------

@pytest.mark.parametrize(("line", "session"), [
    ("m,app=a,session=s1 v=1i 1", "s1"),
    ("m,session=s1,z=2 v=1i 1", "s1"),
    ("m,app=a v=1i 1", None),
    ('m,app=a text="x,session=no" 1', None),  # a string field, not a tag
    ("m\\,session=no,app=a v=1i 1", None),  # an escaped comma in the measurement
    ("m,session=a\\,b\\=c\\ d,z=1 v=1i 1", "a,b=c d"),  # escapes undone
    ("m,k=x\\ y,session=s2 v=1i 1", "s2"),  # an escaped space before the tag
])
def test_session_of_reads_the_tag_as_the_encoder_escapes_it(line, session):
    assert session_of(line) == session


def test_drop_counts_are_kept_for_the_latest_sessions_only():
    ledger = Ledger(SinkStats(), lambda: None)
    for i in range(SESSIONS_KEPT + 5):
        ledger.drop("overflow", 1, [f"m,session=s{i} v=1i 1"])
    assert ledger.dropped_points("s0") == 0  # forgotten: the oldest
    assert ledger.dropped_points(f"s{SESSIONS_KEPT + 4}") == 1
    assert ledger.stats.dropped_overflow == SESSIONS_KEPT + 5


@given(st.text(alphabet=st.sampled_from("ab ,=\\\"'é"), min_size=1, max_size=12)
       .filter(lambda t: not t.endswith("\\")))
def test_a_tag_value_read_back_equals_what_was_encoded(value):
    line = Point("m", {"app": "a", "session": value, "z": "1"}, {"v": 1}, 1).to_line()
    assert session_of(line) == value
