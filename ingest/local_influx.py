"""A private InfluxDB 1.x for ``liveprof serve --start-influxd`` (and ``./run``).

Why: the quick start should be one command on a fresh machine.  When nothing
answers at the configured InfluxDB URL and that URL is on this machine
(loopback, plain http), serve starts ``influxd`` itself before the service and
stops it after the service has flushed its last points:

- config, meta, data and WAL under ``<state_dir>/influxdb`` (the service's own
  state directory, ``~/.local/state/liveprof`` or ``$XDG_STATE_HOME``), with
  its log in ``influxd.log`` beside them;
- the HTTP API on the URL's loopback address and port only; the RPC port
  (backup/restore) on a free loopback port; graphite, collectd, opentsdb, udp
  and the ifql listeners off, as are usage reporting and the ``_internal``
  monitor database;
- a process group of its own (a Ctrl-C reaches liveprof, which flushes before
  it stops influxd), and on Linux a parent-death signal, so a killed liveprof
  does not leave it behind.

``influxd`` is looked up on PATH (or ``$LIVEPROF_INFLUXD``); when missing,
root on a Debian-like system gets it installed with apt-get (the ``influxdb``
package); anyone else gets a ``LocalInfluxError`` saying what to install.

An InfluxDB that already answers at the URL is used as it is: this module
starts nothing then.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from .errors import LiveprofError

log = logging.getLogger("liveprof.local_influx")

START_TIMEOUT = 60.0     # seconds influxd gets to answer /ping (first start creates its files)
STOP_TIMEOUT = 30.0      # seconds it gets to close its shards after SIGTERM
PACKAGE = "influxdb"     # Debian/Ubuntu package with influxd 1.x


class LocalInfluxError(LiveprofError):
    """The local influxd could not be found, installed or started."""


def loopback_address(url: str) -> tuple[str, int] | None:
    """``(host, port)`` when ``url`` is plain http on a loopback host
    (``localhost``, 127.0.0.0/8, ``::1``); None otherwise (a server elsewhere,
    or https, which a local influxd would not speak)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        return None
    host = parts.hostname
    try:
        port = parts.port or 8086
    except ValueError:
        return None
    if host == "localhost":
        return "127.0.0.1", port
    try:
        if ipaddress.ip_address(host).is_loopback:
            return host, port
    except ValueError:
        pass
    return None


def answers(url: str, timeout: float = 2.0) -> bool:
    """Whether an InfluxDB answers ``GET /ping`` at ``url`` (any 2xx; 1.x
    answers 204 without credentials)."""
    parts = urllib.parse.urlsplit(url)
    bare = parts._replace(netloc=parts.netloc.rpartition("@")[2])   # no user:password@
    try:
        with urllib.request.urlopen(urllib.parse.urlunsplit(bare).rstrip("/") + "/ping",
                                    timeout=timeout) as resp:
            return 200 <= resp.status < 300
    except (OSError, urllib.error.URLError, ValueError):
        return False


def find_influxd(install: bool = True) -> str:
    """The influxd binary: ``$LIVEPROF_INFLUXD``, else PATH (and the usual
    sbin places), else installed with apt-get when ``install`` and root."""
    explicit = os.environ.get("LIVEPROF_INFLUXD")
    if explicit:
        if os.access(explicit, os.X_OK):
            return explicit
        raise LocalInfluxError(f"LIVEPROF_INFLUXD={explicit!r} is not an executable file")
    found = _which_influxd()
    if found:
        return found
    apt = shutil.which("apt-get")
    if install and apt and os.geteuid() == 0:
        log.warning("influxd is not installed: installing the %r package with apt-get", PACKAGE)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        for cmd in ([apt, "update", "-qq"], [apt, "install", "-y", "-qq", PACKAGE]):
            done = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, check=False)
            if done.returncode != 0:
                raise LocalInfluxError(f"`{' '.join(cmd)}` failed (exit status "
                                       f"{done.returncode}); install InfluxDB 1.x yourself")
        _disable_package_service()
        found = _which_influxd()
        if found:
            return found
        raise LocalInfluxError(f"apt-get installed {PACKAGE!r} but no influxd is on PATH")
    how = (f"apt-get install {PACKAGE} (as root; Debian/Ubuntu)" if apt
           else "InfluxDB 1.x from your system's packages or https://portal.influxdata.com")
    raise LocalInfluxError(
        "no InfluxDB answers and influxd is not installed: install it with " + how
        + ", or set LIVEPROF_INFLUXD to the binary, or point --influx-url at a running InfluxDB")


