"""A file derived by two processes (ingest/split.py) gives the points one
process gives, ends as it does, and a second process that fails is stopped
with a clear error and never waited on for ever."""

from __future__ import annotations

import collections
import os
import re
import signal
import sys
import time

import pytest

from ingest.derive.config import DeriveConfig
from ingest.derive.point import lines
from ingest.derive.registry import REGISTRY
from ingest.session import Session, settings_from
from ingest.split import (
    IMPORT_SECOND,
    MIN_BYTES,
    SECOND,
    Spare,
    SplitSession,
    WorkerError,
    groups,
    open_session,
    splits,
)
from tests.cli.helpers import liveprof
from tests.corpus import DATA, log_id, logs

BIG = max(logs(), key=lambda p: p.stat().st_size)


def settings(names=None, live=False):
    return settings_from(DeriveConfig(measurements=names), live=live, fallback_host="h")


def derive(path, names=None, workers: object = 1):
    """Every line of ``path`` and its session."""
    session = open_session(str(path), settings(names), workers=workers)
    out: list[str] = []
    for batch in session.read(str(path)):
        out += lines(batch)
    out += lines(session.close())
    return out, session


def alive(pid: int) -> bool:
    """Running (not ended, nor a zombie waiting for whoever adopted it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def zombies() -> list[int]:
    """This process's children that ended and were not reaped."""
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] == "Z" and int(fields[1]) == os.getpid():
                found.append(int(pid))
    return found


@pytest.mark.parametrize("log", logs(), ids=log_id)
def test_two_processes_give_the_lines_of_one(log):
    one, single = derive(log)
    two, split = derive(log, workers=2)
    assert isinstance(split, SplitSession) and not isinstance(single, SplitSession)
    assert collections.Counter(two) == collections.Counter(one)
    assert split.end == single.end == split.child_end
    assert split.tags == single.tags
    assert split.events == single.events and split.bytes == single.bytes
    assert split.points == split.stats.points == single.stats.points == len(one)
    s, t = split.stats, single.stats
    assert (s.late_events, s.evicted_events, s.clock, s.stream_fault) == \
           (t.late_events, t.evicted_events, t.clock, t.stream_fault)
    assert split._proc.returncode == 0


def test_the_second_process_derives_its_group():
    """Each group's lines come from its own process: a lost or doubled group
    would change the multiset above; here each is seen where it belongs."""
    log = max((p for p in DATA.glob("*.eventlog")), key=lambda p: p.stat().st_size)
    parts = groups(None)
    assert parts is not None
    first, second = parts
    assert set(second) == set(SECOND) and set(first) | set(second) == set(REGISTRY)
    session = open_session(str(log), settings(), workers=2)
    mine: list[str] = []
    theirs: list[str] = []
    for batch in session.read(str(log)):
        (theirs if batch and isinstance(batch[0], str) else mine).extend(lines(batch))
    session.close()
    assert {line.split(",", 1)[0] for line in theirs} <= set(SECOND) and theirs
    assert not {line.split(",", 1)[0] for line in mine} & set(SECOND) and mine


def test_when_two_processes_are_used(tmp_path):
    small = DATA / "hello-ghc-8.6.5.eventlog"
    assert splits(str(small), settings()) is None                       # small: one
    assert splits(str(small), settings(), workers=2) is not None        # forced
    assert splits(str(small), settings(), workers="2") is not None
    assert splits(str(BIG), settings(), workers=1) is None
    assert splits(str(small), settings(live=True), workers=2) is None   # live order: one
    assert splits(str(small), settings(["gc", "heap"]), workers=2) is None      # one group
    assert splits(str(small), settings(["threads", "capability"]), workers=2) is None
    assert splits(str(small), settings(["gc", "threads"]), workers=2) == (["gc"], ["threads"])
    assert splits(str(small), settings(), workers=2, regular=False) is None
    big = tmp_path / "big.eventlog"
    with open(big, "wb") as f:
        f.truncate(MIN_BYTES - 1)
    assert splits(str(big), settings()) is None
    with open(big, "wb") as f:
        f.truncate(MIN_BYTES)
    expected = None if len(os.sched_getaffinity(0)) < 2 else groups(None)
    assert splits(str(big), settings()) == expected                      # large: two


def same_report(two: str, one: str) -> bool:
    """The same lines on stderr; a stream fault's once, naming the same event (its
    count of events before it and the time it jumps from are of the process that
    met it: that process saw only its own measurements' events)."""
    def norm(text: str) -> str:
        text = re.sub(r"event \d+ of the stream", "event N of the stream", text)
        return re.sub(r"time jumps \d+ ns (.*) from \d+ ns", r"time jumps T ns \1 from T0 ns",
                      text)
    return norm(two) == norm(one)


def cli_pair(path, *extra):
    one = liveprof("derive", path, "--host", "h", "--workers", "1", *extra)
    two = liveprof("derive", path, "--host", "h", "--workers", "2", *extra)
    return one, two


@pytest.mark.parametrize("name", ["threads-mvar.nonthreaded.l", "heapprof-small.prof.N2.hc-p"])
def test_derive_command(name):
    one, two = cli_pair(DATA / f"{name}.eventlog", "--stats")
    assert one.returncode == two.returncode == 0, two.stderr
    assert sorted(two.stdout.splitlines()) == sorted(one.stdout.splitlines()) and one.stdout
    # the --stats line: the same figures, but decoded events (the identity events
    # are decoded by both processes, and those two groups share some)
    decoded = re.compile(r"\((\d+) decoded")
    assert decoded.sub("", two.stderr) == decoded.sub("", one.stderr)
    assert int(decoded.findall(two.stderr)[0]) >= int(decoded.findall(one.stderr)[0])
    assert "Traceback" not in two.stderr


