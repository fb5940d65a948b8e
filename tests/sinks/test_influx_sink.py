"""InfluxSink against a real influxd: writes, batching, gzip, refusals, auth."""

from __future__ import annotations

import logging

import pytest

from ingest.derive.point import Point
from ingest.sinks import InfluxSink, InfluxSinkConfig, SinkAuthError
from tests.sinks.helpers import BASE_NS, eventually, seq_lines, stored_seqs
from tests.sinks.proxy import WriteProxy

FAST_RETRY = dict(retry_base_delay=0.02, retry_max_delay=0.2)


def config(url: str, database: str, **kw) -> InfluxSinkConfig:
    return InfluxSinkConfig(url=url, database=database, **{**FAST_RETRY, **kw})


async def test_points_and_lines_are_written_and_read_back(influxd, influx_database):
    point = Point("gc", {"app": "hello", "gen": "1"}, {"pause_ns": 1500, "live_bytes": 2.5, "ok": True,
                                                      "label": 'say "hi"'}, BASE_NS + 7)
    async with InfluxSink(config(influxd.url, influx_database)) as sink:
        sink.submit([point])
        sink.submit(seq_lines(3))
        await sink.flush(timeout=20)
        series = await sink.query('SELECT * FROM "gc"')
        assert sink.stats.written == 4
        assert sink.stats.dropped_4xx == 0
    assert len(series) == 1
    (row,) = series[0].rows()
    assert row == {"time": BASE_NS + 7, "app": "hello", "gen": "1", "pause_ns": 1500, "live_bytes": 2.5,
                   "ok": True, "label": 'say "hi"'}
    assert stored_seqs(influxd, influx_database) == [0, 1, 2]


async def test_ensure_database_is_idempotent_and_query_reports_errors(influxd):
    name = "t_ensure_db"
    async with InfluxSink(config(influxd.url, name, check_on_start=False)) as sink:
        await sink.ensure_database()
        await sink.ensure_database()
        dbs = await sink.query("SHOW DATABASES")
        assert [name] in dbs[0].values
        from ingest.sinks import InfluxQueryError

        with pytest.raises(InfluxQueryError, match="not_a_measurement|error parsing"):
            await sink.query("SELEKT nonsense FROM not_a_measurement")
    influxd.drop_database(name)


async def test_create_database_at_start(influxd):
    name = "t_created_at_start"
    async with InfluxSink(config(influxd.url, name, create_database=True)) as sink:
        sink.submit(seq_lines(2))
        await sink.flush(timeout=20)
    assert stored_seqs(influxd, name) == [0, 1]
    influxd.drop_database(name)


async def test_a_missing_database_is_a_clear_error_at_start(influxd):
    from ingest.sinks import SinkError

    with pytest.raises(SinkError, match="database not found"):
        async with InfluxSink(config(influxd.url, "t_no_such_db")):
            pass


async def test_submit_needs_an_open_sink(influxd, influx_database):
    from ingest.sinks import SinkError

    sink = InfluxSink(config(influxd.url, influx_database))
    with pytest.raises(SinkError, match="not open"):
        sink.submit(seq_lines(1))
    async with sink:
        sink.submit(seq_lines(1))
    with pytest.raises(SinkError, match="closed"):
        sink.submit(seq_lines(1))
    assert sink.stats.written == 1


async def test_batches_are_cut_by_line_count(influxd, influx_database):
    async with WriteProxy(influxd.url) as proxy:
        cfg = config(proxy.url, influx_database, batch_lines=10, flush_interval=3600, max_in_flight=1)
        async with InfluxSink(cfg) as sink:
            sink.submit(seq_lines(25))
            await eventually(lambda: sink.stats.written == 20, what="two full batches sent without a flush")
            assert sink.stats.buffered == 5  # the partial batch waits for its interval
            await sink.flush(timeout=20)
    assert [len(b) for b in proxy.delivered] == [10, 10, 5]
    assert stored_seqs(influxd, influx_database) == list(range(25))


