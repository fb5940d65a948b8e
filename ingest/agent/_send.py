"""The agent's datagram sender: ``send_all``, with sendmmsg (_sendmmsg.c, a
system call for up to 64 datagrams) or, when that is not compiled or
``LIVEPROF_PURE_PYTHON`` is set, a loop of send calls (the reference)."""

from __future__ import annotations

import os
import socket

try:
    if os.environ.get("LIVEPROF_PURE_PYTHON"):
        raise ImportError
    from . import _sendmmsg
except ImportError:
    _sendmmsg = None  # type: ignore[assignment]  # the module, or None when not built or disabled


def send_all(sock: socket.socket, grams: list[bytes], start: int = 0) -> tuple[int, int]:
    """Send ``grams[start:]`` on a connected, non-blocking datagram socket, up
    to the first one the kernel refuses: (its index, or ``len(grams)``; its
    errno, or 0)."""
    if _sendmmsg is not None:
        return _sendmmsg.send_all(sock.fileno(), grams, start)
    send = sock.send
    for i in range(start, len(grams)):
        try:
            send(grams[i])
        except OSError as exc:
            return i, exc.errno or 0
    return len(grams), 0