def test_cut_and_garbage_files_end_as_in_one_process(tmp_path):
    data = (DATA / "threads-mvar.nonthreaded.l.eventlog").read_bytes()
    cut = tmp_path / "cut.eventlog"
    cut.write_bytes(data[: len(data) * 2 // 3])
    garbage = tmp_path / "garbage.eventlog"
    middle = len(data) // 2
    garbage.write_bytes(data[:middle] + b"\xff" * 64 + data[middle:])
    noise = tmp_path / "noise.eventlog"
    noise.write_bytes(os.urandom(5000))
    for path in (cut, garbage, noise):
        one, two = cli_pair(path)
        assert one.returncode == two.returncode != 0, (path, two.stderr)
        assert same_report(two.stderr, one.stderr) and str(path) in two.stderr
        assert sorted(two.stdout.splitlines()) == sorted(one.stdout.splitlines())


def test_a_killed_second_process_is_a_clear_error_and_no_hang():
    session = open_session(str(BIG), settings(), workers=2)
    assert isinstance(session, SplitSession)
    pid = session._proc.pid
    mine = 0
    start = time.monotonic()
    with pytest.raises(WorkerError) as err:
        for i, batch in enumerate(session.read(str(BIG))):
            mine += len(batch)
            if i == 0:
                os.kill(pid, signal.SIGKILL)
    message = str(err.value)
    assert str(BIG) in message and f"pid {pid}" in message and "killed by signal 9" in message
    assert time.monotonic() - start < 30
    rest = session.close()     # what this process derived is kept
    assert mine + len(rest) > 0 and session.end is not None
    assert session._proc.returncode == -signal.SIGKILL and pid not in zombies()


class Garbage(SplitSession):
    WORKER = ("-c", "import sys, time; sys.stdout.buffer.write(b'not a frame at all' * 9); "
                    "sys.stdout.flush(); time.sleep(60)")


class Silent(SplitSession):
    WORKER = ("-c", "import time; time.sleep(60)")
    SILENCE = 0.5


class Dying(SplitSession):
    WORKER = ("-c", "import sys; sys.stderr.write('something broke\\n'); sys.exit(7)")


@pytest.mark.parametrize("cls, what", [(Garbage, "not its output"),
                                       (Silent, "sent nothing for 0.5 s"),
                                       (Dying, "exited with status 7 before it was done: "
                                               "something broke")])
def test_a_second_process_that_misbehaves_is_stopped(cls, what):
    log = DATA / "threads-mvar.nonthreaded.l.eventlog"
    parts = groups(None)
    assert parts is not None
    first, second = parts
    session = cls(str(log), settings(), first, second)
    start = time.monotonic()
    got = []
    with pytest.raises(WorkerError) as err:
        for batch in session.read(str(log)):
            got += batch
    assert what in str(err.value) and str(log) in str(err.value)
    assert time.monotonic() - start < 20
    got += session.close()
    assert got      # this process's points
    assert session._proc.returncode is not None and session._proc.pid not in zombies()


def test_the_second_process_dies_with_its_parent(tmp_path):
    """A parent killed outright (no clean-up) takes the second process along."""
    code = (f"import sys, time; sys.path.insert(0, {str(DATA.parent.parent)!r})\n"
            "from ingest.split import open_session\n"
            "from ingest.session import settings_from\n"
            "from ingest.derive.config import DeriveConfig\n"
            f"s = open_session({str(BIG)!r}, settings_from(DeriveConfig(), live=False, "
            "fallback_host='h'), workers=2)\n"
            "print(s._proc.pid, flush=True)\n"
            "time.sleep(60)\n")
    import subprocess
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        parent.kill()
        parent.wait(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and alive(child):
            time.sleep(0.05)
        assert not alive(child)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def test_one_session_for_small_files_and_streams():
    small = DATA / "hello-ghc-8.6.5.eventlog"
    assert isinstance(open_session(str(small), settings()), Session)


def test_a_second_process_started_early_is_taken_or_stopped():
    """``import`` starts the second process before its settings (``Spare``):
    a split session takes it (and gives the lines of one process, with the
    import's groups); a session that is not split stops and reaps it; a spare
    that died is replaced."""
    log = DATA / "threads-mvar.nonthreaded.l.eventlog"
    one, _ = derive(log)
    spare = Spare()
    session = open_session(str(log), settings(), workers=2, second=IMPORT_SECOND, spare=spare)
    assert isinstance(session, SplitSession) and session._proc is spare.proc
    assert set(session.second) == set(IMPORT_SECOND)
    two = [line for batch in session.read(str(log)) for line in lines(batch)]
    two += lines(session.close())
    assert collections.Counter(two) == collections.Counter(one)
    assert spare.proc.returncode == 0
    unused = Spare()
    single = open_session(str(log), settings(), workers=1, spare=unused)
    assert not isinstance(single, SplitSession)
    assert unused.proc.returncode == -signal.SIGKILL and unused.proc.pid not in zombies()
    dead = Spare()
    dead.proc.kill()
    dead.proc.wait()
    session = open_session(str(log), settings(), workers=2, spare=dead)
    assert isinstance(session, SplitSession) and session._proc is not dead.proc
    three = [line for batch in session.read(str(log)) for line in lines(batch)]
    three += lines(session.close())
    assert collections.Counter(three) == collections.Counter(one)
