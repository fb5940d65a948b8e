"""The named-pipe source with writers that open the FIFO read-write, as GHC does."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

from ingest.errors import SourceError
from ingest.sources.fifo import FifoConfig, FifoSource
from tests.corpus import all_logs
from tests.servers import wait_for
from tests.sources.helpers import Streams, cancel, fd_targets, open_fds, other_tasks

LOGS = all_logs()
A = LOGS["threads-mvar.nonthreaded.l"].read_bytes()     # 271 KB: more than a pipe holds
B = LOGS["hello-ghc-8.6.5"].read_bytes()
C = LOGS["heapprof.prof.nonthreaded.hb"].read_bytes()


class Program:
    """A writer like the GHC RTS with -ol<fifo>: opens the pipe O_RDWR (so it
    never waits for a reader) and writes its eventlog in pieces, from a thread."""

    def __init__(self, path, data: bytes, chunk: int = 4096):
        self.path, self.data, self.chunk = path, data, chunk
        self.fd = os.open(path, os.O_RDWR)

    def write(self, upto: int | None = None, start: int = 0) -> None:
        data = self.data[start:upto]
        for i in range(0, len(data), self.chunk):
            os.write(self.fd, data[i:i + self.chunk])

    async def run(self, upto: int | None = None, start: int = 0) -> None:
        await asyncio.to_thread(self.write, upto, start)

    def exit(self) -> None:
        os.close(self.fd)


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "prog.eventlog"
    os.mkfifo(path)
    return str(path)


async def start(path, got, **kw):
    src = FifoSource(FifoConfig(path=path, **kw))
    task = asyncio.create_task(src.run(got), name="source:fifo")
    await wait_for(lambda: src.streams is not None, 20, interval=0.01)  # open and reading
    return src, task


async def read_up_to(src, n):
    await wait_for(lambda: src.streams.bytes >= n, 20, interval=0.01)


def nbytes(n):
    return lambda g: sum(len(s.data) for s in g.streams) >= n


async def test_one_run_is_one_session_with_the_log_s_bytes(fifo):
    fds, tasks = open_fds(), other_tasks()
    got = Streams()
    src, task = await start(fifo, got)
    prog = Program(fifo, A)
    await prog.run()
    await got.wait(lambda g: len(g.ended()) == 1)
    prog.exit()
    await cancel(task)
    (s,) = got.streams
    assert bytes(s.data) == A and s.error is None
    assert src.streams.skipped == 0
    assert other_tasks() == tasks
    assert open_fds() == fds, (fds, fd_targets())


async def test_two_runs_through_the_same_fifo_and_the_reader_survives_writers_coming_and_going(
        fifo):
    fds = open_fds()
    got = Streams()
    _, task = await start(fifo, got)
    for k, data in enumerate((B, C, B)):
        prog = Program(fifo, data, chunk=1000)
        await prog.run()
        prog.exit()                       # no reader sees end-of-file: the source holds it
        await got.wait(lambda g, n=k + 1: len(g.ended()) == n)
    await cancel(task)
    assert [bytes(s.data) for s in got.streams] == [B, C, B]
    assert all(s.error is None for s in got.streams)
    assert [s.info.number for s in got.streams] == [1, 2, 3]
    assert open_fds() == fds, (fds, fd_targets())


async def test_a_reader_opened_mid_stream_resyncs_on_the_next_run_and_counts_what_it_skipped(
        fifo):
    prog = Program(fifo, A)
    first_part = 150_000
    # an earlier reader took the first part of the run and went away
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    done = threading.Event()

    def drain():
        taken = 0
        while taken < first_part:
            try:
                taken += len(os.read(reader, first_part - taken))
            except BlockingIOError:
                done.wait(0.005)
    writer = asyncio.create_task(prog.run(first_part))
    await asyncio.to_thread(drain)
    await writer
    os.close(reader)
    # liveprof opens the pipe now: the rest of the run has no header
    got = Streams()
    src, task = await start(fifo, got)
    await prog.run(start=first_part)
    prog.exit()
    nxt = Program(fifo, B)                # the next run of the program
    await nxt.run()
    await got.wait(lambda g: len(g.ended()) == 1)
    nxt.exit()
    await cancel(task)
    (s,) = got.streams
    assert bytes(s.data) == B and s.error is None
    assert src.streams.skipped == len(A) - first_part


async def test_a_killed_run_ends_with_an_error_when_the_next_run_starts(fifo):
    got = Streams()
    src, task = await start(fifo, got)
    written = 0
    for k, cut in enumerate((len(A) // 3, len(A) // 3 + 1, len(A) // 3 + 7)):
        killed = Program(fifo, A, chunk=8192)
        await killed.run(cut)
        killed.exit()
        written += cut
        await read_up_to(src, written)    # the killed run, read; its session still open
        assert not got.streams[-1].ended
        written += len(B)
        nxt = Program(fifo, B)
        await nxt.run()
        nxt.exit()
        await got.wait(lambda g, n=2 * k + 2: len(g.ended()) == n)
    await cancel(task)
    assert len(got.streams) == 6
    for (killed, nxt), cut in zip(zip(got.streams[::2], got.streams[1::2]),
                                  (len(A) // 3, len(A) // 3 + 1, len(A) // 3 + 7)):
        assert bytes(killed.data) == A[:cut] and "cut off" in killed.error
        assert bytes(nxt.data) == B and nxt.error is None
    assert src.streams.skipped == 0


async def test_cancelling_mid_run_ends_the_session_and_closes_the_pipe(fifo):
    fds, tasks = open_fds(), other_tasks()
    got = Streams()
    _, task = await start(fifo, got)
    prog = Program(fifo, A)
    await prog.run(len(A) // 2)
    await got.wait(nbytes(1))
    await cancel(task)
    prog.exit()
    (s,) = got.streams
    assert s.ended and s.error and A.startswith(bytes(s.data))
    assert other_tasks() == tasks
    assert open_fds() == fds, (fds, fd_targets())


async def test_the_fifo_is_made_when_missing_and_a_regular_file_is_refused(tmp_path):
    path = str(tmp_path / "new.fifo")
    got = Streams()
    _, task = await start(path, got)
    prog = Program(path, B)
    await prog.run()
    prog.exit()
    await got.wait(lambda g: len(g.ended()) == 1)
    await cancel(task)
    assert bytes(got.streams[0].data) == B
    regular = tmp_path / "file.eventlog"
    regular.write_bytes(B)
    with pytest.raises(SourceError, match="not a named pipe"):
        await FifoSource(FifoConfig(path=str(regular))).run(Streams())


async def test_a_failing_consumer_costs_its_run_only(fifo):
    got = Streams(fail_stream=1)
    src, task = await start(fifo, got)
    for data in (C, B):
        prog = Program(fifo, data)
        await prog.run()
        prog.exit()
    await got.wait(lambda g: len(g.ended()) == 2)
    await cancel(task)
    first, second = got.streams
    assert "consumer failed" in first.error and first.data == b""
    assert bytes(second.data) == B and second.error is None
    assert src.streams.dropped > 0
