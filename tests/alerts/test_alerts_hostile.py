"""Alerts survive hostile data and a hostile broker (issue 12, item 3): a
program named 30,000 ``%`` (its ProgramArgs rewritten in a real log), names
a broker refuses, a broker that cuts the client for one alert, and a
publisher that dies."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import aiomqtt
import pytest

from ingest.sinks.mqtt import MAX_ATTEMPTS, MqttAlertConfig, MqttAlertSink
from ingest.sinks.mqtt_messages import LEVEL_MAX_BYTES
from tests.alerts.helpers import (
    Subscriber,
    derive_points,
    eventlog_with_program,
    gc_log,
    gc_points,
    wait_until,
)


def config(server, prefix: str, **kw) -> MqttAlertConfig:
    return MqttAlertConfig(host=server.host, port=server.port, topic_prefix=prefix,
                           pause_threshold_ms=0, backoff_initial=0.05, backoff_max=0.5, **kw)


def points_of_program(tmp_path: Path, program: str) -> list:
    """The points of a real log whose program is named ``program``."""
    log = tmp_path / f"{uuid.uuid4().hex}.eventlog"
    log.write_bytes(eventlog_with_program(gc_log(), program))
    points = derive_points(log)
    assert {p.tags["app"] for p in points} == {program}  # the name went through derivation
    return points


@pytest.mark.parametrize("program", ["%" * 30_000, "ctl\x01\x1f\x7f\u0085\ufffe\U0001fffe+#x"],
                         ids=["30000-percent", "control-and-non-characters"])
async def test_a_hostile_program_name_still_gets_its_alerts(mosquitto, mqtt_topic, tmp_path, program):
    points = points_of_program(tmp_path, program)
    over = [p for p in gc_points(points) if p.fields["pause_ns"] > 0]
    assert len(over) >= 5
    async with Subscriber(mosquitto.host, mosquitto.port, mqtt_topic) as sub:
        async with MqttAlertSink(config(mosquitto, mqtt_topic)) as sink:
            sink.submit(points)
            await wait_until(lambda: sink.stats.published == len(over), "every alert published")
            assert sink.healthy and sink.status()["state"] == "connected"
        await sub.sentinel()
    stats = sink.stats
    assert stats.failed == stats.publish_errors == stats.publisher_restarts == 0
    assert stats.disconnects == 0  # the broker never dropped the client for a bad topic
    got = sub.alerts()
    assert sorted(p["time_ns"] for _, p in got) == sorted(p.time for p in over)
    for topic, payload in got:
        levels = topic[len(mqtt_topic):].split("/")
        assert len(levels) == 4 and levels[2:] == ["alert", "gc_pause"]
        assert len(levels[0].encode()) <= LEVEL_MAX_BYTES
        assert payload["app"] == program  # the payload carries the name whole
    assert len({t for t, _ in got}) == 1


async def test_a_broker_that_cuts_the_client_for_one_alert_leaves_counters(mosquitto_factory, tmp_path,
                                                                          caplog):
    """Mosquitto drops a client that sends a packet over its max_packet_size:
    the oversized alert is tried MAX_ATTEMPTS times, given up and counted;
    the alerts after it are delivered on the same publisher."""
    server = mosquitto_factory(extra_config="max_packet_size 2000")
    prefix = f"liveprof-test/{uuid.uuid4().hex[:12]}/"
    big = [p for p in gc_points(points_of_program(tmp_path, "x" * 3000)) if p.fields["pause_ns"] > 0]
    small = [p for p in gc_points(points_of_program(tmp_path, "small")) if p.fields["pause_ns"] > 0]
    caplog.set_level(logging.ERROR, logger="liveprof.sinks.mqtt")
    async with Subscriber(server.host, server.port, prefix) as sub:
        async with MqttAlertSink(config(server, prefix)) as sink:
            await wait_until(lambda: sink.stats.connected, "connected")
            sink.submit(big[:1] + small)
            await wait_until(lambda: sink.stats.published == len(small), "the small alerts")
            assert sink.healthy
        await sub.sentinel()
    stats = sink.stats
    assert stats.failed == 1 and stats.failed_by_alert == {"gc_pause": 1}
    assert stats.publish_errors == MAX_ATTEMPTS
    assert stats.disconnects >= MAX_ATTEMPTS and stats.publisher_restarts == 0
    assert "dropped" in caplog.text and "does the broker refuse it" in caplog.text
    assert sorted(p["time_ns"] for _, p in sub.alerts()) == sorted(p.time for p in small)


async def test_a_publisher_that_dies_is_started_again(mosquitto, mqtt_topic, tmp_path, caplog):
    """The first client the publisher makes fails with an error that is not
    the broker's (as a bug would): the supervisor logs it, counts it, reports
    the sink unhealthy while it waits, and starts the publisher again."""
    calls = []

    def client_factory(cfg):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("injected: the publisher's first client")
        host, port, *_ = cfg.endpoint()
        return aiomqtt.Client(host, port, timeout=cfg.timeout)

    points = points_of_program(tmp_path, "restarted")
    over = [p for p in gc_points(points) if p.fields["pause_ns"] > 0]
    caplog.set_level(logging.ERROR, logger="liveprof.sinks.mqtt")
    cfg = config(mosquitto, mqtt_topic).model_copy(update={"backoff_initial": 1.0, "backoff_max": 2.0})
    async with Subscriber(mosquitto.host, mosquitto.port, mqtt_topic) as sub:
        sink = MqttAlertSink(cfg, client_factory=client_factory)
        assert not sink.healthy and sink.status()["state"] == "not started"
        async with sink:
            sink.submit(points)
            await wait_until(lambda: sink.stats.publisher_restarts == 1, "the restart")
            assert not sink.healthy and sink.status()["state"] == "restarting"  # >= 0.5 s of backoff
            await wait_until(lambda: sink.stats.published == len(over), "alerts after the restart")
            assert sink.healthy and sink.status()["state"] == "connected"
        assert not sink.healthy and sink.status()["state"] == "stopped"
        await sub.sentinel()
    assert "injected" in caplog.text and "starting it again" in caplog.text
    assert sorted(p["time_ns"] for _, p in sub.alerts()) == sorted(p.time for p in over)
