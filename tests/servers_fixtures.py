"""Pytest fixtures for the real test servers of ``tests/servers.py``.

Use as a plugin: ``pytest_plugins = ["tests.servers_fixtures"]`` in a conftest.

- ``influxd``: one InfluxDB for the whole session (no auth); do not stop it
  (a test that stopped it anyway gets it restarted by ``influx_database``).
- ``influx_database``: a fresh database name on ``influxd``, created, dropped after.
- ``influxd_factory``: ``make(auth=False, settings=None) -> InfluxServer``, a
  private started server, stopped at the end of the test: for tests that stop,
  restart or crash InfluxDB, or need auth.
- ``mosquitto``: one broker for the session; ``mqtt_topic``: a unique topic prefix.
- ``mosquitto_factory``: ``make() -> MosquittoServer``, private, for stop/restart tests.

Servers are local binaries; a missing one fails the test with what to install.
"""

from __future__ import annotations

import uuid

import pytest

from tests.servers import InfluxServer, MosquittoServer


@pytest.fixture(scope="session")
def influxd(tmp_path_factory):
    server = InfluxServer(tmp_path_factory.mktemp("influxd"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def influx_database(influxd):
    """A unique, freshly created database on the session ``influxd``."""
    if not influxd.running:  # an earlier test stopped the shared server
        influxd.start()
    name = f"t_{uuid.uuid4().hex[:12]}"
    influxd.create_database(name)
    yield name
    if not influxd.running:
        influxd.start()
    influxd.drop_database(name)


@pytest.fixture
def influxd_factory(tmp_path_factory):
    servers: list[InfluxServer] = []

    def make(*, auth: bool = False, settings: dict | None = None, **kwargs) -> InfluxServer:
        server = InfluxServer(tmp_path_factory.mktemp("influxd_private"), auth=auth, settings=settings,
                              **kwargs)
        servers.append(server)
        server.start()
        return server

    yield make
    for server in servers:
        server.stop(graceful=False)


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory):
    server = MosquittoServer(tmp_path_factory.mktemp("mosquitto"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def mqtt_topic(mosquitto):
    """A topic prefix no other test uses, e.g. ``liveprof-test/3f2a.../``."""
    if not mosquitto.running:
        mosquitto.start()
    return f"liveprof-test/{uuid.uuid4().hex[:12]}/"


@pytest.fixture
def mosquitto_factory(tmp_path_factory):
    servers: list[MosquittoServer] = []

    def make(**kwargs) -> MosquittoServer:
        server = MosquittoServer(tmp_path_factory.mktemp("mosquitto_private"), **kwargs)
        servers.append(server)
        server.start()
        return server

    yield make
    for server in servers:
        server.stop(graceful=False)
