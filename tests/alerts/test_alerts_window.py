"""MqttAlertSink's window (``WINDOW``) against a real, hung Mosquitto: alerts
queued together are published together, up to the window, before the first
PUBACK; the rest wait in the queue; once the broker answers, every alert
arrives once, in order."""

from __future__ import annotations

import asyncio

from ingest.sinks.mqtt import WINDOW, MqttAlertSink
from tests.alerts.helpers import Subscriber, derive_points, gc_points, wait_until
from tests.alerts.test_alerts_broker import LOG, config


async def test_alerts_queued_together_are_in_flight_together(mosquitto_factory, mqtt_topic):
    server = mosquitto_factory()
    gcs = gc_points(derive_points(LOG))
    over = sorted(p.fields["pause_ns"] for p in gcs)[-(WINDOW + 3)]  # WINDOW + 2 over it
    expected = [p for p in gcs if p.fields["pause_ns"] > over]
    assert len(expected) == WINDOW + 2
    async with Subscriber(server.host, server.port, mqtt_topic) as sub:
        async with MqttAlertSink(config(server, mqtt_topic, over)) as sink:
            await wait_until(lambda: sink.stats.connected, "connected")
            server.freeze()
            try:
                sink.submit(gcs)
                await wait_until(lambda: len(sink._inflight) == WINDOW, "a window in flight")
                await asyncio.sleep(0.2)  # no PUBACK can come: the window stays as it is
                assert len(sink._inflight) == WINDOW and sink.stats.published == 0
                assert sink.pending == WINDOW + 2
            finally:
                server.thaw()
            await wait_until(lambda: sink.stats.published == len(expected), "every alert acked")
        await sub.sentinel()
    got = sub.alerts()
    assert [payload["time_ns"] for _, payload in got] == [p.time for p in expected]
