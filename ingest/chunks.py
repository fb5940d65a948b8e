"""Blocking byte readers for the command line: files, named pipes and stdin.

The service uses asyncio sources; one-shot commands (``dump``, ``derive``) read
with these.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

from .errors import SourceError

CHUNK = 1 << 18  # 256 KiB: faster and leaner than larger reads (bench/decode.py)


def read_chunks(path: str, chunk: int = CHUNK) -> Iterator[bytes]:
    """Yield the bytes of ``path`` (``-`` for stdin; a named pipe is read until
    its writer closes it)."""
    if path == "-":
        fd = sys.stdin.buffer.fileno()
        yield from _read_fd(fd, chunk, "standard input")
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise SourceError(f"cannot open {path}: {exc.strerror}") from exc
    try:
        yield from _read_fd(fd, chunk, path)
    finally:
        os.close(fd)


def _read_fd(fd: int, chunk: int, path: str = "-") -> Iterator[bytes]:
    while True:
        try:
            data = os.read(fd, chunk)
        except OSError as exc:     # a directory, an I/O error: the path's fault, said so
            raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from exc
        if not data:
            return
        yield data
