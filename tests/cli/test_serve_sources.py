"""Item 3 of issue 11: a source that cannot work as configured (a file where a
pipe or socket should be, a directory, a missing directory, no permission)
makes ``serve`` refuse to start with one line and exit 2; one that turns
bad while running is stopped with one log line, not restarted for ever;
transient faults are still retried."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import threading
import time

import pytest

from ingest.errors import PermanentSourceError
from ingest.service import Service
from ingest.sources.fifo import FifoConfig, FifoSource
from ingest.sources.file import FileConfig, FileSource
from ingest.sources.socket import SocketConfig, SocketSource

from .helpers import CLI, REPO, clean_env, liveprof, one_clear_line


def serve(tmp_path, *args, as_nobody=False):
    env = clean_env(LIVEPROF_STATE_DIR=str(tmp_path / "state"), LIVEPROF_SETUP="false")
    return liveprof("serve", "--influx-url", "http://127.0.0.1:9", *args, env=env,
                    as_nobody=as_nobody, timeout=60)


@pytest.fixture
def regular(tmp_path):
    path = tmp_path / "regular.file"
    path.write_bytes(b"not a pipe")
    return path


@pytest.mark.parametrize("flag", ["--fifo", "--socket"])
def test_a_regular_file_where_a_pipe_or_socket_should_be(flag, tmp_path, regular):
    run = serve(tmp_path, flag, str(regular))
    assert run.returncode == 2
    one_clear_line(run, str(regular), "regular file")


@pytest.mark.parametrize("flag", ["--fifo", "--follow", "--file", "--socket"])
def test_a_directory(flag, tmp_path):
    where = tmp_path / "dir"
    where.mkdir()
    run = serve(tmp_path, flag, str(where))
    assert run.returncode == 2
    one_clear_line(run, str(where), "directory")


def test_a_fifo_in_a_missing_directory(tmp_path):
    path = tmp_path / "no" / "such" / "dir.fifo"
    run = serve(tmp_path, "--fifo", str(path))
    assert run.returncode == 2
    one_clear_line(run, str(path), "No such file")


def test_a_fifo_where_it_may_not_be_created(tmp_path):
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    os.chmod(tmp_path, 0o755)
    path = closed / "prog.fifo"
    run = serve(tmp_path, "--fifo", str(path), as_nobody=True)
    assert run.returncode == 2
    one_clear_line(run, str(path), "Permission denied")


def test_a_file_to_import_that_is_not_there(tmp_path):
    path = tmp_path / "missing.eventlog"
    run = serve(tmp_path, "--file", str(path))
    assert run.returncode == 2
    one_clear_line(run, str(path))


# -- while running ----------------------------------------------------------------------

async def supervise(source, timeout: float = 30):
    """The service's restart loop around one source: returns when the loop
    gives the source up, times out if it keeps restarting it."""
    service = Service.__new__(Service)
    service.registry = _Nothing()
    await asyncio.wait_for(service._supervise(source), timeout)


class _Nothing:
    def __call__(self, info):
        raise AssertionError("no stream expected")


async def test_the_restart_loop_gives_up_a_permanent_fault(tmp_path, caplog):
    regular = tmp_path / "regular.file"
    regular.write_bytes(b"x")
    caplog.set_level("INFO", logger="liveprof")
    await supervise(FifoSource(FifoConfig(path=str(regular))))
    await supervise(FileSource(FileConfig(path=str(tmp_path), follow=True)))
    await supervise(SocketSource(SocketConfig(address=str(regular), backoff_initial=0.05)))
    stopped = [r for r in caplog.records if "stopped" in r.getMessage()]
    assert len(stopped) == 3, [r.getMessage() for r in caplog.records]
    assert not any(r.exc_info for r in caplog.records)       # one line each, no traceback


async def test_a_missing_socket_is_transient(tmp_path):
    """No socket yet: the program has not started; dialled again, not given up."""
    source = SocketSource(SocketConfig(address=str(tmp_path / "later.sock"),
                                       backoff_initial=0.05, backoff_max=0.05))
    source.check()                       # fine at start
    with pytest.raises(asyncio.TimeoutError):
        await supervise(source, timeout=1.0)
    assert source.failed_dials >= 2


def test_a_permanent_fault_is_a_permanent_source_error(tmp_path):
    regular = tmp_path / "regular.file"
    regular.write_bytes(b"x")
    for source in (FifoSource(FifoConfig(path=str(regular))),
                   FileSource(FileConfig(path=str(tmp_path))),
                   SocketSource(SocketConfig(address=str(regular)))):
        with pytest.raises(PermanentSourceError):
            source.check()


def test_a_followed_path_that_turns_into_a_directory_stops_once(tmp_path):
    """Started fine (a followed file may appear later), then the path turns
    out a directory: one line saying the source stopped, and no retries."""
    path = tmp_path / "later"
    env = clean_env(LIVEPROF_STATE_DIR=str(tmp_path / "state"), LIVEPROF_SETUP="false")
    proc = subprocess.Popen(CLI + ["serve", "--influx-url", "http://127.0.0.1:9",
                                   "--follow", str(path)], cwd=REPO, env=env,
                            stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")))
    reader.start()

    def wait_for(text: str) -> None:
        deadline = time.monotonic() + 60
        while not any(text in line for line in lines):
            assert time.monotonic() < deadline and proc.poll() is None, "".join(lines)
            time.sleep(0.05)

    try:
        wait_for("waiting for it")
        path.mkdir()
        wait_for("stopped")
        time.sleep(3)          # the restart loop's first delay is about 1 s
        assert proc.poll() is None      # the service itself runs on
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        reader.join(timeout=60)
    about = [line for line in lines if str(path) in line]
    assert sum("stopped" in line for line in about) == 1, "".join(lines)
    assert not any("Traceback" in line or "restarting" in line for line in lines), "".join(lines)