async def test_batches_are_cut_by_bytes(influxd, influx_database):
    lines = seq_lines(30, start=100)  # all of one length
    limit = 3 * (len(lines[0]) + 1)  # three lines a batch
    async with WriteProxy(influxd.url) as proxy:
        cfg = config(proxy.url, influx_database, batch_bytes=limit, flush_interval=3600, gzip=False)
        async with InfluxSink(cfg) as sink:
            sink.submit(lines)
            await sink.flush(timeout=20)
    assert sorted(len(b) for b in proxy.delivered) == [3] * 10
    assert all(s.wire_length <= limit for s in proxy.seen if s.path == "/write" and s.lines)
    assert stored_seqs(influxd, influx_database) == list(range(100, 130))


async def test_a_partial_batch_goes_out_after_the_flush_interval(influxd, influx_database):
    cfg = config(influxd.url, influx_database, batch_lines=1000, flush_interval=0.2)
    async with InfluxSink(cfg) as sink:
        sink.submit(seq_lines(3))
        # no flush(): only the interval can send these three lines
        await eventually(lambda: sink.stats.written == 3, what="partial batch sent by the interval")
        assert stored_seqs(influxd, influx_database) == [0, 1, 2]


@pytest.mark.parametrize("use_gzip", [True, False])
async def test_bodies_are_gzipped_when_configured(influxd, influx_database, use_gzip):
    async with WriteProxy(influxd.url) as proxy:
        async with InfluxSink(config(proxy.url, influx_database, gzip=use_gzip)) as sink:
            sink.submit(seq_lines(200))
            await sink.flush(timeout=20)
    (write,) = [s for s in proxy.seen if s.path == "/write" and s.lines]
    plain = "\n".join(seq_lines(200)) + "\n"
    assert write.body.decode() == plain
    if use_gzip:
        assert write.headers.get("Content-Encoding") == "gzip"
        assert write.wire_length < len(plain) / 4
    else:
        assert "Content-Encoding" not in write.headers
        assert write.wire_length == len(plain)
    assert write.query["precision"] == "ns"
    assert len(stored_seqs(influxd, influx_database)) == 200


async def test_bad_lines_in_a_partial_write_are_dropped_counted_and_logged(influxd, influx_database, caplog):
    # a point in the same shard first: InfluxDB then answers "partial write" (the good lines are stored)
    influxd.write(f'seqtest,run=r seq=-1i,pad="x" {BASE_NS - 5}', influx_database)
    good = seq_lines(10)
    bad_parse = "seqtest,run=r this is not line protocol"
    bad_type = f'seqtest,run=r seq="a string" {BASE_NS + 100}'
    caplog.set_level(logging.ERROR, logger="liveprof.sinks.influx")
    async with InfluxSink(config(influxd.url, influx_database)) as sink:
        sink.submit(good[:4] + [bad_parse] + good[4:8])
        await sink.flush(timeout=20)
        assert (sink.stats.written, sink.stats.dropped_4xx, sink.stats.requests) == (8, 1, 1)
        sink.submit(good[8:9] + [bad_type] + good[9:])
        await sink.flush(timeout=20)
        assert (sink.stats.written, sink.stats.dropped_4xx, sink.stats.requests) == (10, 2, 2)
    assert stored_seqs(influxd, influx_database) == [-1] + list(range(10))
    assert f"first offending line: {bad_parse}" in caplog.text  # the line InfluxDB named
    assert "field type conflict" in caplog.text


