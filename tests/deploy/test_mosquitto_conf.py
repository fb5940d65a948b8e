"""deploy/mosquitto/mosquitto.conf on the real broker (Debian's mosquitto 2),
with only its port and data directory moved: it starts, takes an anonymous
client as liveprof connects, and answers the compose health check's question
(the retained $SYS/broker/version)."""

from __future__ import annotations

import asyncio
import os
import re

import aiomqtt

from tests.corpus import REPO
from tests.deploy.compose import compose
from tests.servers import MosquittoServer

CONF = REPO / "deploy" / "mosquitto" / "mosquitto.conf"


class RepoConfigMosquitto(MosquittoServer):
    def _config(self) -> str:
        text = CONF.read_text()
        text, n = re.subn(r"^listener 1883$", f"listener {self.port} 127.0.0.1", text,
                          flags=re.MULTILINE)
        assert n == 1
        assert "persistence_location /mosquitto/data/" in text
        text = text.replace("/mosquitto/data/", f"{self.directory}/")
        if os.geteuid() == 0:  # as root it would switch to the user "mosquitto"
            text += "user root\n"
        return text


async def test_the_stack_config_runs_on_mosquitto(tmp_path):
    check = compose()["services"]["mosquitto"]["healthcheck"]["test"]
    topic = check[check.index("-t") + 1].replace("$$", "$")  # compose's escape
    server = RepoConfigMosquitto(tmp_path)
    server.start()
    try:
        async with aiomqtt.Client(server.host, server.port) as c:
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
    finally:
        server.stop()
