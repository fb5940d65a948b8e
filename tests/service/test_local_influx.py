"""``liveprof serve --start-influxd`` (ingest/local_influx.py) through real
subprocesses: with nothing at a loopback URL it starts influxd with its files
in the state directory, listening on loopback only; points land in it; it
stops with the service, also when the service is killed; an InfluxDB already
answering is used instead of a second one."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from ingest.local_influx import loopback_address
from tests.corpus import DATA, summary
from tests.servers import free_port, reap

LOG = DATA / "threads-mvar.nonthreaded.l.eventlog"
LIVEPROF = str(Path(sys.executable).with_name("liveprof"))
WAIT = 90.0   # a generous guard against a hang, not a measurement


def serve(tmp_path: Path, url: str, *extra: str, env_extra: dict | None = None):
    """``liveprof serve --start-influxd`` importing LOG, its stderr in a file.
    The log is from 2015: points go to the never-expiring ``forever`` policy,
    which raw's 7 days would drop."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEPROF_")}
    env.update({"LIVEPROF_STATE_DIR": str(tmp_path / "state"),
                "LIVEPROF_INFLUX_RETENTION_POLICY": "forever",
                "LIVEPROF_INFLUX_FLUSH_INTERVAL": "0.2"}, **(env_extra or {}))
    stderr = open(tmp_path / "serve.err", "wb")
    proc = subprocess.Popen([LIVEPROF, "serve", "--start-influxd", "--influx-url", url,
                             "--file", str(LOG), *extra],
                            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=stderr)
    stderr.close()
    return proc


def query(url: str, q: str, db: str = "liveprof") -> list:
    params = urllib.parse.urlencode({"q": q, "db": db})
    with urllib.request.urlopen(f"{url}/query?{params}", timeout=10) as resp:
        result = json.loads(resp.read())["results"][0]
    return result.get("series", [])


def gc_count(url: str, db: str = "liveprof") -> int:
    try:
        rows = query(url, 'SELECT count("pause_ns") FROM "forever"."gc"', db)
    except OSError:
        return -1
    return rows[0]["values"][0][1] if rows else 0


def wait_for(predicate, what: str, proc=None, err: Path | None = None):
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.1)
    log = err.read_text(errors="replace") if err else ""
    raise AssertionError(f"no {what} within {WAIT:.0f} s; serve's log:\n{log}")


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def listening(pid: int) -> list[str]:
    """Local addresses of the TCP/UDP sockets of ``pid`` that listen (or, for
    UDP, are bound): its socket inodes matched in /proc/net/*."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        m = re.fullmatch(r"socket:\[(\d+)\]", os.readlink(fd))
        if m:
            inodes.add(m[1])
    out = []
    for table in ("tcp", "tcp6", "udp", "udp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            f = line.split()
            if f[9] in inodes and (f[3] == "0A" or table.startswith("udp")):
                out.append(f"{table} {f[1]}")
    return out


def started_pid(err: Path) -> int:
    m = re.search(r"started influxd \(pid (\d+)\)", err.read_text())
    assert m, err.read_text()
    return int(m[1])


def test_serve_starts_influxd_on_loopback_and_stops_it(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    err = tmp_path / "serve.err"
    proc = serve(tmp_path, url)
    try:
        want = summary(LOG)["gc"]["collections"]
        wait_for(lambda: gc_count(url) == want, f"{want} gc points in the started influxd",
                 proc, err)
        pid = started_pid(err)
        assert alive(pid)
        # its files are in the state directory; it listens on loopback only
        home = tmp_path / "state" / "influxdb"
        assert (home / "influxd.conf").is_file() and (home / "meta").is_dir()
        assert (home / "data" / "liveprof").is_dir()
        addresses = listening(pid)
        assert f"tcp 0100007F:{port:04X}" in addresses, addresses   # 127.0.0.1:port
        assert all(a.split()[1].startswith(("0100007F:", "00000000000000000000000001000000:"))
                   for a in addresses), addresses
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(WAIT) == 0, err.read_text()
    finally:
        reap(proc)
    assert not alive(pid), "influxd outlived the service"
    assert "stopped influxd" in err.read_text()


def test_a_killed_serve_takes_its_influxd_along(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    err = tmp_path / "serve.err"
    proc = serve(tmp_path, url)
    try:
        wait_for(lambda: "started influxd" in err.read_text(), "influxd start", proc, err)
        pid = started_pid(err)
        proc.kill()            # no chance to stop it: the parent-death signal does
        proc.wait(WAIT)
        wait_for(lambda: not alive(pid), "end of the orphaned influxd")
    finally:
        reap(proc)


def test_an_influxdb_already_answering_is_used(influxd, tmp_path):
    database = f"t_local_{os.getpid()}"
    err = tmp_path / "serve.err"
    proc = serve(tmp_path, influxd.url, "--database", database)
    try:
        want = summary(LOG)["gc"]["collections"]
        wait_for(lambda: gc_count(influxd.url, database) == want, "points in the running influxd",
                 proc, err)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(WAIT) == 0, err.read_text()
    finally:
        reap(proc)
        influxd.drop_database(database)
    assert not (tmp_path / "state" / "influxdb").exists()
    assert "started influxd" not in err.read_text()
    assert f"InfluxDB answers at {influxd.url}: using it" in err.read_text()
    assert influxd.running


def test_no_influxd_to_start_is_a_clear_environment_error(tmp_path):
    missing = tmp_path / "no-such-influxd"
    proc = serve(tmp_path, f"http://127.0.0.1:{free_port()}",
                 env_extra={"LIVEPROF_INFLUXD": str(missing)})
    assert proc.wait(WAIT) == 2
    text = (tmp_path / "serve.err").read_text()
    assert f"LIVEPROF_INFLUXD={str(missing)!r} is not an executable file" in text
    assert "Traceback" not in text


@pytest.mark.parametrize("url, want", [
    ("http://127.0.0.1:8086", ("127.0.0.1", 8086)),
    ("http://localhost", ("127.0.0.1", 8086)),
    ("http://user:pw@127.0.0.2:9999/", ("127.0.0.2", 9999)),
    ("http://[::1]:8087", ("::1", 8087)),
    ("https://127.0.0.1:8086", None),       # a local influxd would speak plain http
    ("http://10.0.0.5:8086", None),
    ("http://influx.example:8086", None),
    ("http://127.0.0.1:99999", None),
])
def test_only_plain_http_on_loopback_gets_a_local_influxd(url, want):
    assert loopback_address(url) == want


def test_a_port_taken_by_something_else_is_named(tmp_path):
    """Not InfluxDB at the URL, but the port is taken: say so, start nothing."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        proc = serve(tmp_path, f"http://127.0.0.1:{port}")
        assert proc.wait(WAIT) == 2
    text = (tmp_path / "serve.err").read_text()
    assert f"something listens on 127.0.0.1 port {port}" in text, text
    assert not (tmp_path / "state" / "influxdb").exists()
