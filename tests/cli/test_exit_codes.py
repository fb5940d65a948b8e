"""Item 4 of issue 11: one exit rule for ``dump``, ``derive``, ``import``,
``upload`` and ``monitor`` (ingest/commands/outcome.py): 0 success, 1 bad
data (malformed, cut or empty; what came before the fault is still kept), 2
usage or environment.  A cut log is the same outcome everywhere (it was 0
for dump and import, 1 for upload)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
import urllib.request

import pytest

from tests.corpus import DATA
from tests.monitor import fake_monitor as fm
from tests.servers import free_port

from .helpers import CLI, REPO, clean_env, liveprof

LOG = DATA / "threads-mvar.nonthreaded.l.eventlog"
ADMIN = "exit-codes-admin-token-0123456789"
SECRET = "pw-s3cret-77"


def service(tmp_path, influx_url: str, database: str = "exit_codes"):
    """``liveprof serve`` with its HTTP API, until stopped."""
    port = free_port()
    env = clean_env(LIVEPROF_ADMIN_TOKEN=ADMIN, LIVEPROF_SETUP="false",
                    LIVEPROF_STATE_DIR=str(tmp_path / "state"))
    log = tmp_path / "serve.log"
    with open(log, "w") as err:
        proc = subprocess.Popen(CLI + ["serve", "--http", f"127.0.0.1:{port}", "--influx-url",
                                       influx_url, "--database", database], cwd=REPO, env=env,
                                stdout=subprocess.DEVNULL, stderr=err)
    proc.log = log
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/healthz", timeout=1).close()
            return proc, url
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)


def stop(proc) -> str:
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    return proc.log.read_text()


@pytest.fixture(scope="module")
def api_url(tmp_path_factory, influxd):
    influxd.create_database("exit_codes")
    proc, url = service(tmp_path_factory.mktemp("api"), influxd.url)
    yield url
    stop(proc)


@pytest.fixture
def logs(tmp_path):
    data = LOG.read_bytes()
    out = {"complete": LOG, "cut": tmp_path / "cut.eventlog",
           "malformed": tmp_path / "malformed.eventlog", "empty": tmp_path / "empty.eventlog"}
    out["cut"].write_bytes(data[: len(data) // 2])
    # a good header, then bytes that are no event record of it
    out["malformed"].write_bytes(data[: len(data) // 2] + b"\x7f\x7f" + b"\0" * 64)
    out["empty"].write_bytes(b"")
    return out


def run_command(name: str, path, influxd, api_url):
    if name == "import":
        return liveprof("import", path, "--influx-url", influxd.url, "--database",
                        "exit_codes", "--timeout", "30")
    if name == "upload":
        return liveprof("upload", path, "--url", api_url, "--token", ADMIN, "--no-progress")
    return liveprof(name, path)


def kept_something(name: str, run) -> bool:
    """What came before the fault was printed, imported or uploaded."""
    if name in ("dump", "derive"):
        return bool(run.stdout.strip())
    if name == "import":
        return " 0 points written" not in run.stderr and "points written" in run.stderr
    body = json.loads(run.stdout.splitlines()[0])
    return body.get("events", 0) > 0


EXPECTED = {"complete": 0, "cut": 1, "malformed": 1, "empty": 1}


@pytest.mark.parametrize("case", list(EXPECTED))
@pytest.mark.parametrize("name", ["dump", "derive", "import", "upload"])
def test_the_same_rule_for_every_command(name, case, logs, influxd, api_url):
    run = run_command(name, logs[case], influxd, api_url)
    assert run.returncode == EXPECTED[case], (run.stdout[-500:], run.stderr)
    assert "Traceback" not in run.stderr
    if case in ("complete", "cut", "malformed"):
        assert kept_something(name, run), (run.stdout[-500:], run.stderr)
    if case != "complete":
        assert str(logs[case]) in run.stderr


def test_usage_errors_are_2(tmp_path, influxd, api_url):
    assert liveprof("derive", LOG, "--window", "0").returncode == 2
    assert liveprof("derive", LOG, "--measurements", "nope").returncode == 2
    assert liveprof("import", LOG, "--influx-url", "http://127.0.0.1:9").returncode == 2
    assert liveprof("upload", LOG, "--url", api_url, "--token", "wrong").returncode == 2
    assert liveprof("upload", LOG, "--url", "http://127.0.0.1:9", "--token", "t").returncode == 2
    assert liveprof("dump", "--no-such-flag", LOG).returncode == 2


def test_monitor_exit_codes():
    with fm.TcpMonitor(LOG, max_connections=1) as good:
        run = liveprof("monitor", f"127.0.0.1:{good.port}", "--once", timeout=60)
    assert run.returncode == 0, run.stderr
    with fm.TcpMonitor(LOG, raw=b"\x00\x00\x00\x10garbage-garbage!", max_connections=1) as bad:
        run = liveprof("monitor", f"127.0.0.1:{bad.port}", "--once", timeout=60)
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr
    assert liveprof("monitor", "127.0.0.1:99999").returncode == 2


def test_monitor_cannot_listen_is_2():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        run = liveprof("monitor", "--udp", f"127.0.0.1:{port}", "--once", timeout=60)
    assert run.returncode == 2, run.stderr
    assert f"127.0.0.1:{port}" in run.stderr and "Traceback" not in run.stderr


def test_readyz_never_shows_the_password_of_the_url(tmp_path):
    """Issue 12 item 8: /readyz names the InfluxDB it cannot reach, masked."""
    proc, url = service(tmp_path, f"http://bob:{SECRET}@127.0.0.1:9")
    try:
        try:
            urllib.request.urlopen(f"{url}/readyz", timeout=30)
            body = ""
        except urllib.error.HTTPError as exc:
            body = exc.read().decode()
    finally:
        log = stop(proc)
    assert "127.0.0.1:9" in body, body
    assert SECRET not in body and SECRET not in log
