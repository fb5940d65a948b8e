"""deploy/mosquitto (mosquitto.conf and start.sh) on the real broker (Debian's
mosquitto 2), with only its port and data directory moved: start.sh writes the
password file from MQTT_USER/MQTT_PASSWORD (hashed, private) and starts the
broker; anonymous clients and wrong passwords are refused; the login compose
gives liveprof publishes, and the health check's topic answers with it."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess

import aiomqtt
import pytest

from tests.corpus import REPO
from tests.deploy.compose import compose, generated_env, service_env
from tests.servers import MosquittoServer

CONF = REPO / "deploy" / "mosquitto" / "mosquitto.conf"
START = REPO / "deploy" / "mosquitto" / "start.sh"


class StackMosquitto(MosquittoServer):
    """The stack's config, started the stack's way (``sh start.sh``)."""

    def _config(self) -> str:
        text = CONF.read_text()
        text, n = re.subn(r"^listener 1883$", f"listener {self.port} 127.0.0.1", text,
                          flags=re.MULTILINE)
        assert n == 1
        assert "persistence_location /mosquitto/data/" in text
        assert re.search(r"^password_file /mosquitto/data/passwd$", text, flags=re.MULTILINE)
        text = text.replace("/mosquitto/data/", f"{self.directory}/")
        if os.geteuid() == 0:  # as root it would switch to the user "mosquitto"
            text += "user root\n"
        return text

    def _command(self) -> list[str]:
        return ["sh", str(START)]


def stack_logins(tmp_path) -> tuple[dict, dict]:
    env = generated_env(tmp_path)
    services = compose()["services"]
    return service_env(services["mosquitto"], env), service_env(services["liveprof"], env)


@pytest.fixture
def broker(tmp_path, monkeypatch):
    broker_env, live_env = stack_logins(tmp_path)
    server = StackMosquitto(tmp_path / "broker")
    monkeypatch.setenv("MQTT_USER", broker_env["MQTT_USER"])
    monkeypatch.setenv("MQTT_PASSWORD", broker_env["MQTT_PASSWORD"])
    monkeypatch.setenv("MOSQUITTO_CONF", str(server.config_path))
    monkeypatch.setenv("PASSWORD_FILE", str(server.directory / "passwd"))
    monkeypatch.setenv("MOSQUITTO", server.binary)
    monkeypatch.setenv("PATH", os.path.dirname(shutil.which("mosquitto_passwd") or "/usr/bin")
                       + os.pathsep + os.environ.get("PATH", ""))
    server.start()
    try:
        yield server, live_env
    finally:
        server.stop()


async def refused(server, **login) -> bool:
    try:
        async with aiomqtt.Client(server.host, server.port, timeout=10, **login):
            return False
    except aiomqtt.MqttError as exc:
        assert "not authori" in str(exc).lower() or "bad user name or password" in str(exc).lower(), exc
        return True


async def test_anonymous_clients_and_wrong_passwords_are_refused(broker):
    server, live = broker
    assert await refused(server)
    assert await refused(server, username=live["LIVEPROF_MQTT_USERNAME"], password="wrong")
    assert await refused(server, username="nobody", password=live["LIVEPROF_MQTT_PASSWORD"])
    # the password file is private and holds a hash, not the password
    passwd = server.directory / "passwd"
    assert passwd.stat().st_mode & 0o777 == 0o600
    text = passwd.read_text()
    assert text.startswith(live["LIVEPROF_MQTT_USERNAME"] + ":")
    assert live["LIVEPROF_MQTT_PASSWORD"] not in text


async def test_liveprof_login_publishes_and_the_health_check_topic_answers(broker):
    server, live = broker
    check = compose()["services"]["mosquitto"]["healthcheck"]["test"]
    topic = re.search(r"-t '([^']+)'", check[1])[1].replace("$$", "$")  # compose's escape
    login = {"username": live["LIVEPROF_MQTT_USERNAME"], "password": live["LIVEPROF_MQTT_PASSWORD"]}
    async with aiomqtt.Client(server.host, server.port, **login) as c:
        await c.subscribe(topic)
        await c.subscribe("liveprof/#", qos=1)
        await c.publish("liveprof/app/session/alert/gc_pause", b"{}", qos=1)
        got = {}
        async with asyncio.timeout(60):  # a guard against a hang
            async for m in c.messages:
                got[m.topic.value] = m.payload
                if len(got) == 2:
                    break
    assert got[topic].startswith(b"mosquitto version")
    assert got["liveprof/app/session/alert/gc_pause"] == b"{}"


def test_start_refuses_without_a_password(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MQTT_")}
    env.update(MQTT_USER="liveprof", PASSWORD_FILE=str(tmp_path / "passwd"),
               MOSQUITTO_CONF=str(tmp_path / "none.conf"), MOSQUITTO="/bin/false")
    done = subprocess.run(["sh", str(START)], env=env, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode != 0
    assert "MQTT_PASSWORD" in done.stderr
    assert not (tmp_path / "passwd").exists()
