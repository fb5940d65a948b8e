"""``read_fd``'s gathering (``gather``, the fifo and stdin sources' setting): a
writer that trickles small writes is read in fewer, larger chunks, every byte
once and in order, and the reader idle while it waits; a busy writer is read on at once, not held back a
``gather`` per chunk; end of file ends it with the bytes gathered so far."""

from __future__ import annotations

import asyncio
import fcntl
import os
import threading
import time
from pathlib import Path

from ingest.sources._streams import PIPE_SIZE, read_fd


def _writer(fd: int, parts: list[bytes], pause: float) -> threading.Thread:
    def run() -> None:
        for p in parts:
            os.write(fd, p)
            time.sleep(pause)
        os.close(fd)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


async def _read(parts: list[bytes], pause: float, gather: float, size: int = 1 << 16) -> list[bytes]:
    r, w = os.pipe()
    os.set_blocking(r, False)
    got: list[bytes] = []
    try:
        writer = _writer(w, parts, pause)
        await asyncio.wait_for(read_fd(r, size, got.append, gather), 60)
        writer.join(10)
    finally:
        os.close(r)
    return got


async def test_a_trickle_is_gathered():
    parts = [bytes([i]) * 100 for i in range(40)]
    alone = await _read(parts, 0.002, 0.0)
    wall, cpu = time.monotonic(), time.process_time()
    gathered = await _read(parts, 0.002, 0.2)
    wall, cpu = time.monotonic() - wall, time.process_time() - cpu
    assert b"".join(gathered) == b"".join(parts) == b"".join(alone)
    # 40 writes 2 ms apart: about one chunk per 0.2 s gathered, after the first
    assert len(gathered) <= 5 < len(alone)
    # waiting, it does not spin (the bytes waiting keep the descriptor readable)
    assert cpu < wall / 2


async def test_a_busy_writer_is_not_held_back():
    parts = [os.urandom(1 << 16) for _ in range(64)]  # 4 MiB, as fast as the pipe takes it
    started = time.monotonic()
    got = await _read(parts, 0.0, 1.0)
    assert b"".join(got) == b"".join(parts)
    # held back a second per chunk it would take a minute (it took 25 s when
    # a short read in between full ones started a whole gather: the writer
    # filled the 64 KiB pipe and blocked for the rest of it)
    assert time.monotonic() - started < 10


PIPE_MAX = int(Path("/proc/sys/fs/pipe-max-size").read_text())  # the system's limit


async def test_a_gathering_reader_enlarges_its_pipe():
    """So that a writer does not block while the bytes are gathered (a GHC
    program blocked on its eventlog write stalls)."""
    r, w = os.pipe()
    os.set_blocking(r, False)
    try:
        before = fcntl.fcntl(r, fcntl.F_GETPIPE_SZ)
        os.close(w)
        await asyncio.wait_for(read_fd(r, 1 << 16, lambda b: None, 0.05), 10)
        assert fcntl.fcntl(r, fcntl.F_GETPIPE_SZ) == min(PIPE_SIZE, PIPE_MAX) > before
    finally:
        os.close(r)


async def test_end_of_file_ends_with_what_was_gathered():
    parts = [b"x" * 10, b"y" * 10]
    got = await _read(parts, 0.0, 0.5)
    assert b"".join(got) == b"x" * 10 + b"y" * 10
