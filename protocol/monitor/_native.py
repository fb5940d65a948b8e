"""The agent's C loops (_speedups.c), or None: not compiled, or turned off by
``LIVEPROF_PURE_PYTHON`` (the pure Python loops are the reference), and
``send_all``, the datagram sender that uses them."""

from __future__ import annotations

import os
import socket

__all__ = ["send_all", "speedups"]

try:
    if os.environ.get("LIVEPROF_PURE_PYTHON"):
        raise ImportError
    from . import _speedups as speedups
except ImportError:
    speedups = None  # type: ignore[assignment]  # the module, or None when not built or disabled


def send_all(sock: socket.socket, grams: list[bytes], start: int = 0) -> tuple[int, int]:
    """Send ``grams[start:]`` on a connected, non-blocking datagram socket, up
    to the first one the kernel refuses: (its index, or ``len(grams)``; its
    errno, or 0)."""
    if speedups is not None:
        return speedups.send_all(sock.fileno(), grams, start)
    send = sock.send
    for i in range(start, len(grams)):
        try:
            send(grams[i])
        except OSError as exc:
            return i, exc.errno or 0
    return len(grams), 0
