# (over 400 lines: one file read by two processes, their protocol and its failures, top to bottom)
"""One large regular file's session on both cores: two processes, each
deriving some of the measurements (``liveprof derive FILE`` and ``import``).

The derivers are independent of each other and each process decodes only the
event types its own derivers want, so the work splits by measurement: this
process derives every measurement but ``SECOND`` (threads, capability,
sparks), a second process (``python -m ingest.split_worker``) derives those
from the same file, read by itself (this process's pre-scan is handed to it:
it scans while the other starts), and sends its points back as line protocol.
The groups are balanced by measurement: on bench/data/big.eventlog each
process reads and derives for about 0.56-0.58 s; the second one starts some
0.05 s later and has no pre-scan to do, and this one also writes or sends
every point.  ``import`` starts the second process (``Spare``) before it
loads its settings and the InfluxDB sink, and gives it heap too
(``IMPORT_SECOND``).

``open_session`` chooses: two processes for a regular file of at least
``MIN_BYTES``, whole-file (not live) order, two cores or more and something
selected in each group, unless ``workers`` says 1 (never) or 2 (whenever both
groups have something).  Anything else (``serve``, stdin, pipes, uploads)
stays one ``Session``.

``SplitSession`` has the interface the commands use of ``session.Session``:
``read(path)`` yields batches of points (its own) or of lines (the second
process's), ``close()``, ``end``, ``stats``, ``tags``, ``events``, ``decoded``,
``points``, ``bytes``.  The union of both processes' lines is the lines one
process gives, as a multiset (the order differs): the derivers end at the
later of both pipelines' last event times (``Session.close(join=...)``: each
tells the other), and both see the same start-up events (identity, clock)
from their pre-scans.  Stats: events read and the end (a cut, a decode error)
are this process's (both read the same bytes); decoded events, points, late,
evicted and dropped events are summed; deriver faults are both's; a stream
fault is this process's, else the second's (logged once, here; its event
count and the time it jumps from are of the events that process saw).

The second process is a ``subprocess``, not a fork: ``import`` reads inside
asyncio with aiohttp (a forked event loop, its sockets and threads are not
safe to use), the child's own interpreter has no inherited state to flush twice
(stdout buffers, the sink), and the start-up it costs (about 0.08 s) overlaps
this process's pre-scan.  It is bounded on every side: its frames
(``split_worker``: kind, length, payload) are checked and capped at
``MAX_FRAME``; a silence of ``SILENCE`` seconds (it sends a heartbeat every
few MiB), an early end or anything that is not a frame stops it and raises
``WorkerError`` naming the file and what happened, while what this process
derived is kept; it is killed when this process ends the session early
(an exception, Ctrl-C) and dies with this process (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import builtins
import dataclasses
import json
import logging
import os
import select
import stat
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Iterator, Sequence

from .derive.pipeline import PipelineStats
from .derive.point import Point
from .derive.registry import REGISTRY
from .errors import SourceError
from .session import Session, SessionEnd, SessionSettings, scan
from .split_worker import FRAME, KINDS, MAX_FRAME, job_bytes, message

SECOND = ("threads", "capability", "sparks")  # the second process's measurements
# ``import``: this process loads the settings and the sink first (about 0.2 s)
# and sends every point, while the second starts at once (``Spare``): heap goes
# there too (its events are its own; measured on big.eventlog, both then end
# together; spans or markers would make both decode every user message)
IMPORT_SECOND = (*SECOND, "heap")
MIN_BYTES = 16 << 20    # smaller files: one process (two pay from about 13 MB, bench/derive.py)
SILENCE = 60.0          # seconds the second process may send nothing
WORKERS = ("auto", 1, 2)
log = logging.getLogger("liveprof.derive")


class WorkerError(SourceError):
    """The second process failed: died, sent garbage, or went silent."""


def groups(names: Sequence[str] | None,
           second_group: Sequence[str] = SECOND) -> tuple[list[str], list[str]] | None:
    """(this process's, the second's) measurements, or None when one group is empty."""
    chosen = list(REGISTRY) if names is None else list(names)
    second = [n for n in chosen if n in second_group]
    first = [n for n in chosen if n not in second_group]
    return (first, second) if first and second else None


def splits(path: str, settings: SessionSettings, workers: object = "auto",
           regular: bool = True,
           second: Sequence[str] = SECOND) -> tuple[list[str], list[str]] | None:
    """The two groups when ``path`` is to be read by two processes, else None."""
    if str(workers) == "1" or not regular or settings.order.live:
        return None
    parts = groups(settings.measurements, second)
    if parts is None or str(workers) == "2":
        return parts
    return parts if large(path) else None


def large(path: str) -> bool:
    """A regular file of ``MIN_BYTES`` or more, and two cores to read it with."""
    try:
        st = os.stat(path)
    except OSError:
        return False  # (the session says why it cannot be read)
    return stat.S_ISREG(st.st_mode) and st.st_size >= MIN_BYTES and _cores() >= 2


def open_session(path: str, settings: SessionSettings, *, regular: bool = True,
                 workers: object = "auto", second: Sequence[str] = SECOND,
                 spare: Spare | None = None) -> Session | SplitSession:
    """``Session.for_file``, or a ``SplitSession`` when two processes pay
    (``splits``; ``second``: the second process's measurements, of those
    chosen; ``spare``: a second process started already, else one is started,
    and a spare not taken is stopped).  ``SourceError`` when the file cannot
    be read."""
    parts = splits(path, settings, workers, regular, second)
    if parts is None:
        if spare is not None:
            spare.stop()
        return Session.for_file(path, settings, regular=regular)
    return SplitSession(path, settings, *parts, spare=spare)


class Spare:
    """A second process started before it has work: it loads its modules
    while this one loads its own (``import``: the InfluxDB sink, the settings),
    then waits for its job on standard input.  ``stop()`` ends it unused."""

    def __init__(self, worker: Sequence[str] | None = None) -> None:
        self.err = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, *(worker or SplitSession.WORKER)], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self.err, close_fds=True)
        self.finalizer = weakref.finalize(self, _kill, self.proc)

    def stop(self) -> None:
        """Kill it (when still running), reap it, close its pipes and stderr file."""
        self.finalizer()
        for f in (self.proc.stdin, self.proc.stdout, self.err):
            if f is not None and not f.closed:
                try:
                    f.close()
                except OSError:
                    pass


class SplitSession:
    """One regular file's session in two processes (the module doc)."""

    WORKER = ("-m", "ingest.split_worker")  # the second process: this interpreter, these arguments
    SILENCE = SILENCE

    def __init__(self, path: str, settings: SessionSettings, first: Sequence[str],
                 second: Sequence[str], spare: Spare | None = None):
        self.path = path
        self.second = tuple(second)
        self.end: SessionEnd | None = None
        self._buf = bytearray()
        self._last_heard = time.monotonic()
        self._child_last: tuple[int | None] | None = None   # its pipeline's last event time
        self._summary: dict | None = None
        self._child_points = 0
        self._failed: str | None = None
        # started first (or before: ``spare``): its start-up overlaps this
        # process's pre-scan
        started = spare if spare is not None and spare.proc.poll() is None else Spare(self.WORKER)
        if started is not spare and spare is not None:
            spare.stop()    # (it died: its fault shows no more than a new one's)
        self._started = started     # (its finalizer kills the process once it is gone)
        self._err, self._proc = started.err, started.proc
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._fd = self._proc.stdout.fileno()
        os.set_blocking(self._fd, False)
        try:
            _grow_pipe(self._fd)
            mine = dataclasses.replace(settings, measurements=tuple(first))
            theirs = dataclasses.replace(settings, measurements=tuple(second))
            try:
                self._send(job_bytes(path, theirs, os.getpid()))
            except OSError:
                pass    # (it died at once: the first read says how)
            found = scan(path)
            try:
                self._send(message(found))  # (while it starts: it need not scan again)
            except OSError:
                pass
            self.own = Session.for_file(path, mine, found=found)
        except BaseException:
            self._stop()
            raise

    # -- figures (the commands' view of a Session) -------------------------------

    @property
    def bytes(self) -> int:
        return self.own.bytes

    @property
    def events(self) -> int:
        """Every event read, once (both processes read them all)."""
        return self.own.events

    @property
    def decoded(self) -> int:
        return self.own.decoded + (self._summary or {}).get("decoded", 0)

    @property
    def points(self) -> int:
        return self.own.points + self._child_points

    @property
    def tags(self) -> dict[str, str] | None:
        return self.own.tags

    @property
    def child_end(self) -> SessionEnd | None:
        """How the second process's reading ended (the same as ``end``)."""
        s = self._summary
        return None if s is None else SessionEnd(**s["end"])

    @property
    def stats(self) -> PipelineStats:
        mine = self.own.stats
        s = self._summary
        if s is None:
            return mine
        theirs = PipelineStats(**s["stats"])
        summed = {f: getattr(mine, f) + getattr(theirs, f) for f in (
            "events", "points", "late_events", "evicted_events", "corrected_events",
            "uncorrected_events", "stale_points", "dropped_events")}
        return dataclasses.replace(
            mine, **summed, stream_fault=mine.stream_fault or theirs.stream_fault,
            deriver_faults={**theirs.deriver_faults, **mine.deriver_faults},
            labels_folded={**theirs.labels_folded, **mine.labels_folded},
            extra={**theirs.extra, **mine.extra})

    # -- the work ----------------------------------------------------------------

    def read(self, path: str) -> Iterator[list[Point] | list[str]]:
        """This process's points and the second's lines, as they come; at the
        end both pipelines are closed (``close()`` then only sets ``end``).
        ``WorkerError`` when the second process fails (this process's points
        are kept: ``close()`` gives the rest)."""
        if path != self.path:
            raise ValueError(f"a SplitSession reads {self.path}, not {path}")
        try:
            for points in self.own.read(path):
                yield points
                got = self._poll(0.0)
                if got:
                    yield got
            while self._child_last is None:
                yield self._poll(self._wait())
            yield self.own.close(self._join)
            while self._summary is None:
                got = self._poll(self._wait())
                if got:
                    yield got
            self._reap()
            self._report()
        finally:
            if self._summary is None:
                self._stop()

    def close(self) -> list[Point]:
        """The last points, if ``read`` did not end them (an error); ``end``."""
        self._stop()
        points = self.own.close()       # (again after read: none)
        self.end = self.own.end
        return points

    # -- the second process --------------------------------------------------------

    def _join(self, last: int | None) -> int | None:
        theirs = self._child_last[0] if self._child_last is not None else None
        ends = [t for t in (last, theirs) if t is not None]
        end = max(ends) if ends else None
        try:
            self._send(json.dumps({"end": end}).encode() + b"\n")
        except OSError:
            pass    # (it died: the next read says so)
        return end

    def _send(self, data: builtins.bytes) -> None:
        stdin = self._proc.stdin
        assert stdin is not None
        stdin.write(data)
        stdin.flush()

    def _wait(self) -> float:
        left = self.SILENCE - (time.monotonic() - self._last_heard)
        if left <= 0:
            self._fail(f"sent nothing for {self.SILENCE:g} s")
        return left

    def _poll(self, timeout: float) -> list[str]:
        """The lines the second process sent so far (waiting up to ``timeout``
        for something); its other frames are taken in."""
        if timeout > 0:
            ready, _, _ = select.select([self._fd], [], [], timeout)
            if not ready:
                return []
        out: list[str] = []
        buf = self._buf
        ended = False
        while True:
            try:
                data = os.read(self._fd, 1 << 20)
            except BlockingIOError:
                break
            if not data:
                ended = True
                break
            buf += data
            self._last_heard = time.monotonic()
            if len(data) < 1 << 20:
                break
        pos = 0
        while len(buf) - pos >= FRAME.size:
            kind, size = FRAME.unpack_from(buf, pos)
            if kind not in KINDS or size > MAX_FRAME:
                self._fail(f"sent something that is not its output (a frame of kind {kind!r}, "
                           f"{size} bytes)")
            if len(buf) - pos - FRAME.size < size:
                break
            payload = bytes(buf[pos + FRAME.size:pos + FRAME.size + size])
            pos += FRAME.size + size
            self._take(kind, payload, out)
        del buf[:pos]
        if ended and self._summary is None:
            self._fail(self._died())
        return out

    def _take(self, kind: builtins.bytes, payload: builtins.bytes, out: list[str]) -> None:
        try:
            if kind == b"L":
                got = payload.decode().split("\n")
                self._child_points += len(got)
                out.extend(got)
            elif kind == b"T":
                self._child_last = (json.loads(payload)["last"],)
            elif kind == b"S":
                self._summary = json.loads(payload)
                PipelineStats(**self._summary["stats"])
                SessionEnd(**self._summary["end"])
            elif kind == b"X":
                self._fail(payload.decode(errors="replace")[:500])
        except (ValueError, KeyError, TypeError) as exc:
            self._fail(f"sent something that is not its output ({type(exc).__name__} in a "
                       f"frame of kind {kind!r})")

    def _died(self) -> str:
        try:
            code = self._proc.wait(5)
        except subprocess.TimeoutExpired:
            return "closed its output before it was done"
        how = f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"
        tail = self._stderr_tail()
        return f"{how} before it was done" + (f": {tail}" if tail else "")

    def _stderr_tail(self) -> str:
        try:
            self._err.seek(0, os.SEEK_END)
            size = self._err.tell()
            self._err.seek(max(0, size - 2000))
            text = self._err.read().decode(errors="replace").strip()
        except OSError:
            return ""
        return text.splitlines()[-1][:300] if text else ""

    def _fail(self, what: str) -> None:
        self._stop()
        self._failed = what
        raise WorkerError(f"{self.path}: the second process (pid {self._proc.pid}, deriving "
                          f"{','.join(self.second)}) {what}")

    def _report(self) -> None:
        """The second process's faults, logged here as one process would log them."""
        s = self._summary or {}
        stats = s.get("stats", {})
        for msg in stats.get("deriver_faults", {}).values():
            log.error("deriver fault: %s", msg)
        fault = stats.get("stream_fault")
        if fault and self.own.stats.stream_fault is None:
            log.warning("%s", fault)

    def _reap(self) -> None:
        try:
            self._proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self._stop()

    def _stop(self) -> None:
        """Kill the second process (when still running), reap it, close its pipes."""
        self._started.stop()


def _cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            pass


def _grow_pipe(fd: int) -> None:
    """A 1 MiB pipe: the second process rarely waits for this one to read."""
    try:
        import fcntl
        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
    except OSError:
        pass

