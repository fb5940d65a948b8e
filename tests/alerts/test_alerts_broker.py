"""MqttAlertSink against a real Mosquitto (tests/servers.py): alerts for a
corpus log's long pauses arrive with the right payload and nothing else; an
outage costs nothing but the queue bound; a broker that is not there yet is
dialled again until it is."""

from __future__ import annotations

import asyncio
import logging
import uuid
from urllib.parse import unquote

import aiomqtt

from ingest.alerts import iso_time
from ingest.config import DeriveConfig
from ingest.sinks.mqtt import MqttAlertConfig, MqttAlertSink
from ingest.sources.base import StreamInfo
from ingest.streams import StreamRegistry
from tests.alerts.helpers import (
    Subscriber,
    TcpProxy,
    derive_points,
    gc_log,
    gc_points,
    wait_until,
)
from tests.corpus import DATA
from tests.servers import MosquittoServer

LOG = DATA / "heapprof.prof.nonthreaded.hb.eventlog"  # 199 collections, 14 major, 25 us .. 49 ms


def config(server, prefix: str, threshold_ns: int, **kw) -> MqttAlertConfig:
    return MqttAlertConfig(host=server.host, port=server.port, topic_prefix=prefix,
                           pause_threshold_ms=threshold_ns / 1e6, backoff_initial=0.05,
                           backoff_max=0.5, **kw)


