"""/readyz follows the MQTT alert publisher (issue 12, item 3): a running
service with its API and a real mosquitto; the publisher dies, readiness goes
false with the sink's status in the body, and comes back once the publisher
has been started again."""

from __future__ import annotations

import asyncio

from ingest.urls import mask_url
from tests.alerts.helpers import TcpProxy, wait_until
from tests.api.conftest import Running, api_config, settings_for


async def poll_readyz(api, want: int) -> dict:
    """The first /readyz answer with status ``want`` (a guard, not a timing)."""
    seen = {}

    async def ask():
        while True:
            status, body = await api.call("GET", "/readyz", who=None)
            if status == want:
                return body
            seen["last"] = (status, body)
            await asyncio.sleep(0.02)
    try:
        return await asyncio.wait_for(ask(), 60)
    except TimeoutError:
        raise AssertionError(f"/readyz never answered {want}; last {seen.get('last')}") from None


async def test_readiness_follows_a_dead_alert_publisher(influxd, influx_database, mosquitto,
                                                       mqtt_topic, tmp_path):
    async with TcpProxy(mosquitto.host, mosquitto.port) as proxy:
        settings = settings_for(influxd, influx_database, tmp_path, **{
            "mqtt": {"host": "127.0.0.1", "port": proxy.port, "topic_prefix": mqtt_topic,
                     "backoff_initial": 0.2, "backoff_max": 1.0}})
        async with Running(settings, api_config()) as api:
            alerts = api.service.alerts
            await wait_until(lambda: alerts.stats.connected, "the alert sink connected")
            assert (await poll_readyz(api, 200)) == {"ready": True}

            # The broker going away is not a dead publisher: still ready.
            proxy.black_hole = True
            proxy.cut()
            await wait_until(lambda: alerts.stats.disconnects >= 1, "the connection lost")
            assert (await api.call("GET", "/readyz", who=None))[0] == 200
            proxy.black_hole = False
            await wait_until(lambda: alerts.stats.connected, "connected again")

            # No input reaches the publisher's death any more (item 3 fixed those);
            # what is left is a fault of our own, as a bug would be: the next client
            # the publisher makes raises, so run() ends and the supervisor restarts it.
            def broken(cfg):
                raise RuntimeError("injected: the publisher's client is broken")
            alerts._client_factory = broken
            proxy.cut()
            body = await poll_readyz(api, 503)
            assert body["ready"] is False and "MQTT alerts" in body["error"], body
            st = body["alerts"]
            assert st["healthy"] is False and st["state"] == "restarting", st
            assert st["publisher_restarts"] >= 1 and "injected" in st["last_error"], st
            assert st["broker"] == f"mqtt://127.0.0.1:{proxy.port}"
            assert (await api.call("GET", "/healthz", who=None))[0] == 200

            alerts._client_factory = None  # repaired: the next restart connects
            assert (await poll_readyz(api, 200)) == {"ready": True}
            await wait_until(lambda: alerts.stats.connected, "connected after the restart")
            assert alerts.healthy
            status, text = await api.call("GET", "/metrics")
            assert status == 200
            restarts = [line for line in text.splitlines()
                        if line.startswith("liveprof_alerts_publisher_restarts_total ")]
            assert len(restarts) == 1 and float(restarts[0].split()[1]) >= 1, restarts


def test_mask_url_hides_every_userinfo_in_an_error_text():
    """The one masking function covers what the API's own did: any
    ``scheme://user:pw@`` inside a longer text, several at once."""
    text = ("cannot reach http://liveuser:s3cret@127.0.0.1:8086/ping (via "
            "https://proxy:p%40ss@gw.example:443/) nor mqtts://u@broker:8883")
    assert mask_url(text) == ("cannot reach http://***@127.0.0.1:8086/ping (via "
                              "https://***@gw.example:443/) nor mqtts://***@broker:8883")
