"""A dialling source stops when its task is cancelled, even when the cancel
comes as a connection is made (``asyncio.wait_for`` before Python 3.12 would
return that connection and lose the cancel: the source dialled on for ever)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from ingest.backoff import Backoff
from ingest.sources._dial import dial_forever


async def test_a_cancel_as_the_connection_is_made_stops_the_dialling():
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    dials = 0
    reads = 0

    async def connect():
        nonlocal dials
        dials += 1
        conn = await asyncio.open_connection("127.0.0.1", port)
        task.cancel()       # the cancel comes as the connection is made
        return conn

    async def read(reader) -> bool:
        nonlocal reads
        reads += 1
        await reader.read()
        return True

    task = asyncio.create_task(dial_forever(
        "test", connect, read, timeout=5, backoff=Backoff(0.01, 0.01), once=False,
        log=logging.getLogger("test")))
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(5):      # (a lost cancel: dials on, and this fails)
            await task
    assert dials == 1 and reads <= 1     # (the cancel lands at the next await)
    server.close()
    await server.wait_closed()
