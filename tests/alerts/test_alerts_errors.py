"""Errors are translated at the sink's edge (issue 13): against a real
Mosquitto that is down or refuses the login, no ``aiomqtt.MqttError`` nor
``OSError`` leaves ``MqttAlertSink``; ``healthcheck`` raises ``AlertSinkError``
naming the broker and what failed, never the credentials; closing does not
raise; the publisher's log and ``last_error`` say the same."""

from __future__ import annotations

import logging
import uuid

import aiomqtt
import pytest

from ingest.sinks.errors import AlertSinkError, SinkError
from ingest.sinks.mqtt import MqttAlertConfig, MqttAlertSink
from tests.alerts.helpers import derive_points, gc_log, gc_points, login_only, wait_until
from tests.servers import MosquittoServer

USER, PASSWORD, WRONG = "alert-user", "s3cret-pw", "wr0ng-pw"


@pytest.fixture
def login_broker(mosquitto_factory, tmp_path) -> MosquittoServer:
    return mosquitto_factory(extra_config=login_only(tmp_path, USER, PASSWORD))


def settings(server: MosquittoServer, **kw) -> MqttAlertConfig:
    kw.setdefault("host", server.host)
    kw.setdefault("port", server.port)
    return MqttAlertConfig(topic_prefix=f"liveprof-test/{uuid.uuid4().hex[:12]}",
                           pause_threshold_ms=0, backoff_initial=0.05, backoff_max=0.2,
                           timeout=5, close_timeout=0.2, **kw)


def assert_no_secret(text: str) -> None:
    for secret in (USER, PASSWORD, WRONG):
        assert secret not in text, text


async def test_the_right_login_passes_the_healthcheck(login_broker):
    """The broker of the tests below refuses only what is wrong."""
    sink = MqttAlertSink(settings(login_broker, username=USER, password=PASSWORD))
    await sink.healthcheck()


@pytest.mark.parametrize("login", ["wrong password", "unknown user", "anonymous", "in the url"])
async def test_a_refused_login_is_an_alert_sink_error_without_credentials(login_broker, login):
    where = f"{login_broker.host}:{login_broker.port}"
    cfg = {"wrong password": lambda: settings(login_broker, username=USER, password=WRONG),
           "unknown user": lambda: settings(login_broker, username=WRONG, password=PASSWORD),
           "anonymous": lambda: settings(login_broker),
           "in the url": lambda: settings(login_broker, url=f"mqtt://{USER}:{WRONG}@{where}")}[login]()
    shown = f"mqtt://{'' if login == 'anonymous' else '***@'}{where}"
    with pytest.raises(AlertSinkError) as info:
        await MqttAlertSink(cfg).healthcheck()
    error = info.value
    assert isinstance(error, SinkError) and not error.retryable  # waiting will not mend it
    assert str(error).startswith(f"the MQTT broker {shown} refused the login: ")
    assert isinstance(error.__cause__, aiomqtt.MqttError)
    assert_no_secret(str(error))


async def test_a_publisher_refused_its_login_keeps_dialling_and_closes_quietly(login_broker,
                                                                              caplog):
    caplog.set_level(logging.WARNING, logger="liveprof.sinks.mqtt")
    gcs = gc_points(derive_points(gc_log()))
    sink = MqttAlertSink(settings(login_broker, username=USER, password=WRONG))
    async with sink:
        sink.submit(gcs)
        await wait_until(lambda: sink.stats.connect_failures >= 2, "two refused logins")
        status = sink.status()
        assert status["healthy"] and status["state"] == "connecting"  # a broker away is no death
        assert status["last_error"].startswith(f"the MQTT broker mqtt://***@{login_broker.host}:"
                                               f"{login_broker.port} refused the login")
        assert sink.stats.connects == 0 and sink.pending == len(gcs)
    assert sink.stats.dropped_shutdown == len(gcs) and sink.status()["state"] == "stopped"
    lines = [r.getMessage() for r in caplog.records if "refused the login" in r.getMessage()]
    assert len(lines) >= 2 and "retrying in" in lines[0]
    for line in [r.getMessage() for r in caplog.records]:
        assert_no_secret(line)


async def test_a_broker_that_is_down_is_a_retryable_alert_sink_error(tmp_path):
    down = MosquittoServer(tmp_path / "down")  # a free port, nobody listening
    sink = MqttAlertSink(settings(down, username=USER, password=PASSWORD))
    with pytest.raises(AlertSinkError) as info:
        await sink.healthcheck()
    error = info.value
    assert error.retryable
    assert str(error).startswith(f"cannot connect to the MQTT broker mqtt://***@{down.host}:{down.port}: ")
    assert isinstance(error.__cause__, aiomqtt.MqttError)
    assert_no_secret(str(error))

    async with sink:  # the publisher dials in vain; leaving does not raise
        sink.submit(gc_points(derive_points(gc_log()))[:3])
        await wait_until(lambda: sink.stats.connect_failures >= 2, "two failed dials")
        assert sink.healthy
        assert sink.stats.last_error.startswith("cannot connect to the MQTT broker mqtt://***@")
    assert sink.stats.dropped_shutdown == 3
    await sink.close()  # again: nothing left to do, nothing raised


async def test_a_lost_connection_is_named_with_the_broker(mosquitto_factory, caplog):
    caplog.set_level(logging.WARNING, logger="liveprof.sinks.mqtt")
    server = mosquitto_factory()
    async with MqttAlertSink(settings(server)) as sink:
        await wait_until(lambda: sink.stats.connected, "connected")
        server.stop()
        await wait_until(lambda: sink.stats.disconnects >= 1 and sink.stats.connect_failures >= 1,
                         "the loss and a failed dial")
        assert sink.healthy
    lost = [r.getMessage() for r in caplog.records
            if r.getMessage().startswith("lost the connection to the MQTT broker")]
    assert len(lost) == 1 and f"mqtt://{server.host}:{server.port}: " in lost[0]
    assert "reconnecting in" in lost[0]
