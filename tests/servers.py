"""Real servers for integration tests: InfluxDB 1.x (``influxd``) and Mosquitto.

Each server runs as a child process on free loopback ports with its config, data
and log under a directory the caller owns (a pytest tmp dir).  ``stop()`` and
``start()`` again keep the ports and the data, so a test can take the server
away in the middle of a stream and bring it back.

Only the local binaries are used (Debian's ``influxdb`` and ``mosquitto``
packages, which ``.ci/run`` installs); ``LIVEPROF_INFLUXD`` and
``LIVEPROF_MOSQUITTO`` may point at other binaries.  A missing binary raises
``ServerError`` with what to install: tests fail, they are never skipped.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

__all__ = ["InfluxServer", "MosquittoServer", "ServerError", "free_port", "reap", "wait_for"]

START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


class ServerError(RuntimeError):
    """A test server could not be found, started or stopped."""


def reap(proc: subprocess.Popen) -> None:
    """Kill and wait for a child process a test started, if it still runs
    (its ``finally``: a failed assertion never leaves a process behind)."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()


async def wait_for(condition: Callable[[], object], timeout: float, interval: float = 0.05) -> None:
    """Return once ``condition()`` is true, checking every ``interval`` seconds;
    ``TimeoutError`` after ``timeout`` seconds.  For what a test cannot await
    (a counter of the service or a sink, a row in a real server, a path that
    appears); where the code under test offers an event, wait on that instead."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 the one shared poll, for state with no event
            await asyncio.sleep(interval)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _find_binary(name: str, env: str, fallbacks: tuple[str, ...], package: str) -> str:
    explicit = os.environ.get(env)
    if explicit:
        if os.access(explicit, os.X_OK):
            return explicit
        raise ServerError(f"{env}={explicit!r} is not an executable file")
    found = shutil.which(name)
    if found:
        return found
    for candidate in fallbacks:
        if os.access(candidate, os.X_OK):
            return candidate
    raise ServerError(
        f"{name} not found on PATH nor in {', '.join(fallbacks)}: the integration tests need a real "
        f"server; install it (Debian/Ubuntu: apt-get install {package}; .ci/run does) "
        f"or set {env} to the binary"
    )


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _all_threads_stopped(pid: int) -> bool:
    """Every thread of ``pid`` is stopped (or gone), by /proc/PID/task/*/stat."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return True
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
                stat = f.read()
        except FileNotFoundError:  # the thread exited meanwhile
            continue
        state = stat[stat.rindex(b")") + 2:][:1]   # the field after "(comm)"
        if state not in (b"T", b"t", b"Z", b"X"):
            return False
    return True


class _Process:
    """A child server process with its log file; the base of both servers."""

    name = "server"

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.log_path = self.directory / f"{self.name}.log"
        self._proc: subprocess.Popen | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running else None

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError

    def _spawn_and_wait(self) -> None:
        if self.running:
            return
        log = open(self.log_path, "ab")
        try:
            self._proc = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                start_new_session=True,  # a Ctrl-C to pytest does not reach it first
            )
        finally:
            log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise ServerError(
                    f"{self.name} exited with status {self._proc.returncode} while starting; "
                    f"last lines of {self.log_path}:\n{self.log_tail()}"
                )
            if self._ready():
                return
            time.sleep(0.05)
        self.stop(graceful=False)
        raise ServerError(
            f"{self.name} did not answer within {START_TIMEOUT:.0f} s; "
            f"last lines of {self.log_path}:\n{self.log_tail()}"
        )

    def stop(self, graceful: bool = True) -> None:
        """Stop the server: SIGTERM and wait (``graceful``), or SIGKILL (a crash).
        Stopping a stopped server does nothing."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM if graceful else signal.SIGKILL)
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT)
        self._proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def freeze(self) -> None:
        """Hang the server (SIGSTOP): its ports still accept connections, it
        answers nothing.  Returns once every thread of it is stopped: kill()
        only starts the stop, and a thread already running, or one the kernel
        has yet to schedule, goes on for a while (milliseconds on a busy
        machine), long enough to answer a request sent meanwhile."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            raise ServerError(f"{self.name} is not running: nothing to freeze")
        proc.send_signal(signal.SIGSTOP)
        deadline = time.monotonic() + STOP_TIMEOUT
        while not _all_threads_stopped(proc.pid):
            if time.monotonic() > deadline:
                raise ServerError(f"{self.name} (pid {proc.pid}) did not stop within "
                                  f"{STOP_TIMEOUT:.0f} s of SIGSTOP")
            time.sleep(0.001)

    def thaw(self) -> None:
        """Let a frozen server run again (SIGCONT)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGCONT)

    def start(self) -> None:
        raise NotImplementedError

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class InfluxServer(_Process):
    """``influxd`` 1.x on 127.0.0.1: HTTP API on ``port``, RPC (backup/restore)
    on ``rpc_port``; meta, data and WAL under ``directory``; reporting, the
    ``_internal`` monitor store and the HTTP access log off.

    With ``auth=True`` the HTTP API requires credentials and an admin user
    ``admin_user``/``admin_password`` is created on the first start (InfluxDB
    lets the first admin be created without credentials).  ``settings`` adds or
    overrides config entries: ``{"continuous_queries": {"run-interval": "1s"}}``.
    """

    name = "influxd"

    def __init__(
        self,
        directory: Path,
        *,
        auth: bool = False,
        admin_user: str = "admin",
        admin_password: str = "admin-secret",
        settings: dict[str, dict[str, object]] | None = None,
    ) -> None:
        super().__init__(directory)
        self.binary = _find_binary(
            "influxd", "LIVEPROF_INFLUXD", ("/usr/bin/influxd", "/usr/local/bin/influxd"), "influxdb"
        )
        self.auth = auth
        self.admin_user = admin_user
        self.admin_password = admin_password
        self.settings = settings or {}
        self.port = free_port()
        self.rpc_port = free_port()
        self.config_path = self.directory / "influxd.conf"
        self._admin_created = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _config(self) -> str:
        d = self.directory
        sections: dict[str, dict[str, object]] = {
            "meta": {"dir": str(d / "meta"), "retention-autocreate": True, "logging-enabled": False},
            "data": {
                "dir": str(d / "data"),
                "wal-dir": str(d / "wal"),
                "query-log-enabled": False,
                "index-version": "inmem",
            },
            "monitor": {"store-enabled": False},
            "http": {
                "enabled": True,
                "bind-address": f"127.0.0.1:{self.port}",
                "auth-enabled": self.auth,
                "log-enabled": False,
                "pprof-enabled": False,
            },
            "logging": {"level": "warn", "suppress-logo": True},
            "continuous_queries": {"enabled": True, "log-enabled": False},
        }
        for section, values in self.settings.items():
            sections.setdefault(section, {}).update(values)
        out = ["reporting-disabled = true", f'bind-address = "127.0.0.1:{self.rpc_port}"', ""]
        for section, values in sections.items():
            out.append(f"[{section}]")
            for key, value in values.items():
                out.append(f"  {key} = {_toml(value)}")
            out.append("")
        return "\n".join(out)

    def _command(self) -> list[str]:
        return [self.binary, "run", "-config", str(self.config_path)]

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/ping", timeout=1) as resp:
                return resp.status == 204
        except (OSError, urllib.error.URLError):
            return False

    def start(self) -> None:
        """Start (or start again, on the same ports and data) and wait until
        ``/ping`` answers; on the first start with auth, create the admin."""
        if self.running:
            return
        self.config_path.write_text(self._config())
        self._spawn_and_wait()
        if self.auth and not self._admin_created:
            user = self.admin_user.replace("\\", "\\\\").replace('"', '\\"')
            password = self.admin_password.replace("\\", "\\\\").replace("'", "\\'")
            self.query(
                f"CREATE USER \"{user}\" WITH PASSWORD '{password}' WITH ALL PRIVILEGES",
                credentials=False,
            )
            self._admin_created = True

    # small synchronous client for fixtures and assertions

    def _request(self, path: str, params: dict[str, str], *, data: bytes | None, credentials: bool):
        headers = {}
        if self.auth and credentials:
            token = base64.b64encode(f"{self.admin_user}:{self.admin_password}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        req = urllib.request.Request(url, data=data, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            body = exc.read().decode(errors="replace")
            raise ServerError(f"influxd {path} answered {exc.code}: {body}") from exc

    def query(self, q: str, database: str | None = None, *, credentials: bool = True) -> list[dict]:
        """Run InfluxQL (POST /query, ns epochs) and return its ``results``; an
        error in any statement raises ``ServerError``."""
        params = {"q": q, "epoch": "ns"}
        if database:
            params["db"] = database
        _, body = self._request("/query", params, data=b"", credentials=credentials)
        results = json.loads(body).get("results", [])
        for result in results:
            if "error" in result:
                raise ServerError(f"influxd: {q!r}: {result['error']}")
        return results

    def series(self, q: str, database: str) -> list[dict]:
        """The series of a single-statement query, each ``{"name", "tags",
        "columns", "values"}``; empty when nothing matched."""
        return self.query(q, database)[0].get("series", [])

    def write(self, lines: str | list[str], database: str) -> None:
        """POST line protocol (ns precision) straight to /write."""
        body = lines if isinstance(lines, str) else "\n".join(lines)
        self._request("/write", {"db": database, "precision": "ns"}, data=body.encode(), credentials=True)

    def create_database(self, name: str) -> None:
        self.query(f'CREATE DATABASE "{name}"')

    def drop_database(self, name: str) -> None:
        self.query(f'DROP DATABASE "{name}"')


class MosquittoServer(_Process):
    """Mosquitto on 127.0.0.1:``port``, anonymous clients allowed, persistence
    in ``directory`` (retained messages survive a restart)."""

    name = "mosquitto"

    def __init__(self, directory: Path, *, extra_config: str = "") -> None:
        super().__init__(directory)
        self.binary = _find_binary(
            "mosquitto", "LIVEPROF_MOSQUITTO", ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"),
            "mosquitto")
        self.port = free_port()
        self.host = "127.0.0.1"
        self.config_path = self.directory / "mosquitto.conf"
        self.extra_config = extra_config

    def _config(self) -> str:
        user = "root" if os.geteuid() == 0 else ""  # as root it would switch to "mosquitto"
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {self.directory}/",
            "log_dest stdout",
            "log_type error",
            "log_type warning",
            "log_type notice",
        ]
        if user:
            lines.append(f"user {user}")
        if self.extra_config:
            lines.append(self.extra_config)
        return "\n".join(lines) + "\n"

    def _command(self) -> list[str]:
        return [self.binary, "-c", str(self.config_path)]

    def _ready(self) -> bool:
        return _port_open(self.port)

    def start(self) -> None:
        """Start (or start again on the same port) and wait until it accepts."""
        if self.running:
            return
        self.config_path.write_text(self._config())
        self._spawn_and_wait()


def _toml(value: object) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(str(value))
