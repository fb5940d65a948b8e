"""Reading an upload body within bounds of time and memory.

``body_pieces(request, config)`` yields the body's bytes, decompressed when
it came with ``Content-Encoding: gzip`` or ``deflate``, in pieces of at most
``chunk_bytes``.  aiohttp's own inflating is off (``auto_decompress=False``
in ``app.py``): it inflates a whole network chunk at once, so a 2 MB gzip
bomb became 2 GB in memory.  Here the inflate is streamed with
``max_length``, and a body that expands more than ``max_inflate_ratio``
times its compressed size (plus a small allowance) is refused with 413.
Encodings that cannot be bounded this way (br, zstd, chained encodings) get
415 before a byte is read.

Time: a body may stall at most ``upload_idle_timeout`` between pieces, and
over every ``upload_rate_window`` seconds spent waiting for the client it
must bring at least ``upload_min_rate`` bytes per second, so four clients
dribbling one byte at a time cannot hold every upload slot.  Only time spent
waiting for the client counts: while the upload waits for the InfluxDB sink
(pacing), the clock stops.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import AsyncIterator

from aiohttp import web

from .config import ApiConfig

INFLATE_ALLOWANCE = 1 << 20     # decompressed bytes allowed on top of ratio x compressed

# Content-Encoding -> zlib window bits (16 + : gzip wrapper; plain: zlib wrapper)
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


class BodyRefused(Exception):
    """The body broke a bound: answer ``status`` with ``message``; ``outcome``
    is the /metrics label (``liveprof_uploads_total``)."""

    def __init__(self, status: int, message: str, outcome: str):
        super().__init__(message)
        self.status = status
        self.message = message
        self.outcome = outcome


def encoding_of(request: web.Request) -> str | None:
    """The one content coding to undo (None: identity); 415 for any other."""
    codings = [c.strip().lower() for c in request.headers.getall("Content-Encoding", [])
               for c in c.split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if not codings:
        return None
    if len(codings) > 1 or codings[0] not in _WBITS:
        raise BodyRefused(415, f"Content-Encoding {', '.join(codings)!r} is not accepted: "
                               f"send the eventlog as is, or with gzip or deflate", "invalid")
    return codings[0]


async def _network(request: web.Request, config: ApiConfig) -> AsyncIterator[bytes]:
    """The body's bytes as they arrive, under the idle timeout and the
    minimum rate (time is counted only while waiting for the client)."""
    chunks = request.content.iter_chunked(config.chunk_bytes)
    window = config.upload_rate_window
    need = config.upload_min_rate * window
    waited = 0.0            # seconds spent waiting for the client in this window
    got = 0                 # bytes received in this window
    silent = 0.0            # seconds since the last bytes came
    while True:
        budget = max(min(config.upload_idle_timeout - silent, window - waited), 0.001)
        started = time.monotonic()
        timed_out = False
        try:
            async with asyncio.timeout(budget):
                chunk = await anext(chunks, None)     # None: the body ended
        except TimeoutError:
            chunk, timed_out = None, True
        spent = time.monotonic() - started
        waited += spent
        if chunk:
            got += len(chunk)
            silent = 0.0
        else:
            silent += spent
        if waited >= window:
            if got < need:
                raise BodyRefused(408, f"body slower than {config.upload_min_rate} bytes/s: "
                                       f"{got} bytes in {window:g} s", "timeout")
            waited, got = 0.0, 0
        if timed_out:
            if silent >= config.upload_idle_timeout:
                raise BodyRefused(408, f"no body data for {config.upload_idle_timeout:g} s",
                                  "timeout")
            continue
        if chunk is None:
            return
        yield chunk


async def body_pieces(request: web.Request, config: ApiConfig) -> AsyncIterator[bytes]:
    """The (decompressed) body in pieces of at most ``chunk_bytes``."""
    coding = encoding_of(request)
    if coding is None:
        async for chunk in _network(request, config):
            yield chunk
        return
    wbits = _WBITS[coding]
    inflater = zlib.decompressobj(wbits)
    size = config.chunk_bytes
    took = 0            # compressed bytes read
    gave = 0            # decompressed bytes produced
    ratio = config.max_inflate_ratio

    def check(piece: bytes) -> bytes:
        nonlocal gave
        gave += len(piece)
        if gave > ratio * took + INFLATE_ALLOWANCE:
            raise BodyRefused(413, f"{coding} body expands more than {ratio} times "
                                   f"({took} bytes gave over {gave - len(piece)})", "too_large")
        return piece

    async for chunk in _network(request, config):
        took += len(chunk)
        data = chunk
        while data:
            try:
                piece = inflater.decompress(data, size)
            except zlib.error as exc:
                raise BodyRefused(400, f"{coding} body is corrupt after {gave} decompressed "
                                       f"bytes: {exc}", "invalid") from None
            data = inflater.unconsumed_tail
            if inflater.eof and inflater.unused_data:   # another gzip member follows
                data = inflater.unused_data
                inflater = zlib.decompressobj(wbits)
            if piece:
                yield check(piece)
    if not inflater.eof and took:
        raise BodyRefused(400, f"{coding} body ends inside its compressed stream "
                               f"(after {gave} decompressed bytes)", "invalid")