async def test_a_whole_batch_refusal_is_narrowed_down_to_its_bad_lines(influxd, influx_database, caplog):
    # a type conflict inside a batch that opens a shard: influxd 1.6 answers a plain
    # 400 "field type conflict" and stores nothing, naming no line
    influxd.write('seqtest,run=r seq=-1i,pad="x" 1', influx_database)  # another shard
    good = seq_lines(10)
    bad_parse = "seqtest,run=r this is not line protocol"
    bad_type = f'seqtest,run=r seq="a string" {BASE_NS + 100}'
    caplog.set_level(logging.WARNING, logger="liveprof.sinks.influx")
    async with InfluxSink(config(influxd.url, influx_database)) as sink:
        sink.submit(good[:4] + [bad_parse] + good[4:8] + [bad_type] + good[8:])
        await sink.flush(timeout=20)
        stats = sink.stats
    assert (stats.written, stats.dropped_4xx) == (10, 2)
    assert 1 < stats.requests <= 2 * 12
    assert stored_seqs(influxd, influx_database) == [-1] + list(range(10))
    assert "in halves" in caplog.text
    assert bad_parse in caplog.text


async def test_a_batch_of_only_bad_lines_is_dropped_once(influxd, influx_database, caplog):
    caplog.set_level(logging.ERROR, logger="liveprof.sinks.influx")
    async with InfluxSink(config(influxd.url, influx_database)) as sink:
        sink.submit(["nonsense one", "nonsense two"])
        await sink.flush(timeout=20)
        assert sink.stats.dropped_4xx == 2
        assert sink.stats.requests == 1
        sink.submit(seq_lines(2))  # the sink goes on
        await sink.flush(timeout=20)
        assert sink.stats.written == 2
    assert "nonsense one" in caplog.text


async def test_server_errors_are_retried_until_delivered(influxd, influx_database):
    async with WriteProxy(influxd.url) as proxy:
        proxy.fail(503, count=3)
        async with InfluxSink(config(proxy.url, influx_database, check_on_start=False)) as sink:
            sink.submit(seq_lines(50))
            await sink.flush(timeout=20)
            assert sink.stats.retried == 3
            assert sink.stats.written == 50
        proxy.fail(429, count=1, headers={"Retry-After": "0"})
        async with InfluxSink(config(proxy.url, influx_database, check_on_start=False)) as sink:
            sink.submit(seq_lines(50, start=50))
            await sink.flush(timeout=20)
            assert sink.stats.retried == 1
    assert stored_seqs(influxd, influx_database) == list(range(100))


async def test_retry_max_attempts_drops_and_counts(influxd, influx_database):
    async with WriteProxy(influxd.url) as proxy:
        proxy.fail(500, count=2)
        cfg = config(proxy.url, influx_database, check_on_start=False, retry_max_attempts=2, batch_lines=5)
        async with InfluxSink(cfg) as sink:
            sink.submit(seq_lines(5))
            await sink.flush(timeout=20)
            assert sink.stats.dropped_retries == 5
            sink.submit(seq_lines(5, start=5))
            await sink.flush(timeout=20)
            assert sink.stats.written == 5
    assert stored_seqs(influxd, influx_database) == list(range(5, 10))


async def test_too_large_bodies_are_split(influxd_factory):
    server = influxd_factory(settings={"http": {"max-body-size": 2000}})
    server.create_database("db")
    lines = seq_lines(200)  # ~9 KB
    cfg = config(server.url, "db", gzip=False, batch_lines=200, batch_bytes=1 << 20)
    async with InfluxSink(cfg) as sink:
        sink.submit(lines)
        await sink.flush(timeout=20)
        assert sink.stats.written == 200
        assert sink.stats.requests > 8
    assert stored_seqs(server, "db") == list(range(200))


# -- credentials --------------------------------------------------------------------


@pytest.fixture
def influxd_auth(influxd_factory):
    server = influxd_factory(auth=True)
    server.create_database("db")
    server.query("CREATE USER writer WITH PASSWORD 'right-pw'")
    server.query('GRANT WRITE ON "db" TO writer')
    return server


