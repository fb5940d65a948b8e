"""The real test servers themselves: start, answer, stop, come back with their data."""

from __future__ import annotations

import socket
import uuid

import aiomqtt
import pytest

from tests.servers import InfluxServer, ServerError


def refuses(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


def test_the_session_influxd_answers_on_loopback(influxd, influx_database):
    assert influxd.url.startswith("http://127.0.0.1:")
    influxd.write("m v=1i 1", influx_database)
    assert influxd.series("SELECT v FROM m", influx_database)[0]["values"] == [[1, 1]]
    text = influxd.config_path.read_text()
    assert f'bind-address = "127.0.0.1:{influxd.rpc_port}"' in text
    assert "reporting-disabled = true" in text
    assert str(influxd.directory) in text  # meta, data and wal live in the tmp dir


def test_influx_database_gives_each_test_its_own_database(influxd, influx_database):
    names = [v[0] for v in influxd.series("SHOW DATABASES", influx_database)[0]["values"]]
    assert influx_database in names
    assert influxd.series("SHOW MEASUREMENTS", influx_database) == []


def test_influxd_stops_and_restarts_on_the_same_port_with_its_data(influxd_factory):
    server = influxd_factory()
    server.create_database("db")
    server.write("m v=1i 1", "db")
    port = server.port
    server.stop()
    assert not server.running and refuses(port)
    server.start()
    assert server.port == port
    assert server.series("SELECT v FROM m", "db")[0]["values"] == [[1, 1]]
    server.stop(graceful=False)  # a crash: written points are in the WAL
    server.start()
    assert server.series("SELECT count(v) FROM m", "db")[0]["values"][0][1] == 1


def test_influxd_with_auth_has_an_admin_and_refuses_anonymous_writes(influxd_factory):
    server = influxd_factory(auth=True)
    server.create_database("db")  # as the admin
    with pytest.raises(ServerError, match="401"):
        server.query("SHOW DATABASES", credentials=False)
    server.restart()  # the admin exists once, in the meta dir
    assert ["db"] in server.series("SHOW DATABASES", "db")[0]["values"]


def test_settings_reach_the_config(influxd_factory):
    server = influxd_factory(settings={"continuous_queries": {"run-interval": "1s"}})
    assert 'run-interval = "1s"' in server.config_path.read_text()


def test_a_missing_binary_is_a_clear_failure(tmp_path, monkeypatch):
    monkeypatch.setenv("LIVEPROF_INFLUXD", str(tmp_path / "no-such-influxd"))
    with pytest.raises(ServerError, match="LIVEPROF_INFLUXD"):
        InfluxServer(tmp_path)


async def test_mosquitto_delivers_and_comes_back_after_a_restart(mosquitto_factory):
    broker = mosquitto_factory()
    topic = f"liveprof-test/{uuid.uuid4().hex}"

    async def roundtrip(payload: bytes) -> bytes:
        async with aiomqtt.Client(broker.host, broker.port) as client:
            await client.subscribe(topic)
            await client.publish(topic, payload)
            async for message in client.messages:
                return message.payload

    assert await roundtrip(b"one") == b"one"
    broker.stop()
    assert refuses(broker.port)
    with pytest.raises(aiomqtt.MqttError):
        async with aiomqtt.Client(broker.host, broker.port, timeout=2):
            pass
    broker.start()
    assert await roundtrip(b"two") == b"two"


async def test_the_session_broker_and_topic_prefix(mosquitto, mqtt_topic):
    assert mqtt_topic.startswith("liveprof-test/") and mqtt_topic.endswith("/")
    async with aiomqtt.Client(mosquitto.host, mosquitto.port) as client:
        await client.subscribe(mqtt_topic + "#")
        await client.publish(mqtt_topic + "x", b"hi", retain=False)
        async for message in client.messages:
            assert message.topic.value == mqtt_topic + "x"
            break
