"""``liveprof upload FILE --url URL --token T``: send an eventlog to the API.

Small files go in one streamed request (``POST /api/v1/upload``); files over
``--chunk-size`` (or with ``--resumable``) as a resumable upload: ``POST
/api/v1/uploads``, then ``PUT /api/v1/uploads/{id}?offset=N`` chunk by
chunk, then ``POST .../finish``.  A chunk that fails on the way (connection
lost, timeout, 5xx, 429) is retried from the offset the server reports
(``GET /api/v1/uploads/{id}``), so nothing is sent twice or skipped.  The
file is read a piece at a time, never whole.  A progress bar goes to stderr
(``--progress`` / ``--no-progress``; default: when stderr is a terminal);
the result (session id, events, points) to stdout as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import stat
import sys
import time
from pathlib import Path

from ..urls import mask_url

READ = 1 << 16
RETRIES = 8
CHUNK_SIZE = 64 << 20       # resumable uploads send chunks of this size
# where the service is by default: the API's own default address (ingest/api/config.py)
DEFAULT_URL = "http://{api.host}:{api.port}"


def add_parser(sub) -> None:
    p = sub.add_parser("upload", help="upload an eventlog to the liveprof HTTP API",
                       description="Upload an eventlog file to a liveprof service; prints the "
                                   "session id, events and points as JSON.")
    _arguments(p)
    p.set_defaults(run=run)


def _size(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    if t and t[-1] in units:
        return int(float(t[:-1]) * units[t[-1]])
    return int(t)


def _arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", metavar="FILE")
    p.add_argument("--url", help=f"the service (default $LIVEPROF_URL, else {DEFAULT_URL})")
    p.add_argument("--token", default=os.environ.get("LIVEPROF_TOKEN"),
                   help="a bearer token with the write scope (default $LIVEPROF_TOKEN)")
    p.add_argument("--app", help="the app tag (a token limited to several apps needs it)")
    p.add_argument("--host", help="the host tag (default: the service's choice)")
    p.add_argument("--chunk-size", type=_size, default=CHUNK_SIZE,
                   help=f"resumable uploads send chunks of this size (default "
                        f"{CHUNK_SIZE >> 20}MiB); bigger files are sent that way")
    p.add_argument("--resumable", action="store_true",
                   help="always use a resumable upload")
    p.add_argument("--progress", dest="progress", action="store_true", default=None)
    p.add_argument("--no-progress", dest="progress", action="store_false")


class UploadFailed(Exception):
    def __init__(self, status: int | None, body):
        self.status = status
        self.body = body
        super().__init__(f"{status}: {body}")


class Progress:
    def __init__(self, total: int, enabled: bool, out=sys.stderr):
        self.total = max(total, 1)
        self.enabled = enabled
        self.out = out
        self.start = time.monotonic()
        self.done = 0
        self._last = 0.0

    def update(self, done: int, force: bool = False) -> None:
        self.done = done
        now = time.monotonic()
        if not self.enabled or (not force and now - self._last < 0.1):
            return
        self._last = now
        frac = min(1.0, done / self.total)
        width = 30
        bar = "#" * int(frac * width)
        rate = done / max(now - self.start, 1e-6) / 1e6
        self.out.write(f"\r[{bar:<{width}}] {frac * 100:5.1f}% {done / 1e6:8.1f}/"
                       f"{self.total / 1e6:.1f} MB {rate:6.1f} MB/s")
        self.out.flush()

    def close(self) -> None:
        if self.enabled:
            self.update(self.done, force=True)
            self.out.write("\n")
            self.out.flush()


async def _answer(resp):
    if "json" in resp.headers.get("Content-Type", ""):
        return await resp.json()
    return await resp.text()


def _file_body(path: Path, start: int, length: int, progress: Progress, base: int):
    async def gen():
        sent = 0
        f = await asyncio.to_thread(open, path, "rb")
        with f:
            f.seek(start)
            while sent < length:
                piece = await asyncio.to_thread(f.read, min(READ, length - sent))
                if not piece:
                    break
                sent += len(piece)
                progress.update(base + sent)
                yield piece
    return gen()


async def upload(path: str | Path, url: str, token: str, *, app: str | None = None,
                 host: str | None = None, chunk_size: int = CHUNK_SIZE,
                 resumable: bool | None = None, progress: bool = False) -> dict:
    """Upload ``path``; returns the API's answer (session, events, points...).
    Raises ``UploadFailed`` with the status and body of a refusal."""
    path = Path(path)
    size = path.stat().st_size
    url = url.rstrip("/")
    headers = {"Authorization": f"Bearer {token}"}
    params = {k: v for k, v in (("app", app), ("host", host)) if v}
    bar = Progress(size, progress)
    if resumable is None:
        resumable = size > chunk_size
    import aiohttp  # (only for the command that runs)

    timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=300)
    try:
        async with aiohttp.ClientSession(timeout=timeout, headers=headers) as http:
            if not resumable:
                async with http.post(f"{url}/api/v1/upload", params=params,
                                     data=_file_body(path, 0, size, bar, 0),
                                     headers={"Content-Type": "application/octet-stream"}) as r:
                    body = await _answer(r)
                    if r.status != 201:
                        raise UploadFailed(r.status, body)
                    return body
            return await _resumable(http, url, path, size, params, chunk_size, bar)
    finally:
        bar.close()


async def _resumable(http, url, path, size, params, chunk_size, bar) -> dict:
    import aiohttp

    async with http.post(f"{url}/api/v1/uploads", params=params) as r:
        body = await _answer(r)
        if r.status != 201:
            raise UploadFailed(r.status, body)
    where = f"{url}/api/v1/uploads/{body['id']}"
    offset, failures = 0, 0
    while offset < size:
        length = min(chunk_size, size - offset)
        try:
            async with http.put(where, params={"offset": str(offset)},
                                data=_file_body(path, offset, length, bar, offset),
                                headers={"Content-Type": "application/octet-stream",
                                         "Content-Length": str(length)}) as r:
                body = await _answer(r)
                if r.status == 200:
                    offset, failures = body["offset"], 0
                    continue
                if r.status not in (409, 429, 500, 502, 503, 504) or \
                        (isinstance(body, dict) and body.get("error", "").startswith("upload is")):
                    raise UploadFailed(r.status, body)
        except (TimeoutError, aiohttp.ClientConnectionError):
            pass
        failures += 1
        if failures > RETRIES:
            raise UploadFailed(None, f"gave up after {RETRIES} attempts at offset {offset}")
        await asyncio.sleep(min(30.0, 0.5 * 2 ** failures))
        offset = await _offset(http, where)
    async with http.post(f"{where}/finish") as r:
        body = await _answer(r)
        if r.status != 201:
            raise UploadFailed(r.status, body)
        return body


async def _offset(http, where: str) -> int:
    """Where the server stands, once no chunk is being received."""
    while True:
        async with http.get(where) as r:
            body = await _answer(r)
            if r.status != 200:
                raise UploadFailed(r.status, body)
        if not body.get("receiving"):
            return body["offset"]
        await asyncio.sleep(0.2)


def run(args) -> int:
    from .defaults import with_defaults
    from .outcome import BAD_DATA, OK, USAGE, InputError, check_input

    if not args.token:
        print("liveprof upload: give --token (or set LIVEPROF_TOKEN)", file=sys.stderr)
        return USAGE
    try:
        if not stat.S_ISREG(check_input(args.path)):
            raise InputError(f"{args.path}: not a regular file")
    except InputError as exc:
        print(f"liveprof upload: {exc}", file=sys.stderr)
        return USAGE
    if os.path.getsize(args.path) == 0:
        print(f"liveprof upload: {args.path}: empty: no eventlog in it", file=sys.stderr)
        return BAD_DATA
    import aiohttp

    show = sys.stderr.isatty() if args.progress is None else args.progress
    url = args.url or os.environ.get("LIVEPROF_URL") or with_defaults(DEFAULT_URL)
    try:
        result = asyncio.run(upload(args.path, url, args.token, app=args.app,
                                    host=args.host, chunk_size=args.chunk_size,
                                    resumable=True if args.resumable else None, progress=show))
    except (OSError, aiohttp.ClientError, TimeoutError) as exc:
        print(f"liveprof upload: {args.path}: cannot upload to {mask_url(url)}: "
              f"{exc or type(exc).__name__}", file=sys.stderr)
        return USAGE
    except UploadFailed as exc:
        body = exc.body
        if isinstance(body, dict):
            print(json.dumps(body), file=sys.stdout)
            message = body.get("error", body)
        else:
            message = body
        print(f"liveprof upload: {args.path}: refused ({exc.status}): {message}",
              file=sys.stderr)
        # the service judged the data bad (the events before the fault are kept);
        # anything else (credentials, limits, the service unwell) is the environment's
        return BAD_DATA if exc.status == 422 else USAGE
    print(json.dumps(result))
    if result.get("complete") is False:
        print(f"liveprof upload: {args.path}: the eventlog has no end marker (cut short); "
              f"its {result.get('events')} events were kept", file=sys.stderr)
        return BAD_DATA
    return OK


def main(argv: list[str] | None = None) -> int:
    from .defaults import Parser, resolve

    parser = Parser(prog="liveprof upload", description="Upload an eventlog to a liveprof service.")
    _arguments(parser)
    return run(resolve(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