def pick_threshold(gcs) -> int:
    """A threshold from the log's own pauses: its 75th percentile, so about a
    quarter of the collections are over it."""
    pauses = sorted(p.fields["pause_ns"] for p in gcs)
    return pauses[len(pauses) * 3 // 4]


def prefix_topic(mqtt_topic: str) -> str:
    return mqtt_topic.rstrip("/")


async def test_alerts_for_pauses_over_the_threshold(mosquitto, mqtt_topic):
    points = derive_points(LOG)
    gcs = gc_points(points)
    threshold = pick_threshold(gcs)
    cfg = config(mosquitto, mqtt_topic, threshold)
    assert cfg.pause_threshold_ns == threshold
    expected = [p for p in gcs if p.fields["pause_ns"] > threshold]
    assert expected and len(expected) < len(gcs)  # the log has pauses on both sides

    async with Subscriber(mosquitto.host, mosquitto.port, mqtt_topic) as sub:
        async with MqttAlertSink(cfg) as sink:
            for i in range(0, len(points), 7):  # in batches, as a stream submits them
                sink.submit(points[i:i + 7])
            await wait_until(lambda: sink.stats.published == len(expected), "every alert acked")
        await sub.sentinel()

    got = sub.alerts()
    assert len(got) == len(expected)
    assert sink.stats.gc_points == len(gcs)
    assert sink.stats.alerts == len(expected)
    assert sink.stats.dropped_full == sink.stats.dropped_shutdown == 0
    for (topic, payload), p in zip(got, expected):  # one publisher, QoS 1: in order
        tags = p.tags
        assert topic == f"{prefix_topic(mqtt_topic)}/{tags['app']}/{tags['session']}/alert/gc_pause"
        assert payload["alert"] == "gc_pause"
        assert (payload["app"], payload["host"], payload["session"]) == \
            (tags["app"], tags["host"], tags["session"])
        assert payload["time_ns"] == p.time
        assert payload["time"] == iso_time(p.time)
        assert payload["pause_ns"] == p.fields["pause_ns"]
        assert payload["pause_ms"] == p.fields["pause_ns"] / 1e6
        assert payload["pause_ms"] > payload["threshold_ms"] == threshold / 1e6
        assert payload["threshold_ns"] == threshold
        assert payload["generation"] == int(tags["gen"])
        assert payload["kind"] == tags["kind"]
        for key, value in p.fields.items():  # the gc point's other fields
            assert payload[key] == value


async def test_app_names_with_topic_characters_stay_one_level(mosquitto, mqtt_topic):
    app = "team/a+b#c %2F"
    points = derive_points(gc_log(), app=app)
    gcs = gc_points(points)
    threshold = min(p.fields["pause_ns"] for p in gcs) - 1  # every collection alerts
    async with Subscriber(mosquitto.host, mosquitto.port, mqtt_topic) as sub:
        # a wildcard subscription on the layout itself: + matches one level only
        async with aiomqtt.Client(mosquitto.host, mosquitto.port) as c:
            await c.subscribe(f"{prefix_topic(mqtt_topic)}/+/+/alert/gc_pause", qos=1)
            async with MqttAlertSink(config(mosquitto, mqtt_topic, threshold)) as sink:
                sink.submit(points)
                await wait_until(lambda: sink.stats.published == len(gcs), "every alert acked")
            layout = []
            async with asyncio.timeout(60):
                async for m in c.messages:
                    layout.append(m.topic.value)
                    if len(layout) == len(gcs):
                        break
        await sub.sentinel()
    assert len(sub.alerts()) == len(gcs)
    for topic in layout:
        levels = topic[len(mqtt_topic):].split("/")
        assert len(levels) == 4
        assert unquote(levels[0]) == app
        assert not set("+#") & set(levels[0])
    assert {p["app"] for _, p in sub.alerts()} == {app}


async def test_broker_outage_queues_drops_oldest_and_delivers_after_restart(mosquitto_factory):
    server = mosquitto_factory()
    prefix = f"liveprof-test/{uuid.uuid4().hex[:12]}/"
    points = derive_points(LOG)
    gcs = gc_points(points)
    threshold = pick_threshold(gcs)
    over = [p for p in gcs if p.fields["pause_ns"] > threshold]
    bound = len(over) // 2
    assert bound >= 2
    # a persistent subscriber: the broker keeps its subscription and its QoS 1
    # messages across the restart, so nothing depends on who reconnects first
    client_id = f"sub-{uuid.uuid4().hex[:8]}"
    async with Subscriber(server.host, server.port, prefix, client_id=client_id) as sub:
        async with MqttAlertSink(config(server, prefix, threshold, queue_size=bound)) as sink:
            await wait_until(lambda: sink.stats.connected, "the sink's first connection")
            first = len(over) // 4 or 1
            half = next(i for i, p in enumerate(points) if p is over[first - 1]) + 1
            sink.submit(points[:half])  # alerts while the broker is up
            await wait_until(lambda: sink.stats.published == first, "alerts before the outage")

            server.stop()
            await wait_until(lambda: not sink.stats.connected and sink.stats.connect_failures >= 2,
                             "the sink to notice the outage and retry")
            for p in points[half:]:  # one at a time: each submit returns, the loop runs on
                sink.submit([p])
            rest = len(over) - first
            assert sink.pending == bound
            assert sink.stats.dropped_full == rest - bound
            assert sink.stats.alerts == len(over)
            failures = sink.stats.connect_failures
            await wait_until(lambda: sink.stats.connect_failures > failures, "more retries")
            assert sink.stats.published == first  # nothing pretended to go out

            server.start()
            await wait_until(lambda: sink.stats.published == first + bound,
                             "the queued alerts after the restart")
            assert sink.stats.connects >= 2
        await sub.sentinel()

    got = [p for _, p in sub.alerts()]
    # before the outage: the first alerts; after: the newest `bound` of the rest
    want = over[:first] + over[len(over) - bound:]
    # QoS 1 is at least once: a message may repeat after a reconnect, none is missing
    assert sorted({g["time_ns"] for g in got}) == sorted(p.time for p in want)
    assert len(got) >= len(want)


async def test_unreachable_broker_is_logged_and_dialled_again(tmp_path, caplog):
    server = MosquittoServer(tmp_path / "late")  # a port, nobody on it yet
    prefix = f"liveprof-test/{uuid.uuid4().hex[:12]}/"
    gcs = gc_points(derive_points(gc_log()))
    threshold = pick_threshold(gcs)
    over = [p for p in gcs if p.fields["pause_ns"] > threshold]
    caplog.set_level(logging.WARNING, logger="liveprof.sinks.mqtt")
    sink = MqttAlertSink(config(server, prefix, threshold))
    try:
        async with sink:
            sink.submit(gcs)
            await wait_until(lambda: sink.stats.connect_failures >= 3, "three failed dials")
            assert sink.stats.connects == 0 and sink.pending == len(over)
            lines = [r.getMessage() for r in caplog.records
                     if "cannot connect to the MQTT broker" in r.getMessage()]
            assert len(lines) >= 3
            assert f"mqtt://127.0.0.1:{server.port}" in lines[0]
            server.start()
            # every alert acknowledged by the broker (PUBACK); delivery to
            # subscribers is the other tests' business
            await wait_until(lambda: sink.stats.published == len(over),
                             "alerts after the broker came up")
            assert sink.stats.connects == 1 and sink.pending == 0
    finally:
        server.stop(graceful=False)


async def test_unresolvable_host_is_retried(caplog):
    caplog.set_level(logging.WARNING, logger="liveprof.sinks.mqtt")
    cfg = MqttAlertConfig(url="mqtt://broker.invalid:1883", backoff_initial=0.05,
                          backoff_max=0.2)
    async with MqttAlertSink(cfg) as sink:
        await wait_until(lambda: sink.stats.connect_failures >= 2, "two failed dials")
        assert sink.stats.last_error
    assert any("mqtt://broker.invalid:1883" in r.getMessage() for r in caplog.records)


async def test_ingest_keeps_running_with_the_broker_stopped(mosquitto_factory):
    """The service's own path (StreamRegistry -> Stream -> every sink) with
    the broker down: the other sink gets every point, the alert sink queues
    its alerts, and they go out once the broker is back."""
    server = mosquitto_factory()
    server.stop()
    prefix = f"liveprof-test/{uuid.uuid4().hex[:12]}/"
    data = LOG.read_bytes()
    reference = gc_points(derive_points(LOG))
    threshold = pick_threshold(reference)

    class Collect:
        def __init__(self):
            self.points = []

        def submit(self, points):
            self.points.extend(points)

    other = Collect()
    async with MqttAlertSink(config(server, prefix, threshold)) as sink:
        await wait_until(lambda: sink.stats.connect_failures >= 1, "a failed dial")
        registry = StreamRegistry(DeriveConfig(), [sink, other])
        stream = registry(StreamInfo("file", str(LOG), 1))
        for i in range(0, len(data), 4096):
            stream.data(data[i:i + 4096])
            await asyncio.sleep(0)  # the sink's reconnect loop runs in between
        stream.end(None)
        gcs = gc_points(other.points)
        over = [p for p in gcs if p.fields["pause_ns"] > threshold]
        assert len(gcs) == len(reference) and over
        assert sink.stats.gc_points == len(gcs)
        assert sink.pending == len(over) and sink.stats.published == 0
        assert registry.live == {}
        server.start()
        await wait_until(lambda: sink.stats.published == len(over), "the backlog")
        assert sink.pending == 0


async def test_alert_without_puback_is_published_again(mosquitto, mqtt_topic):
    """QoS 1 at least once: the broker never acknowledges (a relay swallows
    the PUBLISH), the sink gives the connection up after its timeout, and the
    same alert goes out on the next connection."""
    gcs = gc_points(derive_points(gc_log()))
    worst = max(gcs, key=lambda p: p.fields["pause_ns"])
    threshold = worst.fields["pause_ns"] - 1  # exactly one alert
    async with TcpProxy(mosquitto.host, mosquitto.port) as proxy, \
            Subscriber(mosquitto.host, mosquitto.port, mqtt_topic) as sub:
        cfg = MqttAlertConfig(host="127.0.0.1", port=proxy.port, topic_prefix=mqtt_topic,
                              pause_threshold_ms=threshold / 1e6, timeout=0.5,
                              backoff_initial=0.05, backoff_max=0.2)
        async with MqttAlertSink(cfg) as sink:
            await wait_until(lambda: sink.stats.connected, "a connection through the relay")
            proxy.black_hole = True
            sink.submit(gcs)
            assert sink.pending == 1
            await wait_until(lambda: sink.stats.disconnects >= 1, "the PUBACK wait to give up")
            assert sink.stats.published == 0 and sink.pending == 1
            proxy.black_hole = False
            proxy.cut()
            await wait_until(lambda: sink.stats.published == 1, "the alert, published again")
            assert sink.stats.republished >= 1
        await sub.sentinel()
    got = sub.alerts()
    assert [p["time_ns"] for _, p in got][-1:] == [worst.time]
    assert {p["time_ns"] for _, p in got} == {worst.time}


async def test_pause_share_alerts_per_window(mosquitto, mqtt_topic):
    """The optional share alert: per window of ``pause_share_window``, the
    summed pauses of the collections starting in it over the window length;
    threshold from the log's own windows, expected windows computed here."""
    points = derive_points(LOG)
    gcs = gc_points(points)
    window_ns = 50_000_000  # 50 ms: the 1.2 s log spans some two dozen windows
    sums: dict[int, list[int]] = {}
    for p in gcs:
        sums.setdefault(p.time - p.time % window_ns, []).append(p.fields["pause_ns"])
    shares = sorted(sum(v) / window_ns for v in sums.values())
    threshold = shares[len(shares) // 2]
    expected = {start: v for start, v in sums.items() if sum(v) / window_ns > threshold}
    assert expected and len(expected) < len(sums)
    cfg = MqttAlertConfig(host=mosquitto.host, port=mosquitto.port, topic_prefix=mqtt_topic,
                          pause_threshold_ms=max(p.fields["pause_ns"] for p in gcs) / 1e6,
                          pause_share_threshold=threshold, pause_share_window=window_ns / 1e9)
    async with Subscriber(mosquitto.host, mosquitto.port, mqtt_topic) as sub:
        async with MqttAlertSink(cfg) as sink:
            sink.submit(points)
            await wait_until(lambda: sink.stats.connected, "a connection")
        # leaving judged the last window and published what was queued
        assert sink.stats.dropped_shutdown == 0 and sink.stats.share_late == 0
        await sub.sentinel()
    got = {p["time_ns"]: (t, p) for t, p in sub.alerts()}
    assert sorted(got) == sorted(expected)
    tags = gcs[0].tags
    for start, pauses in expected.items():
        topic, payload = got[start]
        assert topic == (f"{prefix_topic(mqtt_topic)}/{tags['app']}/{tags['session']}"
                         "/alert/gc_pause_share")
        assert payload["alert"] == "gc_pause_share"
        assert payload["pause_total_ns"] == sum(pauses)
        assert payload["pause_max_ns"] == max(pauses)
        assert payload["collections"] == len(pauses)
        assert payload["window_ns"] == window_ns
        assert payload["share"] == sum(pauses) / window_ns > payload["threshold"] == threshold
