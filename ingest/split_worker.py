"""The second process of a split session (ingest/split.py):
``python -m ingest.split_worker``, started by ``SplitSession`` only.

Standard input: the job (a 4-byte big-endian length, then the pickled path,
``SessionSettings`` and the parent's pid: our own process's data, on a private
pipe), then the parent's pre-scan of the file (``session.Prescan``, framed the
same: this process starts while the parent scans, and need not scan again),
later one JSON line ``{"end": time}``.  Standard output: frames of a
kind byte, a 4-byte big-endian length (at most ``MAX_FRAME``) and a payload:

- ``L``: line protocol, the lines of one batch of points joined by newlines;
- ``P``: a heartbeat (empty) every few MiB read without points;
- ``T``: ``{"last": time}``, the pipeline's last event time, when the file is
  read; it then waits for the end time (``Session.close(join=...)``);
- ``S``: ``{"decoded", "points", "stats", "end"}`` at the end; it then exits 0;
- ``X``: why it could not go on (``SourceError``: the file cannot be read).

It dies with its parent (``PR_SET_PDEATHSIG``, Linux), leaves Ctrl-C to the
parent (which kills it) and logs nothing: its faults go in ``S`` and the
parent logs them, once.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import os
import pickle
import signal
import struct
import sys
from typing import Any, BinaryIO

FRAME = struct.Struct("!cI")
KINDS = frozenset({b"L", b"P", b"T", b"S", b"X"})
MAX_FRAME = 64 << 20
HEARTBEAT = 4 << 20     # bytes read between heartbeats
_LEN = struct.Struct("!I")


def message(value: object) -> bytes:
    """One pickled value, its length first."""
    data = pickle.dumps(value)
    return _LEN.pack(len(data)) + data


def job_bytes(path: str, settings: object, parent: int) -> bytes:
    return message((path, settings, parent))


def _read(f: BinaryIO) -> object:
    return pickle.loads(_exact(f, _LEN.unpack(_exact(f, 4))[0]))


def _exact(f: BinaryIO, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise SystemExit(3)   # (the parent went away)
    return data


def _die_with_parent(parent: int) -> None:
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass    # (not Linux: it ends at its next write once the parent is gone)
    if os.getppid() != parent:  # (it died before that)
        raise SystemExit(3)


def main() -> int:
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    signal.signal(signal.SIGINT, signal.SIG_IGN)    # (Ctrl-C: the parent ends it)
    # loaded before the job is read: a process started early (split.Spare) is
    # ready when its job comes
    from .derive.point import lines
    from .errors import SourceError
    from .session import Session

    job: tuple[str, Any, int] = _read(inp)  # type: ignore[assignment]  # (job_bytes's tuple)
    path, settings, parent = job
    _die_with_parent(parent)
    logging.getLogger("liveprof").setLevel(logging.CRITICAL)

    def send(kind: bytes, payload: bytes) -> None:
        for lo in range(0, max(len(payload), 1), MAX_FRAME):
            part = payload[lo:lo + MAX_FRAME]
            out.write(FRAME.pack(kind, len(part)) + part)
        out.flush()

    def join(last: int | None) -> int | None:
        send(b"T", json.dumps({"last": last}).encode())
        line = inp.readline()
        if not line:
            raise SystemExit(3)
        end = json.loads(line)["end"]
        return None if end is None else int(end)

    found: Any = _read(inp)  # the parent's pre-scan of the file (a session.Prescan)
    gc.disable()    # (as commands/derive.py's tune_gc)
    try:
        session = Session.for_file(path, settings, found=found)
        beat = HEARTBEAT
        for points in session.read(path):
            if points:
                send(b"L", "\n".join(lines(points)).encode())
                beat = session.bytes + HEARTBEAT
            elif session.bytes >= beat:
                send(b"P", b"")
                beat = session.bytes + HEARTBEAT
    except SourceError as exc:
        send(b"X", str(exc).encode())
        return 1
    last = session.close(join)
    if last:
        send(b"L", "\n".join(lines(last)).encode())
    end = session.end
    assert end is not None
    send(b"S", json.dumps({"decoded": session.decoded, "points": session.points,
                           "stats": dataclasses.asdict(session.stats),
                           "end": dataclasses.asdict(end)}).encode())
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:     # the parent stopped reading: it is ending
        sys.exit(3)