def _which_influxd() -> str | None:
    found = shutil.which("influxd")
    if found:
        return found
    for candidate in ("/usr/bin/influxd", "/usr/sbin/influxd", "/usr/local/bin/influxd"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _disable_package_service() -> None:
    """Debian's package starts its own influxd on every interface (``:8086``)
    where systemd runs; liveprof installed it only for the binary, so that
    service is stopped and disabled, and the log says so."""
    systemctl = shutil.which("systemctl")
    if not systemctl or not Path("/run/systemd/system").is_dir():
        return
    done = subprocess.run([systemctl, "disable", "--now", "influxdb.service"],
                          stdin=subprocess.DEVNULL, capture_output=True, check=False)
    if done.returncode == 0:
        log.warning("stopped and disabled the package's influxdb.service (it listens on every "
                    "interface); liveprof runs its own influxd on loopback")


def config_text(directory: Path, host: str, port: int, rpc_port: int) -> str:
    """influxd 1.x configuration: everything under ``directory``, listening
    only on ``host:port`` (HTTP) and ``127.0.0.1:rpc_port`` (RPC)."""
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    d = directory
    sections: dict[str, dict[str, object]] = {
        "meta": {"dir": d / "meta", "retention-autocreate": True, "logging-enabled": False},
        "data": {"dir": d / "data", "wal-dir": d / "wal", "query-log-enabled": False},
        "monitor": {"store-enabled": False},
        "http": {"enabled": True, "bind-address": bind, "auth-enabled": False,
                 "log-enabled": False, "pprof-enabled": False, "https-enabled": False,
                 "unix-socket-enabled": False},
        "ifql": {"enabled": False},
        "logging": {"level": "warn", "suppress-logo": True},
        "continuous_queries": {"enabled": True, "log-enabled": False},
    }
    out = ["# written by liveprof (ingest/local_influx.py) at every start; edits are lost",
           "reporting-disabled = true", f'bind-address = "127.0.0.1:{rpc_port}"', ""]
    for section, values in sections.items():
        out.append(f"[{section}]")
        out += [f"  {key} = {_toml(value)}" for key, value in values.items()]
        out.append("")
    for listener in ("graphite", "collectd", "opentsdb", "udp"):
        out += [f"[[{listener}]]", "  enabled = false", ""]
    return "\n".join(out)


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class LocalInfluxd:
    """One influxd child process, its files in ``directory``."""

    def __init__(self, directory: Path, host: str, port: int, binary: str) -> None:
        self.directory = Path(directory)
        self.host, self.port, self.binary = host, port, binary
        self.log_path = self.directory / "influxd.log"
        self.config_path = self.directory / "influxd.conf"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.config_path.write_text(config_text(self.directory, self.host, self.port,
                                                _free_loopback_port()))
        with open(self.log_path, "ab") as logfile:
            self.proc = subprocess.Popen(
                [self.binary, "run", "-config", str(self.config_path)],
                stdin=subprocess.DEVNULL, stdout=logfile, stderr=subprocess.STDOUT,
                cwd=self.directory, start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise LocalInfluxError(f"influxd exited with status {self.proc.returncode} "
                                       f"while starting; see {self.log_path}:\n{self.log_tail()}")
            if answers(self.url, timeout=1.0):
                log.info("started influxd (pid %d) at %s, data in %s", self.proc.pid, self.url,
                         self.directory)
                return
            time.sleep(0.1)
        self.stop()
        raise LocalInfluxError(f"influxd did not answer at {self.url} within "
                               f"{START_TIMEOUT:.0f} s; see {self.log_path}:\n{self.log_tail()}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            log.warning("influxd (pid %d) did not stop within %.0f s: killing it", proc.pid,
                        STOP_TIMEOUT)
            proc.kill()
            proc.wait(STOP_TIMEOUT)
        log.info("stopped influxd (pid %d)", proc.pid)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@contextlib.contextmanager
def influxd_for(url: str, state_dir: Path, *, install: bool = True) -> Iterator[LocalInfluxd | None]:
    """Around the service: if an InfluxDB answers at ``url``, yield None and
    use it; else, if ``url`` is loopback http, start influxd with its files in
    ``state_dir/influxdb``, yield it and stop it on the way out; else (a
    server elsewhere that is down) log that nothing is started, yield None."""
    if answers(url):
        log.info("InfluxDB answers at %s: using it", _no_credentials(url))
        yield None
        return
    where = loopback_address(url)
    if where is None:
        log.warning("nothing answers at %s, which is not plain http on this machine: no "
                    "local influxd started; the service keeps trying it", _no_credentials(url))
        yield None
        return
    if _accepts(*where):
        raise LocalInfluxError(f"something listens on {where[0]} port {where[1]} but does not "
                               f"answer as InfluxDB (GET /ping): choose another --influx-url port")
    server = LocalInfluxd(Path(state_dir) / "influxdb", *where, find_influxd(install))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _no_credentials(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
