"""The stack's InfluxDB split on a real influxd with auth on: the admin's
one-shot ``liveprof influx setup`` (the liveprof-setup service) applies the
scheme; ``liveprof serve`` runs as the database user the influxdb image
creates (INFLUXDB_USER: ``GRANT ALL ON <db>``, no admin), with the environment
compose gives it, and its points land; that user cannot create or drop
databases, retention policies or users, so it cannot run the setup itself.
(InfluxDB 1.x lets any user with WRITE on a database create continuous
queries on it: no user short of "no write" can be kept from that.)

Docker is not here, so the image's init step is done as the image does it
(CREATE DATABASE, CREATE USER, REVOKE ALL, GRANT ALL ON the database)."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.corpus import DATA, summary
from tests.deploy.compose import compose, generated_env, service_env
from tests.servers import InfluxServer, reap

LIVEPROF = str(Path(sys.executable).with_name("liveprof"))
LOG = DATA / "threads-mvar.nonthreaded.l.eventlog"
WAIT = 90.0   # a guard against a hang


@pytest.fixture
def stack(tmp_path):
    """A real influxd initialised as the influxdb:1.8 image would be from
    the stack's environment, and the environments of the two liveprof services."""
    env = generated_env(tmp_path)
    services = compose()["services"]
    influx = service_env(services["influxdb"], env)
    server = InfluxServer(tmp_path / "influxd", auth=True, admin_user=influx["INFLUXDB_ADMIN_USER"],
                          admin_password=influx["INFLUXDB_ADMIN_PASSWORD"])
    server.start()
    db, user, password = influx["INFLUXDB_DB"], influx["INFLUXDB_USER"], influx["INFLUXDB_USER_PASSWORD"]
    server.query(f'CREATE DATABASE "{db}"')
    server.query(f"CREATE USER \"{user}\" WITH PASSWORD '{password}'")
    server.query(f'REVOKE ALL PRIVILEGES FROM "{user}"')
    server.query(f'GRANT ALL ON "{db}" TO "{user}"')

    def liveprof_env(service: str) -> dict[str, str]:
        out = {k: v for k, v in os.environ.items() if not k.startswith("LIVEPROF_")}
        theirs = service_env(services[service], env)
        out.update({k: v for k, v in theirs.items()
                    if k.startswith(("LIVEPROF_INFLUX_", "LIVEPROF_SETUP"))})
        out["LIVEPROF_INFLUX_URL"] = server.url          # not http://influxdb:8086
        out["LIVEPROF_STATE_DIR"] = str(tmp_path / f"state-{service}")
        return out

    try:
        yield server, influx, liveprof_env
    finally:
        server.stop()


def as_user(server, user: str, password: str, path: str, params: dict, data: bytes = b""):
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    req = urllib.request.Request(f"{server.url}{path}?{urllib.parse.urlencode(params)}", data=data,
                                 headers={"Authorization": f"Basic {token}"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_setup_as_admin_then_serve_as_the_database_user(stack, tmp_path):
    server, influx, liveprof_env = stack
    db = influx["INFLUXDB_DB"]
    setup = subprocess.run([LIVEPROF, "influx", "setup"], env=liveprof_env("liveprof-setup"),
                           capture_output=True, text=True, timeout=WAIT, check=False)
    assert setup.returncode == 0, setup.stderr
    policies = {row[0]: row for row in server.series("SHOW RETENTION POLICIES", db)[0]["values"]}
    assert {"raw", "forever"} <= set(policies) and policies["raw"][-1] is True

    env = liveprof_env("liveprof")
    assert env["LIVEPROF_INFLUX_USER"] == influx["INFLUXDB_USER"]
    raw = env["LIVEPROF_INFLUX_RETENTION_POLICY"]
    # the log is from 2015-2026: raw keeps 7 days, so its points go to the never-expiring
    # policy the setup made; the user's rights are the same on every policy of its database
    env["LIVEPROF_INFLUX_RETENTION_POLICY"] = "forever"
    env["LIVEPROF_INFLUX_FLUSH_INTERVAL"] = "0.2"
    err = tmp_path / "serve.err"
    with open(err, "wb") as stderr:
        proc = subprocess.Popen([LIVEPROF, "serve", "--file", str(LOG)], env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
    want = summary(LOG)["gc"]["collections"]
    try:
        deadline = time.monotonic() + WAIT
        got = 0
        while time.monotonic() < deadline and proc.poll() is None:
            rows = server.series('SELECT count("pause_ns") FROM "forever"."gc"', db)
            got = rows[0]["values"][0][1] if rows else 0
            if got == want:
                break
            time.sleep(0.2)
        assert got == want, err.read_text()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(WAIT) == 0, err.read_text()
    finally:
        reap(proc)
    log = err.read_text()
    assert "ERROR" not in log and "refused" not in log and "denied" not in log, log
    assert "retention/rollups" not in log        # setup = false: serve did not try it

    # and a point of today goes to raw, the database's default, by name as compose says
    user, password = influx["INFLUXDB_USER"], influx["INFLUXDB_USER_PASSWORD"]
    status, text = as_user(server, user, password, "/write",
                           {"db": db, "rp": raw, "precision": "s"},
                           f"probe,app=t v=1i {int(time.time())}".encode())
    assert status == 204, text
    assert raw == "raw"
    assert server.series('SELECT count("v") FROM "raw"."probe"', db)[0]["values"][0][1] == 1


@pytest.mark.parametrize("statement", [
    'CREATE DATABASE "other"',
    'CREATE RETENTION POLICY "r" ON "{db}" DURATION 1d REPLICATION 1',
    "CREATE USER \"intruder\" WITH PASSWORD 'x' WITH ALL PRIVILEGES",
    'DROP DATABASE "{db}"',
])
def test_the_database_user_is_no_admin(stack, statement):
    server, influx, _ = stack
    db = influx["INFLUXDB_DB"]
    status, text = as_user(server, influx["INFLUXDB_USER"], influx["INFLUXDB_USER_PASSWORD"],
                           "/query", {"q": statement.format(db=db)})
    assert status == 403 and "requires admin privilege" in json.loads(text)["error"], text


def test_only_the_admin_can_run_the_setup(stack):
    server, influx, liveprof_env = stack
    env = liveprof_env("liveprof")          # serve's login, not the setup's
    done = subprocess.run([LIVEPROF, "influx", "setup"], env=env, capture_output=True, text=True,
                          timeout=WAIT, check=False)
    assert done.returncode != 0
    assert influx["INFLUXDB_USER"] in done.stderr and "Traceback" not in done.stderr
    assert not any(row[0] == "raw" for row in
                   server.series("SHOW RETENTION POLICIES", influx["INFLUXDB_DB"])[0]["values"])
