"""Item 3 of issue 11: a path the command cannot read (a directory, a missing
path, an unreadable file) is one line naming it and exit 2, never a
traceback; an empty file is bad data (1), not a success."""

from __future__ import annotations

import os

import pytest

from tests.corpus import DATA

from .helpers import liveprof, one_clear_line

LOG = DATA / "hello-ghc-8.6.5.eventlog"


def command(name: str, path, influx_url: str) -> list:
    """``name`` on ``path`` with whatever else it needs to get that far."""
    if name == "import":
        return ["import", path, "--influx-url", influx_url, "--database", "user_errors",
                "--timeout", "20"]
    if name == "upload":
        # nothing listens there: the path must be judged before any connection
        return ["upload", path, "--token", "t", "--url", "http://127.0.0.1:9"]
    return [name, path]


COMMANDS = ["dump", "derive", "import", "upload"]


@pytest.fixture
def unreadable(tmp_path):
    path = tmp_path / "secret.eventlog"
    path.write_bytes(LOG.read_bytes())
    path.chmod(0)
    os.chmod(tmp_path, 0o755)      # nobody may look in, not read the file
    return path


@pytest.mark.parametrize("name", COMMANDS)
def test_a_directory(name, tmp_path, influxd):
    run = liveprof(*command(name, tmp_path, influxd.url))
    assert run.returncode == 2
    one_clear_line(run, str(tmp_path), "directory")


@pytest.mark.parametrize("name", COMMANDS)
def test_a_missing_path(name, tmp_path, influxd):
    missing = tmp_path / "nope" / "x.eventlog"
    run = liveprof(*command(name, missing, influxd.url))
    assert run.returncode == 2
    one_clear_line(run, str(missing), "No such file")


@pytest.mark.parametrize("name", COMMANDS)
def test_an_unreadable_file(name, unreadable, influxd):
    run = liveprof(*command(name, unreadable, influxd.url), as_nobody=True)
    assert run.returncode == 2
    one_clear_line(run, str(unreadable), "Permission denied")


@pytest.mark.parametrize("name", COMMANDS)
def test_an_empty_file_is_bad_data(name, tmp_path, influxd):
    empty = tmp_path / "empty.eventlog"
    empty.write_bytes(b"")
    run = liveprof(*command(name, empty, influxd.url))
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr
    assert f"{empty}: empty" in run.stderr


def test_upload_of_a_directory_says_so_not_errno(tmp_path):
    """The report: ``upload DIR`` printed ``[Errno 21] Can not write request body``."""
    run = liveprof("upload", tmp_path, "--token", "t", "--url", "http://127.0.0.1:9")
    assert run.returncode == 2
    assert "Errno" not in run.stderr and "request body" not in run.stderr
    one_clear_line(run, str(tmp_path))


def test_a_named_pipe_still_works_with_dump(tmp_path):
    """The path check must not open a pipe (its writer would lose its reader)."""
    import threading

    fifo = tmp_path / "log.fifo"
    os.mkfifo(fifo)
    data = LOG.read_bytes()

    def writer():
        with open(fifo, "wb") as f:
            f.write(data)

    thread = threading.Thread(target=writer)
    thread.start()
    run = liveprof("dump", "--summary", fifo, timeout=60)
    thread.join()
    assert run.returncode == 0, run.stderr
    assert '"complete": true' in run.stdout
