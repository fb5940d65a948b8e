"""The dial-read-redial loop shared by the sources that connect out
(``monitor_tcp``, ``socket``): connect within a timeout, read the connection,
close it, wait a jittered growing delay (reset after a connection that
delivered), dial again, for ever or once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from ..backoff import Backoff

Connect = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]
Read = Callable[[asyncio.StreamReader], Awaitable[bool]]


async def dial_forever(name: str, connect: Connect, read: Read, *, timeout: float,
                       backoff: Backoff, once: bool, log: logging.Logger,
                       on_failed_dial: Callable[[], None] | None = None,
                       on_connected: Callable[[], None] | None = None) -> None:
    """``read(reader)`` returns True when the connection delivered something
    worth resetting the backoff for."""
    while True:
        try:
            # (not asyncio.wait_for: before Python 3.12 it returns a connection
            # made as the task is cancelled and loses the cancel, so a stopped
            # source would dial on for ever)
            async with asyncio.timeout(timeout):
                reader, writer = await connect()
        except (TimeoutError, OSError) as exc:
            if on_failed_dial:
                on_failed_dial()
            delay = backoff.next()
            log.warning("%s: cannot connect (%s); retrying in %.1f s", name, exc or "timeout",
                        delay)
            await asyncio.sleep(delay)
            continue
        if on_connected:
            on_connected()
        try:
            if await read(reader):
                backoff.reset()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()      # the descriptor is gone after this
        if once:
            return
        delay = backoff.next()
        log.info("%s: connection ended; dialling again in %.1f s", name, delay)
        await asyncio.sleep(delay)
