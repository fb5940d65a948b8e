"""Uploads over real HTTP into a real InfluxDB: every corpus log's session
figures against its reference summary; bad and cut input; resumable uploads;
limits."""

from __future__ import annotations

import asyncio
import socket

import aiohttp

from ingest.derive.session_info import SessionDeriver
from protocol import Decoder
from protocol.eventlog import CATALOGUE
from tests.api.conftest import Running, api_config, settings_for
from tests.api.helpers import count, events_read, expected_events, total, upload_wants
from tests.corpus import DATA, summary, with_summary
from tests.servers import wait_for

SESSION_EVENTS = {CATALOGUE[t].name for t in SessionDeriver.wants}
LOG = DATA / "threads-mvar.nonthreaded.l.eventlog"


async def test_every_corpus_log_uploads_to_its_reference_figures(api, influxd, influx_database):
    logs = with_summary()
    # every log the corpus helper found: at least all of tests/data's
    assert len(logs) >= len(list(DATA.glob("*.summary.json"))) >= 20
    problems = []
    for path in logs:
        data = path.read_bytes()
        ref = summary(path)
        status, body = await api.call("POST", "/api/v1/upload", data=data)
        if status != 201:
            problems.append((path.name, status, body))
            continue
        sid = body["session"]
        got = (body["bytes"], body["events"], body["stored"])
        want = (len(data), expected_events(ref, data), True)
        if got != want:
            problems.append((path.name, "figures", got, want))
        if sid is None:    # no events at all: no points, no session
            if body["points"] or body["events"]:
                problems.append((path.name, "no session", body))
            continue
        # one gc point with statistics per collection; their pauses sum to the union
        gc = (count(influxd, influx_database, "gc", sid, "copied_bytes"),
              total(influxd, influx_database, "gc", sid, "pause_ns"))
        if gc != (ref["gc"]["collections"], ref["gc"]["pause_union_ns"]):
            problems.append((path.name, "gc", gc, ref["gc"]))
        status, shown = await api.call("GET", f"/api/v1/sessions/{sid}")
        # the session point (program, RTS) exists when the log has start-up events
        has_run = any(ref["counts"].get(n) for n in SESSION_EVENTS)
        if status != 200 or shown["points"] < body["points"] or shown["stored"] != has_run \
                or (ref["counts"].get("RtsIdentifier") and not shown["rts"]):
            problems.append((path.name, "show", status, shown))
    assert not problems, problems


async def test_a_big_log_in_small_chunks_equals_one_body(api):
    data = LOG.read_bytes()
    status, whole = await api.call("POST", "/api/v1/upload", data=data)
    assert status == 201, whole

    async def dribble():
        for i in range(0, len(data), 777):
            yield data[i:i + 777]
    status, chunked = await api.call("POST", "/api/v1/upload", data=dribble())
    assert status == 201, chunked
    for key in ("session", "bytes", "events", "points", "app"):
        assert chunked[key] == whole[key], key
    assert whole["events"] == expected_events(summary(LOG), data)


async def test_not_an_eventlog_is_refused_with_the_offset(api):
    status, body = await api.call("POST", "/api/v1/upload", data=b"GIF89a" + bytes(5000))
    assert status == 422
    assert body["offset"] == 0 and body["events"] == 0 and "eventlog" in body["error"]


async def test_garbage_after_good_events_keeps_the_events_before_it(api):
    data = (DATA / "parallelTest.eventlog").read_bytes()
    # cut just before the end marker and append bytes no event starts with
    body_bytes = data[:-2] + b"\xfe\xfe" + bytes(64)
    status, body = await api.call("POST", "/api/v1/upload", data=body_bytes)
    assert status == 422, body
    assert body["offset"] == len(data) - 2
    assert body["events"] == events_read(data[:-2]) > 100
    assert body["points"] > 0 and body["session"]


async def test_a_cut_log_is_refused_naming_the_offset_and_keeps_what_came(api):
    data = LOG.read_bytes()
    cut = len(data) // 2
    dec = Decoder(only=upload_wants())
    dec.feed(data[:cut])
    before = events_read(data[:cut])
    assert dec.offset < cut      # the cut falls inside a record
    status, body = await api.call("POST", "/api/v1/upload", data=data[:cut])
    assert status == 422, body
    assert body["offset"] == dec.offset and str(dec.offset) in body["error"]
    assert body["events"] == before and body["points"] > 0
    status, shown = await api.call("GET", f"/api/v1/sessions/{body['session']}")
    assert status == 200 and shown["errors"] and "truncated" in shown["errors"][0]


