"""``session``: one point per stream, about the program and its runtime.

Collected from the events the RTS posts at start-up (``ProgramArgs``,
``RtsIdentifier``, ``OsProcessPid``/``OsProcessParentPid``, ``HeapInfoGHC``,
``CapCreate``/``Startup``, and the older ``ProgramInvocation``/``Version``) and
written once: as soon as program, RTS identity, pid and heap parameters are
all known, else at the end of the stream with what there is.  Its time is
eventlog time 0, the start of the RTS.  Everything is a field: the only tags
are the ``app``/``host``/``session`` ones every point gets.
"""

from __future__ import annotations

from typing import ClassVar

from protocol import Event, EventType

from .base import ByType, DeriveSettings
from .point import Point

STARTUP, VERSION = int(EventType.STARTUP), int(EventType.VERSION)
PROGRAM_INVOCATION = int(EventType.PROGRAM_INVOCATION)
RTS_IDENTIFIER, PROGRAM_ARGS = int(EventType.RTS_IDENTIFIER), int(EventType.PROGRAM_ARGS)
OS_PID, OS_PPID = int(EventType.OSPROCESS_PID), int(EventType.OSPROCESS_PPID)
CAP_CREATE, HEAP_INFO_GHC = int(EventType.CAP_CREATE), int(EventType.HEAP_INFO_GHC)
_NONE: tuple = ()
_COMPLETE = 4  # program, rts, pid, heap info
# fields each event must have to be taken (fewer: an UnknownEvent of a shorter layout)
_NEED = {STARTUP: 1, VERSION: 1, PROGRAM_INVOCATION: 1, RTS_IDENTIFIER: 2, PROGRAM_ARGS: 2,
         OS_PID: 2, OS_PPID: 2, CAP_CREATE: 1, HEAP_INFO_GHC: 6}


class SessionDeriver(ByType):
    measurement: ClassVar[str] = "session"
    wants: ClassVar[frozenset[int]] = frozenset(
        {STARTUP, VERSION, PROGRAM_INVOCATION, RTS_IDENTIFIER, PROGRAM_ARGS, OS_PID, OS_PPID,
         CAP_CREATE, HEAP_INFO_GHC})

    def __init__(self, settings: DeriveSettings | None = None):
        self._fields: dict = {}
        self._caps: set = set()
        self._n_caps: int | None = None
        self._have: set = set()
        self._done = False
        self._handlers = dict.fromkeys(self.wants, self._on)

    def flush(self, end: int) -> list[Point]:
        if self._done or not (self._fields or self._caps or self._n_caps):
            return []
        return [self._point()]

    def _on(self, ev: Event, late: bool):
        if self._done:
            return _NONE
        f = self._fields
        ty = ev.type
        x = ev.fields
        if len(x) < _NEED[ty]:
            return _NONE
        if ty == PROGRAM_ARGS:
            args = [a for a in x[1] or () if a is not None]
            if args:
                f["program"] = args[0].replace("\\", "/").rsplit("/", 1)[-1]
                f["command"] = args[0]
                f["args"] = " ".join(args[1:])
                self._have.add("program")
        elif ty == PROGRAM_INVOCATION:
            parts = (x[0] or "").split()
            if parts and "program" not in f:
                f["program"] = parts[0].replace("\\", "/").rsplit("/", 1)[-1]
                f["command"] = parts[0]
                f["args"] = " ".join(parts[1:])
                self._have.add("program")
        elif ty == RTS_IDENTIFIER:
            f["rts"] = x[1]
            ident = (x[1] or "").split()
            if ident and ident[0].startswith("GHC-"):
                f["ghc_version"] = ident[0][4:]
            if len(ident) > 1:
                f["rts_flavour"] = ident[1]
            self._have.add("rts")
        elif ty == VERSION:
            f.setdefault("rts", x[0])
            self._have.add("rts")
        elif ty == OS_PID:
            f["pid"] = x[1]
            self._have.add("pid")
        elif ty == OS_PPID:
            f["ppid"] = x[1]
        elif ty == HEAP_INFO_GHC:
            # heapCapset gens maxHeapSize allocAreaSize mblockSize blockSize
            f["generations"] = x[1]
            f["max_heap_bytes"] = x[2]
            f["alloc_area_bytes"] = x[3]
            f["mblock_bytes"] = x[4]
            f["block_bytes"] = x[5]
            self._have.add("heap")
        elif ty == CAP_CREATE:
            self._caps.add(x[0])
        elif ty == STARTUP:
            self._n_caps = x[0]
        if len(self._have) == _COMPLETE:
            return [self._point()]
        return _NONE

    def _point(self) -> Point:
        self._done = True
        f = dict(self._fields)
        caps = len(self._caps) or self._n_caps
        if caps:
            f["caps"] = caps
        return Point("session", {}, f, 0)
