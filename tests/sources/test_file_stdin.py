"""The file source (import once, follow a growing file) and the stdin source,
on real files, pipes and a child process's standard input."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading

import pytest

from ingest.errors import SourceError
from ingest.sources.file import FileConfig, FileSource
from ingest.sources.stdin import StdinConfig, StdinSource
from tests.corpus import REPO, all_logs, log_id, pick
from tests.servers import wait_for
from tests.sources.helpers import Streams, cancel, fd_targets, open_fds, other_tasks

LOGS = all_logs()
A = LOGS["threads-mvar.nonthreaded.l"].read_bytes()
B = LOGS["hello-ghc-8.6.5"].read_bytes()
C = LOGS["heapprof.prof.nonthreaded.hb"].read_bytes()
CUT = LOGS["heapprof.prof.N2.hb-refused"].read_bytes()     # a run with no end marker
GARBAGE = bytes(range(256)) * 3


def follow(path, **kw) -> FileSource:
    return FileSource(FileConfig(path=str(path), follow=True, poll_interval=0.02, **kw))


# -- import once -----------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(LOGS)[:8] + [
    log_id(pick("threads-mvar.N2.l.killed", "threads-mvar.nonthreaded.l.cut"))])
async def test_import_a_file_once(tmp_path, name):
    data = LOGS[name].read_bytes()
    got = Streams()
    src = FileSource(FileConfig(path=str(LOGS[name]), read_size=50_000))
    await asyncio.wait_for(src.run(got), 60)
    (s,) = got.streams
    assert bytes(s.data) == data
    assert s.ended and (s.error is None) == data.endswith(b"\xff\xff")
    assert src.skipped == 0 and src.sessions == 1


async def test_a_file_holding_several_runs_gives_a_session_per_run(tmp_path):
    path = tmp_path / "runs.eventlog"
    path.write_bytes(GARBAGE + A + B + CUT + C)
    fds = open_fds()
    got = Streams()
    src = FileSource(FileConfig(path=str(path), read_size=4096))
    await src.run(got)
    assert [bytes(s.data) for s in got.streams] == [A, B, CUT, C]
    assert [s.error is None for s in got.streams] == [True, True, False, True]
    assert src.skipped == len(GARBAGE)
    assert open_fds() == fds


async def test_a_missing_file_is_an_error_naming_it(tmp_path):
    with pytest.raises(SourceError, match="nope.eventlog"):
        await FileSource(FileConfig(path=str(tmp_path / "nope.eventlog"))).run(Streams())


# -- follow -------------------------------------------------------------------------

async def test_follow_a_growing_file_then_truncation_and_replacement(tmp_path):
    path = tmp_path / "live.eventlog"
    fds, tasks = open_fds(), other_tasks()
    got = Streams()
    src = follow(path)
    task = asyncio.create_task(src.run(got), name="source:file")
    await asyncio.sleep(0.05)                  # the file is not there yet: waited for
    # the program appends as it runs
    with open(path, "ab", buffering=0) as f:  # noqa: ASYNC230 the test is the writing program; a small local file
        for i in range(0, len(A), 7000):
            f.write(A[i:i + 7000])
            if i % 70_000 == 0:
                await got.wait(lambda g, n=i: g.streams and len(g.streams[0].data) > n - 7000)
    await got.wait(lambda g: len(g.ended()) == 1)
    assert bytes(got.streams[0].data) == A and got.streams[0].error is None
    # a new run rewrites the file from the start: truncated, then written
    with open(path, "r+b") as f:  # noqa: ASYNC230 the test is the writing program; a small local file
        f.truncate(0)
    await wait_for(lambda: src.restarts == 1, 20, interval=0.01)
    with open(path, "ab") as f:  # noqa: ASYNC230 the test is the writing program; a small local file
        f.write(B)
    await got.wait(lambda g: len(g.ended()) == 2)
    # a half-written run, then the file is replaced by another one
    with open(path, "ab") as f:  # noqa: ASYNC230 the test is the writing program; a small local file
        f.write(C[:len(C) // 2])
    await got.wait(lambda g: len(g.streams) == 3 and len(g.streams[2].data) > 0)
    tmp = tmp_path / "next.eventlog"
    tmp.write_bytes(B)
    os.replace(tmp, path)
    await got.wait(lambda g: len(g.ended()) == 4)
    await cancel(task)
    s = got.streams
    assert bytes(s[1].data) == B and s[1].error is None
    assert C[:len(C) // 2].startswith(bytes(s[2].data)) and "replaced" in s[2].error
    assert bytes(s[3].data) == B and s[3].error is None
    assert [x.info.number for x in s] == [1, 2, 3, 4]
    assert src.skipped == 0
    assert other_tasks() == tasks
    assert open_fds() == fds, (fds, fd_targets())


async def test_cancelling_a_follow_ends_the_open_session(tmp_path):
    path = tmp_path / "live.eventlog"
    path.write_bytes(A[:len(A) // 2])
    fds = open_fds()
    got = Streams()
    task = asyncio.create_task(follow(path).run(got))
    await got.wait(lambda g: g.streams and len(g.streams[0].data) > 0)
    await cancel(task)
    (s,) = got.streams
    assert s.ended and s.error and A.startswith(bytes(s.data))
    assert open_fds() == fds, (fds, fd_targets())


# -- stdin ---------------------------------------------------------------------------

async def test_stdin_from_a_pipe_two_runs_and_garbage(tmp_path):
    fds = open_fds()
    r, w = os.pipe()
    stream = GARBAGE + B + GARBAGE[:100] + A

    def writer():
        with open(w, "wb", buffering=0) as f:
            for i in range(0, len(stream), 3000):
                f.write(stream[i:i + 3000])
    thread = threading.Thread(target=writer)
    thread.start()
    got = Streams()
    src = StdinSource(StdinConfig(fd=r))
    await asyncio.wait_for(src.run(got), 30)      # returns at end-of-file
    thread.join()
    assert os.get_blocking(r)                     # restored
    os.close(r)
    assert [bytes(s.data) for s in got.streams] == [B, A]
    assert all(s.error is None for s in got.streams)
    assert src.streams.skipped == len(GARBAGE) + 100
    assert open_fds() == fds


async def test_cancelling_stdin_ends_the_session_and_leaves_the_descriptor_alone():
    r, w = os.pipe()
    os.write(w, B[:5000])
    tasks = other_tasks()
    got = Streams()
    task = asyncio.create_task(StdinSource(StdinConfig(fd=r)).run(got))
    await got.wait(lambda g: g.streams and len(g.streams[0].data) > 0)
    await cancel(task)
    assert got.streams[0].ended and got.streams[0].error
    assert other_tasks() == tasks
    os.fstat(r)                                   # still open: it is not the source's
    os.close(r)
    os.close(w)


CHILD = """
import asyncio, hashlib, json, sys
from ingest.sources.stdin import StdinSource
from tests.sources.helpers import Streams

async def main():
    got = Streams()
    src = StdinSource()
    await src.run(got)
    print(json.dumps({"streams": [[len(s.data), hashlib.sha256(s.data).hexdigest(), s.error]
                                  for s in got.streams], "skipped": src.streams.skipped}))
asyncio.run(main())
"""


@pytest.mark.parametrize("how", ["pipe", "file"])
def test_a_child_process_reads_its_real_standard_input(tmp_path, how):
    import hashlib
    stream = GARBAGE + C + B
    env = dict(os.environ, PYTHONPATH=str(REPO))
    if how == "pipe":
        out = subprocess.run([sys.executable, "-c", CHILD], input=stream, capture_output=True,
                             env=env, timeout=60, cwd=REPO)
    else:
        path = tmp_path / "in.eventlog"
        path.write_bytes(stream)
        with open(path, "rb") as f:
            out = subprocess.run([sys.executable, "-c", CHILD], stdin=f, capture_output=True,
                                 env=env, timeout=60, cwd=REPO)
    assert out.returncode == 0, out.stderr.decode()
    report = json.loads(out.stdout)
    assert report["streams"] == [[len(x), hashlib.sha256(x).hexdigest(), None] for x in (C, B)]
    assert report["skipped"] == len(GARBAGE)