@pytest.mark.parametrize("mode", ["basic", "query"])
async def test_user_and_password_are_sent(influxd_auth, mode):
    cfg = config(influxd_auth.url, "db", user="writer", password="right-pw", auth=mode)
    async with InfluxSink(cfg) as sink:
        sink.submit(seq_lines(5))
        await sink.flush(timeout=20)
    assert stored_seqs(influxd_auth, "db") == list(range(5))


async def test_wrong_password_fails_at_start_with_a_clear_error(influxd_auth, caplog):
    caplog.set_level(logging.DEBUG)
    cfg = config(influxd_auth.url, "db", user="writer", password="wrong-pw")
    with pytest.raises(SinkAuthError) as info:
        async with InfluxSink(cfg):
            pass
    message = str(info.value)
    assert "401" in message and "'writer'" in message and "refused the credentials" in message
    assert info.value.status == 401
    assert "wrong-pw" not in message
    assert "wrong-pw" not in caplog.text
    assert "wrong-pw" not in repr(cfg)


async def test_wrong_password_while_writing_is_not_retried_and_keeps_the_data(influxd_auth, tmp_path, caplog):
    cfg = config(influxd_auth.url, "db", user="writer", password="wrong-pw", auth="query",
                 check_on_start=False, spool_dir=tmp_path / "spool", close_timeout=0)
    async with InfluxSink(cfg) as sink:
        sink.submit(seq_lines(20))
        with pytest.raises(SinkAuthError, match="401"):
            await sink.flush(timeout=20)
        assert sink.stats.requests == 1
        assert sink.stats.retried == 0
        sink.submit(seq_lines(5, start=20))  # still accepted, kept
        with pytest.raises(SinkAuthError):
            await sink.flush(timeout=20)
        assert sink.stats.requests == 1
        assert sink.stats.in_flight_lines + sink.stats.buffered == 25
    assert "wrong-pw" not in caplog.text
    # a sink with the right password delivers what the wrong one kept
    fixed = cfg.model_copy(update={"password": InfluxSinkConfig(user="w", password="right-pw").password})
    async with InfluxSink(fixed) as sink:
        await sink.flush(timeout=20)
    assert stored_seqs(influxd_auth, "db") == list(range(25))


async def test_missing_user_permission_is_a_clear_error(influxd_auth):
    influxd_auth.query("CREATE USER reader WITH PASSWORD 'pw'")
    cfg = config(influxd_auth.url, "db", user="reader", password="pw", check_on_start=False)
    async with InfluxSink(cfg) as sink:
        sink.submit(seq_lines(1))
        with pytest.raises(SinkAuthError, match="403|denied"):
            await sink.flush(timeout=20)


async def test_a_token_is_sent_as_authorization_token(influxd_auth):
    # influxd 1.6 has no token scheme (1.8+ accepts "Token user:password"): check
    # the header on the wire and that its refusal is a clear, unretried error
    async with WriteProxy(influxd_auth.url) as proxy:
        cfg = config(proxy.url, "db", token="writer:right-pw", check_on_start=False)
        async with InfluxSink(cfg) as sink:
            sink.submit(seq_lines(1))
            with pytest.raises(SinkAuthError, match="token"):
                await sink.flush(timeout=20)
            assert sink.stats.requests == 1
    (write,) = [s for s in proxy.seen if s.path == "/write"]
    assert write.headers["Authorization"] == "Token writer:right-pw"
    assert "u" not in write.query and "p" not in write.query


def test_config_validation():
    with pytest.raises(ValueError, match="token or user"):
        InfluxSinkConfig(token="t", user="u")
    with pytest.raises(ValueError, match="needs a user"):
        InfluxSinkConfig(password="p")
    with pytest.raises(ValueError):
        InfluxSinkConfig(batch_size=3)  # unknown keys are refused
    cfg = InfluxSinkConfig()
    assert (cfg.url, cfg.database, cfg.batch.flush_interval) == ("http://127.0.0.1:8086", "liveprof", 0.25)