async def test_resumable_upload_equals_a_one_shot_one(api):
    data = LOG.read_bytes()
    status, up = await api.call("POST", "/api/v1/uploads")
    assert status == 201 and up["offset"] == 0
    where = f"/api/v1/uploads/{up['id']}"
    parts = [data[:100_000], data[100_000:100_003], data[100_003:]]
    offset = 0
    for part in parts:
        status, body = await api.call("PUT", where, params={"offset": offset}, data=part)
        assert status == 200, body
        offset += len(part)
        assert body["offset"] == offset and body["state"] == "open"
    # a stale offset is refused with where the upload stands
    status, body = await api.call("PUT", where, params={"offset": 5}, data=b"xx")
    assert status == 409 and body["offset"] == len(data)
    status, body = await api.call("GET", where)
    assert status == 200 and body["offset"] == len(data) and body["state"] == "open"
    status, done = await api.call("POST", where + "/finish")
    assert status == 201, done
    status, once = await api.call("POST", "/api/v1/upload", data=data)
    for key in ("session", "bytes", "events", "points"):
        assert done[key] == once[key], key


async def test_a_chunk_cut_by_a_lost_connection_resumes_at_the_reported_offset(api):
    data = LOG.read_bytes()
    status, up = await api.call("POST", "/api/v1/uploads")
    where = f"/api/v1/uploads/{up['id']}"
    host, port = api.url.removeprefix("http://").split(":")
    # a PUT announcing the whole log, of which only part is sent before the line drops
    sent = 150_000
    head = (f"PUT {where}?offset=0 HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {api.tokens['admin']}\r\n"
            f"Content-Length: {len(data)}\r\nContent-Type: application/octet-stream\r\n\r\n")
    _, writer = await asyncio.open_connection(host, int(port))
    writer.write(head.encode() + data[:sent])
    await writer.drain()
    writer.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                                         b"\x01\x00\x00\x00\x00\x00\x00\x00")
    writer.close()
    while True:   # until the server has let go of the broken chunk
        status, body = await api.call("GET", where)
        if not body["receiving"]:
            break
        await asyncio.sleep(0.02)
    offset = body["offset"]
    assert status == 200 and body["state"] == "open" and 0 < offset <= sent
    status, body = await api.call("PUT", where, params={"offset": offset}, data=data[offset:])
    assert status == 200 and body["offset"] == len(data)
    status, done = await api.call("POST", where + "/finish")
    assert status == 201 and done["complete"]
    assert done["events"] == expected_events(summary(LOG), data)


async def test_cancelled_upload_ends_its_stream(api):
    status, up = await api.call("POST", "/api/v1/uploads")
    data = LOG.read_bytes()
    await api.call("PUT", f"/api/v1/uploads/{up['id']}", params={"offset": 0}, data=data[:50_000])
    status, _ = await api.call("DELETE", f"/api/v1/uploads/{up['id']}")
    assert status == 204
    status, _ = await api.call("GET", f"/api/v1/uploads/{up['id']}")
    assert status == 404
    assert not api.service.registry.live
    (rec,) = api.service.registry.finished.values()
    assert rec.error == "upload cancelled" and rec.bytes == 50_000


async def test_limits_size_concurrency_and_stalls(influxd, influx_database, tmp_path):
    data = LOG.read_bytes()
    # (a generous idle timeout here: the first upload below must stay open
    # however long the second one takes on a busy machine)
    cfg = api_config(max_upload_bytes=100_000, max_concurrent_uploads=1,
                     upload_idle_timeout=60)
    settings = settings_for(influxd, influx_database, tmp_path)
    async with Running(settings, cfg) as api:
        # announced too large: refused before a byte is read
        status, body = await api.call("POST", "/api/v1/upload", data=data)
        assert status == 413 and body["bytes"] == 0
        # chunked, no length: cut at the limit, what came before is kept
        async def gen():
            for i in range(0, len(data), 10_000):
                yield data[i:i + 10_000]
        status, body = await api.call("POST", "/api/v1/upload", data=gen())
        assert status == 413 and body["bytes"] == 100_000 and body["events"] > 0
        # one upload at a time: a second one meanwhile gets 429
        release = asyncio.Event()

        async def slow():
            yield data[:1000]
            await release.wait()
            yield data[1000:2000]
        first = asyncio.create_task(api.call("POST", "/api/v1/upload", data=slow()))
        await wait_for(lambda: _receiving(api), 30, interval=0.01)
        status, body = await api.call("POST", "/api/v1/upload", data=data[:1000])
        assert status == 429, body
        release.set()
        status, body = await first
        assert status == 422 and body["bytes"] == 2000   # cut: truncated mid-log
    async with Running(settings, api_config(upload_idle_timeout=0.5)) as api:
        # a body that stalls past the idle timeout: 408, the stream ended
        async def stall():
            yield data[:1000]
            await asyncio.sleep(3)
            yield data[1000:2000]
        try:
            status, body = await api.call("POST", "/api/v1/upload", data=stall())
        except aiohttp.ClientError:
            status, body = None, None
        if status is not None:   # the answer may beat the unsent rest of the body
            assert status == 408, body
        assert not api.service.registry.live
        errors = [r.error for r in api.service.registry.finished.values()]
        assert any(e and "no body data" in e for e in errors), errors


def _receiving(api) -> bool:
    from ingest.api.state import UPLOADS
    return api.runner.app[UPLOADS].receiving > 0
